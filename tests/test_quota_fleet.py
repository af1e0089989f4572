"""Quotas across processes: one HSET per flush for any number of tenants, fleet totals read only
near a plan, and a directory that may hold planted junk (real server, several hubs)."""

from __future__ import annotations

from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.testing import ValkeyServer
from tests.helpers import server_fleet_total

PLANS = {"small": 1_000, "big": 10**9}


def plan_of(tenant: str) -> str:
    return "small" if tenant.startswith("s-") else "big"


async def spend(lt: Lowtide, tenant: str, n: int) -> None:
    att = Attribution("app", "-", tenant)
    await lt.gateway.pipeline(att, [("GET", f"k{i}") for i in range(n)])


async def test_a_flush_costs_two_commands_whatever_the_number_of_tenants(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    async with Lowtide(lowtide_url, fleet_switch=False) as lt:
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        for t in range(200):
            await spend(lt, f"b-{t}", 3)
        assert await quotas.flush() == 200
        first = lt.ledger.snapshot().by_component["quota"]
        assert first == 5  # HSET, HSET (directory), HKEYS, 2 PEXPIRE: once per period
        for t in range(200):
            await spend(lt, f"b-{t}", 1)
        assert await quotas.flush() == 200
        assert lt.ledger.snapshot().by_component["quota"] == first + 2  # HSET + HKEYS
        assert server_fleet_total(lowtide_server, quotas, "b-7") == 4
        assert await quotas.fleet_total("b-7") == 4


async def test_the_busiest_process_reads_near_the_plan_and_every_process_follows(
    lowtide_url: str,
) -> None:
    async with (
        Lowtide(lowtide_url, instance="busy", fleet_switch=False) as busy,
        Lowtide(lowtide_url, instance="idle", fleet_switch=False) as idle,
    ):
        q_busy = busy.quotas(PLANS, plan_of, flush_interval=3600)
        q_idle = idle.quotas(PLANS, plan_of, flush_interval=3600)
        await spend(idle, "s-1", 10)
        await q_idle.flush()
        await spend(busy, "s-1", 200)
        await q_busy.flush()
        # 200 units x 2 processes listed < half the plan: nobody read the fleet total
        assert "HMGET" not in str(busy.ledger.groups())
        await spend(busy, "s-1", 150)
        await q_busy.flush()  # estimate 350 x 2 >= 500: reads the total, 360, not near yet
        assert q_busy.usage("s-1") == 360
        assert q_busy.info()["near"] == 0
        await spend(busy, "s-1", 150)
        await q_busy.flush()  # estimate 360 + 150 x 2 >= 500: reads 510, marks it near
        assert q_busy.usage("s-1") == 510
        assert q_busy.info()["near"] == 1
        await spend(idle, "s-1", 1)
        await q_idle.flush()  # the idle process learns from the directory and reads too
        assert q_idle.info()["near"] == 1
        assert q_idle.usage("s-1") == 511
        await spend(busy, "s-1", 600)
        await q_busy.flush()
        assert q_busy.over_quota("s-1")
        await spend(idle, "s-1", 1)
        await q_idle.flush()
        assert q_idle.over_quota("s-1")  # blocked at its next flush, as before
        assert not q_idle.over_quota("b-1")


async def test_planted_directory_entries_are_ignored_and_counted(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    async with Lowtide(lowtide_url, fleet_switch=False) as lt:
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        await spend(lt, "s-2", 600)
        await quotas.flush()
        directory = quotas.directory_key()
        lowtide_server.command("HSET", directory, b"\xff\xfe", 1, "junk", 1, "s:", 1)
        lowtide_server.command("HSET", directory, "s:evil", 1)
        lowtide_server.command("HSET", quotas.counter_key("evil"), "s-2", "10" * 20)
        lowtide_server.command("HSET", directory, "s:evil2", 1)
        lowtide_server.command("HSET", quotas.counter_key("evil2"), "s-2", "-5")
        await spend(lt, "s-2", 1)
        await quotas.flush()  # reads: 601 x 4 listed processes >= 500
        assert quotas.usage("s-2") == 601  # the planted counts are not counts
        assert not quotas.over_quota("s-2")
        assert quotas.bad_entries >= 4
        assert lt.mode.value == "distributed"
