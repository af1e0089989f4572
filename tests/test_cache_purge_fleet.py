"""A tenant purged by one process, seen by 4 other processes (real ones) that cache with
@cached: the purged tenant's entries are gone everywhere within the bound and read again, the
other tenants' entries stay held and cost nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from lowtide import Lowtide
from lowtide.testing import ledger_commands
from tests.helpers import eventually

ROOT = Path(__file__).parent.parent


async def test_four_processes_see_one_tenant_purged(lowtide_url: str, tmp_path: Path) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.workers.purge_worker",
            lowtide_url,
            f"w{i}",
            str(tmp_path),
            cwd=ROOT,
        )
        for i in range(4)
    ]
    try:

        def ready() -> bool:
            assert all(p.returncode is None for p in procs), "a worker died"
            return all((tmp_path / f"w{i}.ready").exists() for i in range(4))

        await eventually(ready, within=60)
        async with Lowtide(lowtide_url, instance="admin") as admin:
            cache = admin.cache("fleet-offboard", purgeable=True)
            await cache.purge(tenant="t1")
            spent = ledger_commands(admin, component="cache")
        (tmp_path / "go").write_text("1")
        for p in procs:
            assert await asyncio.wait_for(p.wait(), 60) == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    results = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(4)]
    assert spent == {"set": 2}  # the purge itself: O(1), whatever the entries
    phase1 = sum(r["loads"].get(f"before:{t}", 0) for r in results for t in ("t1", "t2"))
    assert 40 <= phase1 <= 4 * 40  # each entry loaded once by the fleet (concurrent starts)
    for r in results:
        assert r["dropped_after"] < 1.0  # the push reached it (well within the bound)
        assert r["values"]["t1"] == ["after"] * 20  # never a purged value
        for t in ("t2", "t3", "t4"):
            assert r["values"][t] == ["before"] * 20
            assert r["loads"].get(f"after:{t}", 0) == 0
    reloads = sum(r["loads"].get("after:t1", 0) for r in results)
    assert 20 <= reloads <= 4 * 20
