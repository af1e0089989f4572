"""The fleet-wide rate limiter on a real server, with real processes for the fleet tests."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from lowtide import (
    Lowtide,
    ManualClock,
    Mode,
    RateLimited,
    RateLimiter,
    TenantRequired,
    tenant_scope,
)
from lowtide.limiter.core import (
    window_index,
)
from lowtide.testing import (
    ledger_commands,
    ledger_total,
)
from tests.helpers import eventually


def run_fleet(
    url: str, algorithm: str, limit: int, per: float, seconds: float, tmp: Path
) -> list[dict]:
    start = time.time() + 1.5  # every process is connected and waiting by then
    procs = []
    for i in range(4):
        out = tmp / f"worker{i}.json"
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.workers.limiter_worker",
                        url,
                        algorithm,
                        str(limit),
                        str(per),
                        str(seconds),
                        str(start),
                        str(out),
                    ],
                    cwd=Path(__file__).parent.parent,
                ),
                out,
            )
        )
    results = []
    for p, out in procs:
        assert p.wait(timeout=60) == 0
        results.append(json.loads(out.read_text()))
    return results


def test_four_processes_never_exceed_a_fixed_window_limit(lowtide_url: str, tmp_path: Path) -> None:
    limit, per = 200, 1.0
    results = run_fleet(lowtide_url, "fixed_window", limit, per, 4.6, tmp_path)
    times = sorted(t for r in results for t in r["admitted"])
    per_window = Counter(window_index(t, per) for t in times)
    assert max(per_window.values()) <= limit, per_window
    full = sorted(per_window)[1:-1]  # the first and last windows are partial
    assert len(full) >= 3
    for w in full:
        assert per_window[w] >= 0.9 * limit, per_window  # utilisation >= 90% when saturated
    decisions = len(times) + sum(r["denied"] for r in results)
    commands = sum(r["commands"] for r in results)
    assert commands <= 0.05 * decisions, (commands, decisions)  # <= 50 per 1,000 decisions


def test_four_processes_never_exceed_a_token_bucket(lowtide_url: str, tmp_path: Path) -> None:
    limit, per = 100, 1.0
    results = run_fleet(lowtide_url, "token_bucket", limit, per, 3.0, tmp_path)
    times = sorted(t for r in results for t in r["admitted"])
    rate, burst = limit / per, float(limit)
    # max over intervals [t_i, t_j] of (j - i + 1) - rate * (t_j - t_i) must stay <= burst
    best_start = -math.inf
    worst = 0.0
    for j, t in enumerate(times):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, (j + 1) - rate * t + best_start)
    assert worst <= burst + 1e-6, worst
    span = times[-1] - times[0]
    assert len(times) >= 0.9 * (rate * span), (len(times), span)


@pytest.fixture
async def hub(lowtide_url: str):  # type: ignore[no-untyped-def]
    async with Lowtide(lowtide_url, instance="a") as lt:
        assert await lt.invalidations.wait_healthy(5)
        yield lt


async def test_under_the_limit_leases_cut_commands(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("hubspot", limit=10_000, per=60, fleet_size=4)
    for _ in range(1000):
        assert (await limiter.acquire("t1")).allowed
    spent = ledger_total(hub, component="limiter")
    # <= 100 per 1,000 decisions under the limit
    assert spent <= 100, ledger_commands(hub, component="limiter")
    assert limiter.stats["reservations"] < 20


async def test_denials_are_cached_and_cost_nothing(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("slack", limit=5, per=60)
    allowed = [(await limiter.acquire("t1")).allowed for _ in range(5)]
    assert all(allowed)
    d = await limiter.acquire("t1")
    assert not d.allowed
    assert 0 < d.retry_after <= 60
    before = ledger_commands(hub, component="limiter")
    for _ in range(1000):
        assert not (await limiter.acquire("t1")).allowed
    assert ledger_commands(hub, component="limiter") == before
    assert (await limiter.acquire("t2")).allowed  # one budget per tenant


async def test_hold_raises_rate_limited_and_scope_supplies_the_tenant(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("sf", limit=1, per=60)
    with pytest.raises(TenantRequired):
        await limiter.acquire()
    with tenant_scope("t1"):
        async with limiter.hold() as d:
            assert d.allowed
        with pytest.raises(RateLimited) as info:
            async with limiter.hold():
                pytest.fail("must not run")
    assert info.value.retry_after > 0


async def test_penalize_is_shared_fleet_wide(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        la = a.rate_limiter("hubspot", limit=1000, per=10)
        lb = b.rate_limiter("hubspot", limit=1000, per=10)
        assert (await lb.acquire("t1")).allowed  # b holds a lease
        before = a.ledger.snapshot().by_command.get("set", 0)
        await la.penalize("t1", retry_after=5)  # a got a 429 with Retry-After: 5
        assert a.ledger.snapshot().by_command.get("set", 0) == before + 1
        assert not (await la.acquire("t1")).allowed
        await eventually(lambda: lb.penalty_cache.stats.invalidations >= 1)
        d = await lb.acquire("t1")
        assert not d.allowed
        # b reads the penalty's end on its own estimate of the server's clock, a estimated
        # it on its own: they may differ by the error of those estimates (well under 50 ms)
        assert 3 < d.retry_after <= 5.05
        assert (await lb.acquire("t2")).allowed  # other tenants are not penalised


async def test_local_share_while_suspended_and_charged_after_recovery(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        await hub.sync_server_clock()  # windows on the server's clock, moved by ours from now on
        limiter = hub.rate_limiter("api", limit=100, per=3600, fleet_size=4)
        hub.suspend()
        # the window under way may already be in use by the other 3 machines: no fresh share
        results = [(await limiter.acquire("t1")).allowed for _ in range(40)]
        assert results.count(True) == 0
        clock.advance(3600)  # a window that began while Redis was away: limit / fleet size
        results = [(await limiter.acquire("t1")).allowed for _ in range(40)]
        assert results.count(True) == 25
        hub.resume()
        assert await hub.wait_for(Mode.DISTRIBUTED, 5)
        granted = 0
        while (await limiter.acquire("t1")).allowed:
            granted += 1
        assert granted == 75  # the 25 admitted locally were charged to the fleet counter


async def test_allow_and_deny_policies_when_redis_is_away(hub: Lowtide) -> None:
    allow = hub.rate_limiter("a1", limit=1, per=60, on_redis_error="allow")
    deny = hub.rate_limiter("d1", limit=1000, per=60, on_redis_error="deny")
    hub.suspend()
    assert all([(await allow.acquire("t")).allowed for _ in range(10)])
    assert not (await deny.acquire("t")).allowed


async def test_bounded_wait_for_the_next_token(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("tb", limit=20, per=1.0, algorithm="token_bucket")
    allowed = 0
    while (await limiter.acquire("t1")).allowed:
        allowed += 1
    assert 1 <= allowed <= 20
    t0 = time.monotonic()
    d = await limiter.acquire("t1", wait=1.0)
    assert d.allowed
    assert time.monotonic() - t0 < 1.0
    d = await limiter.acquire("t2", wait=0)
    assert d.allowed


async def test_concurrent_callers_share_one_reservation(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("burst", limit=10_000, per=60)
    decisions = await asyncio.gather(*(limiter.acquire("t1") for _ in range(50)))
    assert all(d.allowed for d in decisions)
    assert limiter.stats["reservations"] <= 8


async def test_fleet_size_comes_from_heartbeats(lowtide_url: str) -> None:
    clock = ManualClock(wall_start=1_800_000_000.0)
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(Lowtide(lowtide_url, clock=clock, instance=f"h{i}"))
            for i in range(3)
        ]
        for lt in hubs:
            await lt.fleet.beat()  # interval n: three hubs beat
        # each counted only the hubs that beat before it: a lower bound, not settled
        assert [(lt.fleet.size, lt.fleet.settled) for lt in hubs] == [
            (1, False),
            (2, False),
            (3, False),
        ]
        clock.advance(60)
        sizes = [await lt.fleet.beat() for lt in hubs]  # interval n+1 sees n's count
        assert sizes == [3, 3, 3]
        assert all(lt.fleet.settled for lt in hubs)
        limiter = hubs[0].rate_limiter("shared", limit=90, per=3600)
        hubs[0].suspend()
        clock.advance(3600)  # the next window began while Redis was away
        allowed = [(await limiter.acquire("t1")).allowed for _ in range(40)]
        assert allowed.count(True) == 30  # local share: 90 / 3 machines


async def test_a_heartbeat_is_one_command_and_a_ring_slot_is_cleared_before_reuse(
    lowtide_url: str,
) -> None:
    clock = ManualClock(wall_start=1_900_000_000.0)
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(Lowtide(lowtide_url, clock=clock, instance=f"r{i}"))
            for i in range(4)
        ]
        for lt in hubs:
            await lt.fleet.beat()  # first beat: BITFIELD + PEXPIRE
        for _ in range(9):  # more than once round the ring of 8
            clock.advance(60)
            sizes = [await lt.fleet.beat() for lt in hubs]
            assert sizes == [4, 4, 4, 4]  # never 8: an old count was cleared before reuse
        for lt in hubs:
            assert ledger_commands(lt, component="fleet") == {"bitfield": 10, "pexpire": 1}
        clock.advance(60)
        assert [await lt.fleet.beat() for lt in hubs[:2]] == [4, 4]  # the previous interval
        clock.advance(60)
        assert await hubs[0].fleet.beat() == 2  # two hubs left


# -- what a reservation costs (issue 14, goal 5) ----------------------------------------------
async def start_of_a_window(
    hub: Lowtide, clock: ManualClock, per: float, name: str, tenant: str
) -> int:
    """Move the manual clock to the start of the next window; returns that window."""
    await hub.sync_server_clock()
    w = window_index(hub.server_time(), per) + 1
    clock.advance(w * per - hub.server_time() + 0.001)
    assert window_index(hub.server_time(), per) == w
    return w


async def test_a_hub_that_took_the_last_token_does_not_ask_again(hub: Lowtide) -> None:
    limiter = hub.rate_limiter("last", limit=10, per=60, fleet_size=1)
    allowed = 0
    while (await limiter.acquire("t1")).allowed:
        allowed += 1
    assert allowed == 10
    # the reservation that took the last token said so: the first refusal cost nothing
    reservations = limiter.stats["reservations"]  # a window key: SET NX PX, then INCRBYs
    sent = ledger_commands(hub, component="limiter")
    assert sent == {"set": 1, "incrby": reservations - 1}
    before = ledger_commands(hub, component="limiter")
    for _ in range(100):
        assert not (await limiter.acquire("t1")).allowed
    assert ledger_commands(hub, component="limiter") == before
    assert limiter.stats["reservations"] == reservations


async def test_a_low_demand_lease_lasts_until_the_window_ends(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        limiter = hub.rate_limiter("slow", limit=100, per=60, fleet_size=4)
        await limiter.prefetch("t1")
        await start_of_a_window(hub, clock, 60, "slow", "t1")
        for _ in range(6):  # one call every 10 s: the demand of this window
            assert (await limiter.acquire("t1")).allowed
            clock.advance(10)
        # the next window: the same demand, served by one reservation made at its first call
        before = limiter.stats["reservations"]
        for _ in range(6):
            assert (await limiter.acquire("t1")).allowed
            clock.advance(10)
        assert limiter.stats["reservations"] == before + 1


async def test_a_spent_window_is_told_to_the_fleet_once(lowtide_url: str) -> None:
    per = 1.0
    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        # a fleet of 3 (the third is idle): telling spares up to 2 refused asks for 1 SET
        la = a.rate_limiter("told", limit=12, per=per, fleet_size=3)
        lb = b.rate_limiter("told", limit=12, per=per, fleet_size=3)
        await la.prefetch("t1")
        await lb.prefetch("t1")

        async def next_window() -> None:  # wait for the next window to begin (polling)
            w = window_index(a.server_time(), per)
            await eventually(lambda: window_index(a.server_time(), per) > w, within=2 * per)

        await next_window()
        for _ in range(8):  # a window of high demand on both (above their share of 4)
            await la.acquire("t1")
            await lb.acquire("t1")
        await next_window()
        # a: a lease of 4, then 4 more (8 taken, 2 in hand); b: 4, the window's last
        assert [(await la.acquire("t1")).allowed for _ in range(6)] == [True] * 6
        received = a.invalidations.received
        assert [(await lb.acquire("t1")).allowed for _ in range(5)] == [True] * 4 + [False]
        assert lb.info()["spent_told"] == 1  # b took the last token, and told
        await eventually(lambda: a.invalidations.received > received)
        before = ledger_commands(a, component="limiter")
        assert [(await la.acquire("t1")).allowed for _ in range(2)] == [True] * 2  # in hand
        d = await la.acquire("t1")  # a's tokens are spent: refused without asking
        assert not d.allowed
        assert 0 < d.retry_after <= per
        assert ledger_commands(a, component="limiter") == before
        assert la.info()["spent_told"] == 0


async def test_a_spent_window_is_not_told_when_no_one_else_would_ask(lowtide_url: str) -> None:
    # a fleet of 2: the other hub would ask once at most, as dear as telling it (1 SET)
    per = 1.0
    async with Lowtide(lowtide_url, instance="a") as a:
        assert await a.invalidations.wait_healthy(5)
        la = a.rate_limiter("alone", limit=10, per=per, fleet_size=2)
        await la.prefetch("t1")
        w = window_index(a.server_time(), per)
        await eventually(lambda: window_index(a.server_time(), per) > w, within=2 * per)
        for _ in range(12):  # high demand: above the share of 5, the window spent
            await la.acquire("t1")
        w = window_index(a.server_time(), per)
        await eventually(lambda: window_index(a.server_time(), per) > w, within=2 * per)
        # the other hub is idle here: a takes both shares, the window's last token included
        assert [(await la.acquire("t1")).allowed for _ in range(11)] == [True] * 10 + [False]
        assert la.info()["spent_told"] == 0
        assert "SET" not in ledger_commands(a, component="control")


async def test_a_spent_window_is_told_while_the_fleet_size_is_not_known(lowtide_url: str) -> None:
    # a hub that just started counted only itself (the heartbeat interval has not ended):
    # the others may be many, so a window it spends at high demand is told
    per = 1.0
    async with Lowtide(lowtide_url, instance="new") as a:
        assert await a.invalidations.wait_healthy(5)
        la = a.rate_limiter("starting", limit=10, per=per)
        await la.prefetch("t1")
        w = window_index(a.server_time(), per)
        await eventually(lambda: window_index(a.server_time(), per) > w, within=2 * per)
        for _ in range(12):  # high demand: above the share (the whole limit), the window spent
            await la.acquire("t1")
        await eventually(lambda: a.fleet.beats > 0)  # the first reservation started it
        assert (a.fleet.size, a.fleet.settled) == (1, False)
        w = window_index(a.server_time(), per)
        await eventually(lambda: window_index(a.server_time(), per) > w, within=2 * per)
        assert [(await la.acquire("t1")).allowed for _ in range(11)] == [True] * 10 + [False]
        assert la.info()["spent_told"] == 1


async def test_four_hubs_hammering_never_exceed_the_limit(lowtide_url: str) -> None:
    limit, per = 60, 1.0
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(Lowtide(lowtide_url, instance=f"h{i}"))
            for i in range(4)
        ]
        limiters = [lt.rate_limiter("hammer", limit, per, fleet_size=4) for lt in hubs]
        for lim in limiters:
            await lim.prefetch("t1")
        admitted: Counter[int] = Counter()
        end = time.monotonic() + 3.2

        async def caller(lt: Lowtide, lim: RateLimiter) -> None:
            while time.monotonic() < end:
                d = await lim.acquire("t1")
                if d.allowed:
                    admitted[window_index(lt.server_time(), per)] += 1
                else:
                    await asyncio.sleep(min(d.retry_after, 0.003))

        await asyncio.gather(
            *(caller(lt, lim) for lt, lim in zip(hubs, limiters, strict=True) for _ in range(5))
        )
    assert max(admitted.values()) <= limit, admitted
    full = sorted(admitted)[1:-1]
    assert full
    assert all(admitted[w] >= 0.9 * limit for w in full), admitted


async def test_reserved_tokens_give_the_mean_lease_size(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url, fleet_switch=False) as lt:
        limiter = lt.rate_limiter("sized", limit=100, per=3600, fleet_size=1)
        for _ in range(30):
            assert (await limiter.acquire("t1")).allowed
        stats = limiter.info()
        assert stats["reservations"] >= 1
        assert stats["reserved_tokens"] >= 30  # every admission came from a granted token
        assert stats["reserved_tokens"] <= 100  # never more than the limit
