"""Four real processes cache per-tenant data with @cached (tests/workers/purge_worker.py) while
this process purges one tenant, then one tag, then the whole cache: every entry is loaded once
by the fleet (then read from Redis by the other processes), each purge reaches every process
within the bound and costs O(1) commands, what it does not cover stays held, no process ever
returns a purged value; and 50 concurrent callers in each process share one load there."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from lowtide import Lowtide
from lowtide.testing import changes, ledger_commands
from tests.deployments import KEYSPACE, PUBSUB, TRACKING_RESP2, ListenerMode
from tests.helpers import eventually
from tests.workers.purge_worker import CALLERS, ITEMS, TENANTS, WORKERS

ROOT = Path(__file__).parent.parent
MODES = [
    pytest.param(TRACKING_RESP2, id="tracking"),
    pytest.param(PUBSUB, id="pubsub"),
    pytest.param(KEYSPACE, id="keyspace"),
]


def table(phase: Callable[[str, int], str]) -> dict[str, list[str]]:
    """The phase each (tenant, item) must be read at, as the workers report values."""
    return {t: [phase(t, i) for i in ITEMS] for t in TENANTS}


def loads_expected() -> Counter[str]:
    """One load per entry per phase the fleet needed it in: p0 everything, p1 tenant t1
    (purged), p2 the even items (tag purged), p3 everything (the whole cache purged)."""
    want: Counter[str] = Counter()
    for t in TENANTS:
        for i in ITEMS:
            want[f"p0:{t}:{i}"] = want[f"p3:{t}:{i}"] = 1
            if t == "t1":
                want[f"p1:{t}:{i}"] = 1
            if i % 2 == 0:
                want[f"p2:{t}:{i}"] = 1
    return want


@pytest.mark.parametrize("mode", MODES)
async def test_a_fleet_of_processes(lowtide_url: str, tmp_path: Path, mode: ListenerMode) -> None:
    extra = ["pubsub"] if mode.publishes else []
    logs = [(tmp_path / f"w{i}.err").open("wb") for i in range(WORKERS)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tests.workers.purge_worker", lowtide_url, str(i), str(tmp_path), *extra),
            cwd=ROOT,
            stderr=logs[i],
        )
        for i in range(WORKERS)
    ]
    costs = []
    try:

        async def reached(step: str) -> None:
            def everyone() -> bool:
                for i, p in enumerate(procs):
                    if p.returncode is not None:
                        err = (tmp_path / f"w{i}.err").read_text()
                        raise AssertionError(f"worker w{i} exited ({p.returncode}): {err}")
                return all((tmp_path / f"w{i}.{step}").exists() for i in range(WORKERS))

            await eventually(everyone, within=60)

        async def step(name: str) -> None:
            await reached(name)
            (tmp_path / f"go.{name}").write_text("1")

        async with Lowtide(lowtide_url, instance="admin", **mode.options) as admin:
            assert await admin.ready(10)
            cache = admin.cache("fleet", purgeable=True)

            async def purge(tenant: str | None = None, tag: str | None = None) -> None:
                before = ledger_commands(admin, component="cache")
                await (cache.purge_tag(tag) if tag else cache.purge(tenant=tenant))
                costs.append(changes(before, ledger_commands(admin, component="cache")))

            await step("warm")
            await reached("read")
            await purge(tenant="t1")
            await step("read")
            await step("tenant")
            await reached("tenant-read")
            await purge(tag="even")
            await step("tenant-read")
            await step("tag")
            await reached("tag-read")
            await purge()
            await step("tag-read")
            await step("all")
            await step("all-read")
            await reached("loading")  # every worker is inside its load of the hot key
            (tmp_path / "release").write_text("1")
            await step("hot")
        for p in procs:
            assert await asyncio.wait_for(p.wait(), 60) == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        for log in logs:
            log.close()
    results = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(WORKERS)]
    # each purge: O(1) commands, whatever the 80 entries (+1 PUBLISH in pub/sub mode)
    publish = {"publish": 1} if mode.publishes else {}
    assert costs == [{"set": 2, **publish}, {"hset": 1, **publish}, {"set": 1, **publish}]
    # every entry loaded exactly once by the fleet in each phase, by the worker that owns it:
    # the 3 others read it from Redis
    fleet = sum((Counter(r["loads"]) for r in results), Counter())
    assert fleet == loads_expected()
    for index, r in enumerate(results):
        assert {int(k.rsplit(":", 1)[1]) % WORKERS for k in r["loads"]} == {index}
    for index, r in enumerate(results):
        values = r["values"]
        assert values["read"] == values["read-again"] == table(lambda t, i: "p0")
        assert r["read_again_commands"] == {}  # everything held: 80 reads, 0 commands
        # never a purged value; what a purge does not cover is the old value, held in L1
        assert values["tenant"] == table(lambda t, i: "p1" if t == "t1" else "p0")
        assert values["tag"] == table(
            lambda t, i: "p2" if i % 2 == 0 else "p1" if t == "t1" else "p0"
        )
        assert values["all"] == table(lambda t, i: "p3")
        assert r["held"] == {"tenant": True, "tag": True}
        # each purge left every process's L1 within the bound (a push: milliseconds)
        assert all(seconds < 1.0 for seconds in r["dropped"].values()), r["dropped"]
        # single-flight in each process: its 50 concurrent callers shared one load
        assert r["hot"]["loads"] == 1
        assert r["hot"]["got"] == [f"w{index}"] * CALLERS
    # no lock across processes: the 4 loads overlapped (each waited until all 4 had started),
    # the first value stored won and every process then reads that one
    assert len({r["hot"]["after"] for r in results}) == 1
