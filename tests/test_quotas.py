"""Tenant quotas on a real server: 0 extra commands per operation, exact totals, local-only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lowtide import Lowtide, ManualClock, Mode, QuotaEvent
from lowtide.testing import ValkeyServer, ledger_total
from tests.helpers import eventually, server_fleet_total

PLANS = {"free": 30, "pro": 1_000_000}


def plan_of(tenant: str) -> str:
    return "free" if tenant.startswith("free") else "pro"


def fleet_usage(server: ValkeyServer, lt: Lowtide, tenant: str) -> int:
    """The tenant's fleet total as the server holds it, read without lowtide's code."""
    q = lt.quota_manager
    assert q is not None
    return server_fleet_total(server, q, tenant)


async def test_totals_equal_the_ledger_and_operations_cost_nothing_extra(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        cache = lt.cache("profiles")
        for i in range(25):
            for t in ("pro-a", "pro-b", "pro-c"):
                await cache.set(f"k{i}", i, tenant=t)
                await cache.get(f"x{i}", tenant=t)
        snap = lt.ledger.snapshot()
        assert "quota" not in snap.by_component  # counting cost nothing per operation
        assert snap.by_tenant["pro-a"] == 50  # exactly 1 SET + 1 GET per iteration
        assert await quotas.flush() == 3
        # for all tenants together: 1 HSET (this process's absolute counts) + 1 HKEYS (the
        # directory); the first time in a period also 1 HSET (listed in the directory) and
        # 2 PEXPIRE. No fleet total is read: 50 units are far from a 1,000,000 plan.
        assert lt.ledger.snapshot().by_component["quota"] == 5
        billed = lt.ledger.billed_by_tenant()
        for t in ("pro-a", "pro-b", "pro-c"):
            assert fleet_usage(lowtide_server, lt, t) == billed[t] == 50
        await cache.set("more", 1, tenant="pro-a")
        assert await quotas.flush() == 1
        assert lt.ledger.snapshot().by_component["quota"] == 5 + 2  # 1 HSET + 1 HKEYS
        assert fleet_usage(lowtide_server, lt, "pro-a") == lt.ledger.billed_by_tenant()["pro-a"]
        assert quotas.usage("pro-a") == 51


async def test_a_tenant_over_its_plan_goes_local_only(lowtide_url: str) -> None:
    events: list[QuotaEvent] = []
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        quotas.on_event(events.append)
        cache = lt.cache("profiles")
        for i in range(30):
            await cache.set(f"k{i}", i, tenant="free-1")
            await cache.set(f"k{i}", i, tenant="pro-1")
        await quotas.flush()
        assert quotas.over_quota("free-1")
        assert not quotas.over_quota("pro-1")
        assert [(e.tenant, e.over, e.used, e.limit) for e in events] == [("free-1", True, 30, 30)]
        spent = ledger_total(lt, tenant="free-1")
        for i in range(100):  # the app keeps working on local state...
            await cache.set(f"n{i}", i, tenant="free-1")
            assert await cache.get(f"n{i}", tenant="free-1") == i
        # ...with no Redis traffic for that tenant
        assert ledger_total(lt, tenant="free-1") == spent
        before = ledger_total(lt, tenant="pro-1")
        await cache.set("n", 1, tenant="pro-1")
        assert ledger_total(lt, tenant="pro-1") == before + 1  # others are unaffected
        assert lt.health()["status"] == "ok"


async def test_large_deltas_flush_early_and_the_period_rolls_over(lowtide_url: str) -> None:
    clock = ManualClock(wall_start=1_700_000_000.0 - 1_700_000_000.0 % 86_400 + 86_000)
    events: list[QuotaEvent] = []
    async with Lowtide(lowtide_url, clock=clock, invalidation="ttl") as lt:
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600, early_fraction=0.5)
        quotas.on_event(events.append)
        cache = lt.cache("c")
        for i in range(16):  # more than half of the free plan's 30
            await cache.set(f"k{i}", i, tenant="free-2")
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(1.0)  # the one-second check flushes it although flush_interval is 1 h
        await eventually(lambda: quotas.flushes >= 1)
        for i in range(16):
            await cache.set(f"j{i}", i, tenant="free-2")
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(1.0)
        await eventually(lambda: quotas.over_quota("free-2"))
        clock.advance(500)  # past midnight: a new day, a new budget
        await eventually(lambda: not quotas.over_quota("free-2"))
        assert [e.over for e in events] == [True, False]


async def test_counts_survive_an_outage_and_a_shutdown(
    lowtide_url: str, lowtide_server: ValkeyServer, tmp_path: Path
) -> None:
    spool = tmp_path / "quota.json"
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600, spool=str(spool))
        cache = lt.cache("c")
        for i in range(7):
            await cache.set(f"k{i}", i, tenant="pro-9")
        lt.suspend()  # Redis goes away before the flush
        assert await quotas.flush() == 0
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5)
        assert await quotas.flush() == 1
        assert fleet_usage(lowtide_server, lt, "pro-9") == 7
        for i in range(5):
            await cache.set(f"j{i}", i, tenant="pro-9")
        lt.suspend()  # and is still away at shutdown: the 5 go to the spool
    assert spool.exists()
    async with Lowtide(lowtide_url) as lt2:
        quotas2 = lt2.quotas(PLANS, plan_of, flush_interval=3600, spool=str(spool))
        await quotas2.flush()
        assert fleet_usage(lowtide_server, lt2, "pro-9") == 12
        await quotas2.flush()  # reporting the same counts again changes nothing
        assert fleet_usage(lowtide_server, lt2, "pro-9") == 12
    assert not spool.exists()  # nothing left to report


async def test_two_flushes_at_once_never_land_an_older_count_after_a_newer_one(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        quotas = lt.quotas(PLANS, plan_of, flush_interval=3600)
        cache = lt.cache("profiles")
        await cache.set("a", 1, tenant="pro-a")
        send = lt.gateway.pipeline
        slow_once = [True]

        async def pipeline(attribution: Any, commands: Any, **kwargs: Any) -> Any:
            if slow_once[0] and commands[0][0] == "HSET":
                slow_once[0] = False
                await asyncio.sleep(0.2)  # the first flush's reply is late
            return await send(attribution, commands, **kwargs)

        lt.gateway.pipeline = pipeline  # type: ignore[method-assign]
        first = asyncio.create_task(quotas.flush())  # reports 1 unit
        await asyncio.sleep(0.05)
        await cache.set("b", 2, tenant="pro-a")  # a second unit
        await quotas.flush()
        await first
        lt.gateway.pipeline = send  # type: ignore[method-assign]
        assert fleet_usage(lowtide_server, lt, "pro-a") == lt.ledger.billed_by_tenant()["pro-a"]


async def test_what_a_tenant_wrote_while_local_only_is_forgotten_when_its_quota_returns(
    lowtide_url: str,
) -> None:
    clock = ManualClock(wall_start=1_700_000_000.0 - 1_700_000_000.0 % 3600 + 3590)
    async with Lowtide(lowtide_url, clock=clock, invalidation="ttl") as lt:
        quotas = lt.quotas(PLANS, plan_of, period="hour", flush_interval=3600)
        cache = lt.cache("c", ttl=3600)
        for i in range(30):
            await cache.set(f"k{i}", i, tenant="free-3")
        await quotas.flush()
        assert quotas.over_quota("free-3")
        await cache.set("local", "never in Redis", tenant="free-3")  # local-only
        await cache.set("k0", "changed locally", tenant="free-3")
        assert cache.peek("local", tenant="free-3") == "never in Redis"
        clock.advance(15)  # a new hour, a new budget; the local copies are still fresh
        await eventually(lambda: not quotas.over_quota("free-3"))
        assert cache.peek("local", tenant="free-3") is None
        assert cache.peek("k0", tenant="free-3") is None
        assert await cache.get("local", tenant="free-3") is None  # what Redis holds
        assert await cache.get("k0", tenant="free-3") == 0
