"""One "machine" of a fleet that caches per-tenant data with @cached, then sees one tenant
purged by another process: run as a real process by tests/test_cache_purge_fleet.py.

Usage: python -m tests.workers.purge_worker URL NAME DIR
Phase 1 loads every (tenant, item) once through the decorator and writes DIR/NAME.ready; once
DIR/go exists it waits until the purged tenant's entries are gone from its L1 (the push), then
reads everything again with the loader now answering "after", and writes DIR/NAME.json.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from lowtide import Lowtide
from lowtide.testing import ledger_commands

TENANTS = ("t1", "t2", "t3", "t4")
ITEMS = range(20)


async def main(url: str, name: str, folder: Path) -> dict[str, Any]:
    phase = "before"
    loads: dict[str, int] = {}
    async with Lowtide(url, instance=name) as lt:
        assert await lt.ready(10)
        cache = lt.cache("fleet-offboard", purgeable=True)

        @cache.cached(tenant="tenant")
        async def record(tenant: str, item: int) -> dict[str, Any]:
            key = f"{phase}:{tenant}"
            loads[key] = loads.get(key, 0) + 1
            return {"tenant": tenant, "item": item, "phase": phase}

        for t in TENANTS:
            for i in ITEMS:
                await record(t, i)
        for t in TENANTS:  # once more: everything held now
            for i in ITEMS:
                await record(t, i)
        (folder / f"{name}.ready").write_text("1")
        waited = time.monotonic()
        while not (folder / "go").exists():
            if time.monotonic() - waited > 60:
                raise TimeoutError("no go signal")
            await asyncio.sleep(0.01)
        seen_go = time.monotonic()
        key = record.key
        while any(cache.peek(key("t1", i), tenant="t1") is not None for i in ITEMS):
            await asyncio.sleep(0.001)
            if time.monotonic() - seen_go > 10:
                break
        dropped_after = time.monotonic() - seen_go
        phase = "after"
        before = ledger_commands(lt, component="cache")
        values = {t: [(await record(t, i))["phase"] for i in ITEMS] for t in TENANTS}
        after = ledger_commands(lt, component="cache")
        return {
            "loads": loads,
            "values": values,
            "dropped_after": dropped_after,
            "phase2_commands": {k: after.get(k, 0) - before.get(k, 0) for k in after},
        }


if __name__ == "__main__":
    url, name, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    result = asyncio.run(main(url, name, folder))
    (folder / f"{name}.json").write_text(json.dumps(result))
