"""Quota counts are exact through a lost reply and survive a SIGKILL (real server, real process)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lowtide import Lowtide, Mode
from lowtide.context import Attribution
from lowtide.testing import FaultProxy, ValkeyServer
from tests.helpers import server_fleet_total

PLANS = {"pro": 1_000_000}


def plan_of(tenant: str) -> str:
    return "pro"


async def test_a_flush_whose_reply_was_lost_is_not_counted_twice(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    async with Lowtide(proxy.url, op_timeout=0.5, fleet_switch=False) as lt:
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        att = Attribution("app", "-", "pro-1")
        for i in range(54):
            await lt.gateway.call(att, "GET", f"k{i}")
        proxy.stall_replies()  # the next command reaches the server; its reply never returns
        assert await quotas.flush() == 0  # the HSET was applied, but the flush looks failed
        assert quotas.flush_errors == 1
        proxy.pass_through()
        assert await lt.wait_for(Mode.DISTRIBUTED, 6)
        assert await quotas.flush() == 1  # sent again
        billed = lt.ledger.billed_by_tenant()["pro-1"]
        assert billed == 54
        assert server_fleet_total(server, quotas, "pro-1") == 54
        assert await quotas.fleet_total("pro-1") == 54


async def test_a_killed_process_loses_nothing_that_reached_its_spool(
    lowtide_server: ValkeyServer, tmp_path: Path
) -> None:
    spool = tmp_path / "quota.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workers.quota_worker",
        lowtide_server.url,
        str(spool),
        "203",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -9, err.decode()  # SIGKILL: no shutdown code ran
    assert "ready" in out.decode()
    assert spool.exists()
    async with Lowtide(lowtide_server.url, fleet_switch=False) as lt:
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600, spool=str(spool))
        await quotas.flush()  # reports the dead process's counts under its own field
        assert await quotas.fleet_total("pro-k") == 203
        await quotas.flush()
        assert await quotas.fleet_total("pro-k") == 203  # idempotent
    assert not spool.exists()
