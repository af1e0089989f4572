"""One "machine" of a fleet of 4 real processes that cache per-tenant data with @cached, while
another process purges a tenant, a tag and the whole cache: run by
tests/test_cache_purge_fleet.py.

Usage: python -m tests.workers.purge_worker URL INDEX DIR [pubsub]

Worker INDEX owns the items with ``item % 4 == INDEX``: it alone loads them (the others read
them from Redis once it has), so every entry is loaded exactly once by the fleet. Each step
ends with DIR/wINDEX.STEP written, then waits for DIR/go.STEP (the test writes it once every
worker is there, after its purge if that step is followed by one):

* ``warm``: load my share of every tenant;
* ``read``: read everything, twice (the second pass: 0 commands). The test purges tenant t1;
* ``tenant``: wait until t1 has left L1 (the others stay held), reload my share of t1;
  ``tenant-read``: read everything. The test purges tag ``even`` (the even items);
* ``tag``, ``tag-read``: the same for the even items (the odd ones stay held). The test purges
  the whole cache;
* ``all``, ``all-read``: the same for everything;
* ``hot``: 50 concurrent callers of one key, whose loader waits for DIR/release (the test
  writes it once every worker is inside its loader, DIR/wINDEX.loading); then read the hot
  key once more (every worker now reads the one value stored).

Writes DIR/wINDEX.json: loads by ``phase:tenant:item``, values read at each step, seconds
until each purge left L1, what the hot key did.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowtide import Lowtide
from lowtide.testing import changes, ledger_commands

TENANTS = ("t1", "t2", "t3", "t4")
ITEMS = range(20)
WORKERS = 4
CALLERS = 50  # concurrent callers of the hot key in each worker


def _exists(path: Path) -> bool:
    return path.exists()


async def wait_file(path: Path, within: float = 60.0) -> None:
    """Wait for ``path`` to exist (written by the test)."""
    deadline = time.monotonic() + within
    while not _exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path.name}")
        await asyncio.sleep(0.005)


async def until(gone: Callable[[], bool], within: float = 10.0) -> float:
    """Seconds until ``gone()`` (``within`` if never)."""
    start = time.monotonic()
    while True:
        waited = time.monotonic() - start
        if gone() or waited >= within:
            return waited
        await asyncio.sleep(0.001)


async def main(url: str, index: int, folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    name = f"w{index}"
    phase = "p0"
    loads: Counter[str] = Counter()
    out: dict[str, Any] = {"values": {}, "held": {}, "dropped": {}}

    async def done(step: str) -> None:
        (folder / f"{name}.{step}").write_text("1")
        await wait_file(folder / f"go.{step}")

    async with Lowtide(url, instance=name, **options) as lt:
        assert await lt.ready(10)
        cache = lt.cache("fleet", purgeable=True)

        @cache.cached(tenant="tenant", tags=lambda tenant, item: () if item % 2 else ("even",))
        async def record(tenant: str, item: int) -> dict[str, str]:
            loads[f"{phase}:{tenant}:{item}"] += 1
            return {"phase": phase, "by": name}

        mine = [i for i in ITEMS if i % WORKERS == index]

        def held(tenant: str, item: int) -> bool:
            return cache.peek(record.key(tenant, item), tenant=tenant) is not None

        async def read_all() -> dict[str, list[str]]:
            return {t: [(await record(t, i))["phase"] for i in ITEMS] for t in TENANTS}

        async def reload(tenants: tuple[str, ...], items: list[int], step: str) -> None:
            for t in tenants:
                for i in items:
                    await record(t, i)
            await done(step)
            out["values"][step] = await read_all()
            await done(f"{step}-read")

        for t in TENANTS:
            for i in mine:
                await record(t, i)
        await done("warm")
        out["values"]["read"] = await read_all()
        before = ledger_commands(lt, component="cache")
        out["values"]["read-again"] = await read_all()
        out["read_again_commands"] = changes(before, ledger_commands(lt, component="cache"))
        await done("read")
        # tenant t1 was purged
        out["dropped"]["tenant"] = await until(lambda: not any(held("t1", i) for i in ITEMS))
        out["held"]["tenant"] = all(held(t, i) for t in TENANTS[1:] for i in ITEMS)
        phase = "p1"
        await reload(("t1",), mine, "tenant")
        # tag "even" was purged
        even = [i for i in ITEMS if i % 2 == 0]
        out["dropped"]["tag"] = await until(
            lambda: not any(held(t, i) for t in TENANTS for i in even)
        )
        out["held"]["tag"] = all(held(t, i) for t in TENANTS for i in ITEMS if i % 2)
        phase = "p2"
        await reload(TENANTS, [i for i in mine if i % 2 == 0], "tag")
        # the whole cache was purged
        out["dropped"]["all"] = await until(
            lambda: not any(held(t, i) for t in TENANTS for i in ITEMS)
        )
        phase = "p3"
        await reload(TENANTS, mine, "all")

        hot_loads = 0

        @cache.cached(tenant="tenant", name="hot")
        async def hot(tenant: str) -> dict[str, str]:
            nonlocal hot_loads
            hot_loads += 1
            (folder / f"{name}.loading").write_text("1")
            await wait_file(folder / "release")
            return {"by": name}

        got = await asyncio.gather(*(hot("t1") for _ in range(CALLERS)))
        await done("hot")
        after = await hot("t1")
        out["hot"] = {"loads": hot_loads, "got": [g["by"] for g in got], "after": after["by"]}
    out["loads"] = dict(loads)
    return out


if __name__ == "__main__":
    url, index, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    options = {"invalidation": "pubsub"} if sys.argv[4:] == ["pubsub"] else {}
    result = asyncio.run(main(url, index, folder, options))
    (folder / f"w{index}.json").write_text(json.dumps(result))
