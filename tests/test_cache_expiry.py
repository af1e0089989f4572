"""A load after the Redis copy expired: no GET when Redis is known to hold nothing (CLIENT
TRACKING), a GET when a push told of a new copy, and a wrong guess that keeps Redis's copy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lowtide import Lowtide, build_key
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import Loader, eventually

TTL = 1.0


@contextlib.asynccontextmanager
async def two_hubs(server: ValkeyServer) -> AsyncIterator[tuple[Lowtide, Lowtide]]:
    """Two processes' hubs on ``server``, each with its listener healthy."""
    async with Lowtide(server.url, instance="a") as a, Lowtide(server.url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        yield a, b


async def _expired(server: ValkeyServer, hub: Lowtide, rk: str) -> None:
    """Wait until Redis removed ``rk`` (its TTL ran out) and ``hub`` heard that removal."""
    received = hub.invalidations.received
    await eventually(lambda: server.command("EXISTS", rk) == 0)
    await eventually(lambda: hub.invalidations.received > received)


async def test_a_load_after_the_redis_copy_expired_sends_no_get(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    rk = build_key("lt", "cache", "p", "t", "k")
    async with Lowtide(server.url, instance="a") as a:
        assert await a.invalidations.wait_healthy(5)
        cache = a.cache("p", ttl=TTL)
        load = Loader("a")
        assert await cache.get_or_load("k", load, tenant="t") == {"by": "a", "n": 1}
        await _expired(server, a, rk)
        before = ledger_commands(a, component="cache")
        assert await cache.get_or_load("k", load, tenant="t") == {"by": "a", "n": 2}
        assert changes(before, ledger_commands(a, component="cache")) == {"set": 1}  # no GET
        assert cache.stats.known_absent == 1
        assert server.command("PTTL", rk) > 0  # stored again, with its TTL


async def test_a_new_copy_told_by_a_push_is_read_not_loaded(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    rk = build_key("lt", "cache", "p", "t", "k")
    async with two_hubs(server) as (a, b):
        ca, cb = a.cache("p", ttl=TTL), b.cache("p", ttl=TTL)
        load_a, load_b = Loader("a"), Loader("b")
        await ca.get_or_load("k", load_a, tenant="t")
        await _expired(server, a, rk)
        received = a.invalidations.received
        assert await cb.get_or_load("k", load_b, tenant="t") == {"by": "b", "n": 1}  # refilled
        await eventually(lambda: a.invalidations.received > received)  # a heard of it
        before = ledger_commands(a, component="cache")
        assert await ca.get_or_load("k", load_a, tenant="t") == {"by": "b", "n": 1}
        assert changes(before, ledger_commands(a, component="cache")) == {"get": 1}
        assert load_a.calls == 1
        assert ca.stats.known_absent == 0


async def test_a_wrong_guess_keeps_the_copy_redis_holds(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # another process wrote the key with a longer TTL than this cache's: after this cache's
    # TTL the process guesses the copy gone, loads, and its SET NX GET finds the copy: the
    # caller gets what it loaded, Redis keeps the other copy, and L1 holds it from that reply
    server = lowtide_fresh_server
    rk = build_key("lt", "cache", "p", "t", "k")
    async with two_hubs(server) as (a, b):
        ca, cb = a.cache("p", ttl=TTL), b.cache("p", ttl=TTL)
        load_a = Loader("a")
        await ca.get_or_load("k", load_a, tenant="t")
        received = a.invalidations.received
        await cb.set("k", {"by": "b", "n": 0}, tenant="t", ttl=30.0)
        await eventually(lambda: a.invalidations.received > received)
        await _wait(a, 1.2 * TTL)
        assert await ca.get_or_load("k", load_a, tenant="t") == {"by": "a", "n": 2}
        assert ca.stats.known_absent == 1
        assert server.command("PTTL", rk) > 20_000  # b's copy, untouched
        before = ledger_commands(a, component="cache")
        assert await ca.get_or_load("k", load_a, tenant="t") == {"by": "b", "n": 0}
        assert changes(before, ledger_commands(a, component="cache")) == {}  # from L1
        assert load_a.calls == 2


async def _wait(hub: Lowtide, seconds: float) -> None:
    await hub.clock.sleep(seconds)


async def test_an_eager_refresh_with_tracking_stores_without_reading_first(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # a fresh copy under CLIENT TRACKING is the copy Redis holds (a write would have been
    # pushed), so a due refresh loads and overwrites it: 1 SET, no GET
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, b):
        ca = a.cache("p", ttl=2.0, eager_refresh=0.5)
        cb = b.cache("p", ttl=2.0, eager_refresh=0.5)
        load_a, load_b = Loader("a"), Loader("b")
        await cb.get_or_load("k", load_b, tenant="t")  # b stores it
        assert await ca.get_or_load("k", load_a, tenant="t") == {"by": "b", "n": 1}  # a reads it
        await _wait(a, 1.1)  # past half its life: the refresh is due
        before = ledger_commands(a, component="cache")
        assert await ca.get_or_load("k", load_a, tenant="t") == {"by": "b", "n": 1}  # L1 hit
        await eventually(lambda: load_a.calls == 1)  # refreshed in the background
        await eventually(lambda: changes(before, ledger_commands(a, component="cache")) != {})
        assert changes(before, ledger_commands(a, component="cache")) == {"set": 1}
        assert server.command("PTTL", build_key("lt", "cache", "p", "t", "k")) > 1500


@pytest.mark.parametrize("invalidation", ["tracking", "pubsub", "keyspace"])
async def test_a_failed_load_after_the_redis_copy_expired_serves_the_last_good_value(
    lowtide_fresh_server: ValkeyServer, invalidation: str
) -> None:
    """Redis answering "no value" for a copy whose known life is over is its expiry, not a
    delete: fail-safe still has the last good value (it used to be dropped on that miss). A
    delete before the expiry is not: nothing stale comes back after it."""
    server = lowtide_fresh_server

    async def failing() -> Any:
        raise RuntimeError("upstream down")

    async with Lowtide(server.url, invalidation=invalidation) as hub:
        assert await hub.invalidations.wait_healthy(5)
        c = hub.cache("failsafe", ttl=0.3, max_staleness=0.3)
        good = Loader("a")
        assert await c.get_or_load("k", good, tenant="t1") == {"by": "a", "n": 1}
        rk = build_key("lt", "cache", "failsafe", "t1", "k")
        await eventually(lambda: server.command("EXISTS", rk) == 0, within=5.0)
        assert await c.get_or_load("k", failing, tenant="t1") == {"by": "a", "n": 1}
        assert c.stats.stale_served == 1
        # a delete by another process before the copy's life is over: nothing stale after it
        async with Lowtide(server.url, invalidation=invalidation, instance="b") as b:
            assert await b.invalidations.wait_healthy(5)
            c2 = hub.cache("failsafe2", ttl=60, max_staleness=60)
            assert await c2.get_or_load("k", good, tenant="t1") == {"by": "a", "n": 2}
            await b.cache("failsafe2", ttl=60, max_staleness=60).delete("k", tenant="t1")
            await eventually(lambda: c2.peek("k", tenant="t1") is None)
            with pytest.raises(RuntimeError, match="upstream down"):
                await c2.get_or_load("k", failing, tenant="t1")
