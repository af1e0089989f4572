"""Interleavings the fleet-wide rate limiter must survive, forced on a real server.

Each test holds a reply (or the end of a read) by wrapping one method of a hub object, so the
interleaving happens every run: a push handled while the fleet's configuration is being read,
a penalty that begins while a reservation is in flight, a tenant's lease evicted at
``max_tenants`` in the middle of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lowtide import Lowtide, ManualClock, Mode, RateLimiter
from lowtide.errors import RedisUnavailable
from lowtide.limiter.agreement import CONFIG_TTL, LimitConfig
from lowtide.limiter.core import window_index
from tests.helpers import eventually

PER = 30.0


@contextlib.asynccontextmanager
async def two_hubs(
    url: str, clock: ManualClock, *names: str
) -> AsyncIterator[tuple[Lowtide, Lowtide]]:
    """Two healthy hubs (``names``) on one server, sharing ``clock``."""
    async with (
        Lowtide(url, clock=clock, instance=names[0]) as a,
        Lowtide(url, clock=clock, instance=names[1]) as b,
    ):
        for hub in (a, b):
            assert await hub.invalidations.wait_healthy(5)
        yield a, b


async def next_window(hub: Lowtide, clock: ManualClock, per: float) -> int:
    """Move the manual clock just past the start of the next window; returns it."""
    await hub.sync_server_clock()
    w = window_index(hub.server_time(), per) + 1
    clock.advance(w * per - hub.server_time() + 0.01)
    assert window_index(hub.server_time(), per) == w
    return w


async def admitted(limiter: RateLimiter, tenant: str, n: int) -> int:
    """How many of ``n`` calls for ``tenant`` ``limiter`` admits, one after the other."""
    return sum([(await limiter.acquire(tenant)).allowed for _ in range(n)])


def heard_config(limiter: RateLimiter) -> asyncio.Event:
    """Set each time ``limiter``'s hub hears that the stored configuration changed (a push)."""
    event = asyncio.Event()
    limiter._agreement._cache.watch(lambda _: event.set())
    return event


# -- the fleet's configuration, read while a push arrives ---------------------------------------
async def test_a_stricter_config_pushed_while_settle_reads_is_not_overwritten_by_the_stale_reply(
    lowtide_url: str,
) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="p0") as p0:  # an earlier deploy: 50
        await p0.rate_limiter("crm", limit=50, per=PER, fleet_size=2).prefetch("t1")
    async with two_hubs(lowtide_url, clock, "p1", "p2") as (p1, p2):
        l1 = p1.rate_limiter("crm", limit=50, per=PER, fleet_size=2)
        l2 = p2.rate_limiter("crm", limit=5, per=PER, fleet_size=2)
        heard = heard_config(l1)
        cache = l1._agreement._cache
        real_get = cache.get
        reads: list[object] = []

        async def get(key: str, **kw: Any) -> Any:
            value = await real_get(key, **kw)  # the server answered "50"
            reads.append(value)
            if len(reads) == 1:
                await l2.prefetch("t1")  # p2 stores the stricter 5 meanwhile
                await asyncio.wait_for(heard.wait(), 5)  # p1's listener handles the push
            return value  # ... and only then does p1 read its reply

        cache.get = get  # type: ignore[method-assign]
        await l1.prefetch("t1")
        del cache.get
        assert l1.info()["enforced_limit"] == 5
        assert len(reads) == 2  # the reply read before the push was read again
        await next_window(p1, clock, PER)
        await p2.sync_server_clock()
        assert await admitted(l1, "t1", 60) + await admitted(l2, "t1", 60) <= 5


async def test_a_config_that_keeps_changing_stays_unsettled_until_the_next_decision(
    lowtide_url: str,
) -> None:
    clock = ManualClock()
    async with two_hubs(lowtide_url, clock, "p1", "p2") as (p1, p2):
        l1 = p1.rate_limiter("crm", limit=50, per=PER, fleet_size=2)
        await l1.prefetch("t1")  # stores 50
        l2 = p2.rate_limiter("crm", limit=50, per=PER, fleet_size=2)
        heard = heard_config(l1)
        stored = l2._agreement._cache  # p2 writes the key through its own cache: a push to p1
        cache = l1._agreement._cache
        real_get = cache.get
        reads: list[object] = []

        async def get(key: str, **kw: Any) -> Any:
            value = await real_get(key, **kw)
            reads.append(value)
            heard.clear()
            stricter = LimitConfig("fixed_window", 10 - len(reads), PER).text()
            await stored.set("config", stricter, ttl=CONFIG_TTL)  # changed under every read
            await asyncio.wait_for(heard.wait(), 5)
            return value

        assert l1.info()["enforced_limit"] == 50
        heard.clear()
        await stored.set("config", LimitConfig("fixed_window", 10, PER).text(), ttl=CONFIG_TTL)
        await asyncio.wait_for(heard.wait(), 5)  # p1 must read the configuration again
        cache.get = get  # type: ignore[method-assign]
        await l1._agreement.settle()
        del cache.get
        # a few reads, each made stale by a push before its reply was used: none is trusted,
        # the last agreed limit stays, and the next decision reads again
        assert 2 <= len(reads) <= 5
        assert l1.info()["enforced_limit"] == 50
        await next_window(p1, clock, PER)
        assert (await l1.acquire("t1")).allowed
        assert l1.info()["enforced_limit"] == 10 - len(reads)


# -- a penalty that begins while a reservation is in flight -------------------------------------
@contextlib.contextmanager
def held_reservations(
    hub: Lowtide, *, lost: bool = False
) -> Iterator[tuple[asyncio.Event, asyncio.Event]]:
    """Hold the replies of ``hub``'s window reservations (already executed by the server) until
    the second event is set; the first is set once a reply is held. ``lost``: the held reply
    never arrives (the connection failed: RedisUnavailable)."""
    gateway = hub.gateway
    real_call = gateway.call
    held, release = asyncio.Event(), asyncio.Event()

    async def call(attribution: Any, *args: Any) -> Any:
        reply = await real_call(attribution, *args)
        if args and args[0] in ("SET", "INCRBY") and ":r:" in str(args[1]):
            held.set()
            await release.wait()
            if lost:
                raise RedisUnavailable("the reply was lost", reason="timeout")
        return reply

    gateway.call = call  # type: ignore[method-assign]
    try:
        yield held, release
    finally:
        release.set()
        del gateway.call


async def busy_tenant(hub: Lowtide, clock: ManualClock, limiter: RateLimiter) -> None:
    """A window of 50 calls for t1 (so leases are sized to a busy tenant), then the next one."""
    await next_window(hub, clock, 10)
    assert await admitted(limiter, "t1", 50) == 50
    clock.advance(10)


@pytest.mark.parametrize("lost", [False, True], ids=["granted", "failed"])
async def test_penalize_during_a_reservation_in_flight_admits_nothing(
    lowtide_url: str, lost: bool
) -> None:
    # granted: none of its grant is spent during the penalty; failed (the reply is lost):
    # the owner is decided locally, and the local decision honours the penalty too
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        limiter = hub.rate_limiter("pen", limit=100, per=10, fleet_size=1)
        await limiter.prefetch("t1")
        await busy_tenant(hub, clock, limiter)
        with held_reservations(hub, lost=lost) as (held, release):
            owner = asyncio.create_task(limiter.acquire("t1"))  # reserves: its reply is held
            await asyncio.wait_for(held.wait(), 5)
            await limiter.penalize("t1", 600)  # the provider said 429, Retry-After: 600
            release.set()
            decision = await owner
        assert not decision.allowed
        assert limiter.stats["local"] == (1 if lost else 0)
        assert await admitted(limiter, "t1", 60) == 0


async def test_a_penalty_heard_during_a_reservation_in_flight_spends_none_of_its_grant(
    lowtide_url: str,
) -> None:
    clock = ManualClock()
    async with two_hubs(lowtide_url, clock, "a", "b") as (a, b):
        la = a.rate_limiter("pen", limit=100, per=10, fleet_size=1)
        lb = b.rate_limiter("pen", limit=100, per=10, fleet_size=1)
        for limiter in (la, lb):
            await limiter.prefetch("t1")
        await busy_tenant(b, clock, lb)
        await a.sync_server_clock()
        with held_reservations(b) as (held, release):
            owner = asyncio.create_task(lb.acquire("t1"))
            await asyncio.wait_for(held.wait(), 5)
            invalidations = lb.penalty_cache.stats.invalidations
            await la.penalize("t1", 600)  # another hub got the 429
            await eventually(lambda: lb.penalty_cache.stats.invalidations > invalidations)
            # the next decision on b reads the penalty while b's reservation is still held
            assert not (await lb.acquire("t1")).allowed
            release.set()
            decision = await owner
        assert not decision.allowed
        assert await admitted(lb, "t1", 60) == 0


# -- a tenant's lease evicted at max_tenants, Redis away ----------------------------------------
async def test_an_evicted_lease_on_a_hub_without_redis_leaves_no_fresh_budget() -> None:
    clock = ManualClock()
    async with Lowtide(None, clock=clock) as hub:  # a fleet of one, always local
        limiter = hub.rate_limiter("evict0", limit=5, per=100, max_tenants=2)
        clock.advance(100 - hub.server_time() % 100 + 0.01)  # the start of a window
        assert await admitted(limiter, "t1", 8) == 5
        assert await admitted(limiter, "t2", 1) == 1
        # t1's lease is evicted: a lease that knows nothing of this window (t3's, or t1's
        # re-created) starts from the most an evicted lease used of it (under-use for t3)
        other = await admitted(limiter, "t3", 1)
        assert limiter.info()["tenants"] == 2
        assert await admitted(limiter, "t1", 8) == 0
        assert other == 0
        clock.advance(100)  # a new window: the whole limit again
        assert await admitted(limiter, "t1", 8) == 5


async def test_an_evicted_lease_that_reserved_in_the_window_leaves_no_fresh_local_budget(
    lowtide_url: str,
) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        limiter = hub.rate_limiter("evict", limit=5, per=100, fleet_size=1, max_tenants=1)
        await limiter.prefetch("t1")
        await next_window(hub, clock, 100)
        assert await admitted(limiter, "t1", 8) == 5  # the window's whole limit, through Redis
        assert (await limiter.acquire("t2")).allowed  # t1's lease is evicted
        hub.suspend()  # Redis away for this hub, in the same window
        assert await hub.wait_for(Mode.SUSPENDED, 5)
        assert await admitted(limiter, "t1", 8) == 0


async def test_local_admissions_survive_eviction_until_their_window_ends(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        limiter = hub.rate_limiter("evict2", limit=10, per=100, fleet_size=2, max_tenants=1)
        await limiter.prefetch("t1")
        hub.suspend()
        assert await hub.wait_for(Mode.SUSPENDED, 5)
        await next_window(hub, clock, 100)  # a window that began during the outage: 10 // 2
        total = 0
        for _ in range(4):
            total += await admitted(limiter, "t1", 10)
            await limiter.acquire("t2")  # a new tenant: t1 is the least recently used
        assert total == 5
        assert limiter.info()["tenants"] == 2  # both hold admissions the counter has not seen
        # once the window is over, the leases kept for it go: memory stays bounded
        clock.advance(100)
        assert (await limiter.acquire("t3")).allowed
        assert limiter.info()["tenants"] == 1
