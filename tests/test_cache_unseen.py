"""A load of a key this process holds no L1 entry for, in tracking and keyspace modes: no GET
when no push named the key for longer than ``ttl`` (the listener hears every write under the
cache's prefix), a GET when one did, when the record is not complete (new listener session,
``clear_local``, too many keys heard) or when this process dropped its own copy, and never a
guess in pub/sub mode (see :mod:`lowtide.cache.unseen`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lowtide import Cache, Lowtide, ManualClock, build_key
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import Loader, advance_gently, eventually, listeners_caught_up

TTL = 10.0  # the guessing cache's ttl, on its manual clock
PAST = 1.1 * TTL  # longer than a copy lives, plus the margin for clocks


@contextlib.asynccontextmanager
async def two_hubs(
    server: ValkeyServer, invalidation: str = "tracking"
) -> AsyncIterator[tuple[Lowtide, Lowtide, ManualClock]]:
    """Hub ``a`` on a manual clock (the one that guesses) and hub ``b`` (another process)."""
    clock = ManualClock()
    async with (
        Lowtide(server.url, instance="a", clock=clock, invalidation=invalidation) as a,
        Lowtide(server.url, instance="b", invalidation=invalidation) as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        yield a, b, clock


async def load(hub: Lowtide, cache: Cache, key: str, loader: Loader) -> tuple[Any, dict[str, int]]:
    """``get_or_load`` of ``key`` (tenant ``t``): its answer and the cache commands it sent."""
    before = ledger_commands(hub, component="cache")
    value = await cache.get_or_load(key, loader, tenant="t")
    return value, changes(before, ledger_commands(hub, component="cache"))


async def complete(hub: Lowtide, cache: Cache, clock: ManualClock) -> None:
    """Make ``cache``'s record of pushes complete for longer than a copy lives: the first load
    starts it (and reads Redis), then the time of a copy's life passes."""
    _, sent = await load(hub, cache, "start", Loader("start"))
    assert sent == {"get": 1, "set": 1}  # nothing known yet: read first
    await advance_gently(clock, PAST)
    assert hub.invalidations.healthy


@pytest.mark.parametrize("invalidation", ["tracking", "keyspace"])
async def test_an_unseen_key_whose_copy_expired_long_ago_is_loaded_without_a_get(
    lowtide_fresh_server: ValkeyServer, invalidation: str
) -> None:
    server = lowtide_fresh_server
    async with two_hubs(server, invalidation) as (a, b, clock):
        ca, cb = a.cache("p", ttl=TTL), b.cache("p", ttl=TTL)
        await complete(a, ca, clock)
        await cb.set("k", {"by": "b"}, tenant="t", ttl=0.2)  # a never read it
        rk = build_key("lt", "cache", "p", "t", "k")
        await eventually(lambda: server.command("EXISTS", rk) == 0)  # expired (and pushed)
        await listeners_caught_up([a, b])
        load_a = Loader("a")
        if invalidation == "keyspace":
            # the push was the expiry itself ("expired"): no copy after it, guessed at once
            assert await load(a, ca, "k", load_a) == ({"by": "a", "n": 1}, {"set": 1})
        else:
            # a tracking push does not say expiry from write: a copy's life must pass first
            assert await load(a, ca, "k", load_a) == ({"by": "a", "n": 1}, {"get": 1, "set": 1})
            ca.local_delete("k", tenant="t")  # dropped again (recorded as of now)
            await advance_gently(clock, PAST)
            assert await load(a, ca, "k", load_a) == ({"by": "a", "n": 2}, {"set": 1})  # no GET
        assert ca.stats.known_absent == 1
        assert server.command("PTTL", rk) > 0  # stored, with its TTL
        # a key nobody ever wrote: no GET either
        assert await load(a, ca, "never", Loader("n")) == ({"by": "n", "n": 1}, {"set": 1})
        assert ca.stats.known_absent == 2


async def test_a_tracking_push_a_ttl_after_a_write_is_taken_for_its_expiry(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, b, clock):
        ca, cb = a.cache("p", ttl=TTL), b.cache("p", ttl=TTL)
        await complete(a, ca, clock)
        rk = build_key("lt", "cache", "p", "t", "k")
        await cb.set("k", {"by": "b"}, tenant="t", ttl=1.0)  # a never read it
        await listeners_caught_up([a, b])  # a heard the write's push
        await advance_gently(clock, TTL)  # on a's clock, that copy's life is over
        await eventually(lambda: server.command("EXISTS", rk) == 0)  # expired (and pushed)
        await listeners_caught_up([a, b])
        load_a = Loader("a")
        assert await load(a, ca, "k", load_a) == ({"by": "a", "n": 1}, {"set": 1})  # no GET
        assert ca.stats.known_absent == 1
        # two writes half a ttl apart: the second push is a write, and the key is read
        await cb.set("k2", {"by": "b", "v": 1}, tenant="t", ttl=60.0)
        await listeners_caught_up([a, b])
        await advance_gently(clock, TTL / 2)
        await cb.set("k2", {"by": "b", "v": 2}, tenant="t", ttl=60.0)
        await listeners_caught_up([a, b])
        assert await load(a, ca, "k2", Loader("a2")) == ({"by": "b", "v": 2}, {"get": 1})
        assert ca.stats.known_absent == 1


async def test_an_unseen_key_another_process_wrote_within_ttl_is_read(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, b, clock):
        ca, cb = a.cache("p", ttl=TTL), b.cache("p", ttl=TTL)
        await complete(a, ca, clock)
        # a longer real life than TTL: a's manual clock (and wall time) ran ahead of b's
        await cb.set("k", {"by": "b"}, tenant="t", ttl=60.0)
        await listeners_caught_up([a, b])  # a heard the push (it holds no entry for k)
        load_a = Loader("a")
        assert await load(a, ca, "k", load_a) == ({"by": "b"}, {"get": 1})
        assert load_a.calls == 0
        assert ca.stats.known_absent == 0


async def test_clear_local_and_a_lost_listener_start_the_record_again(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, _, clock):
        ca = a.cache("p", ttl=TTL)
        await complete(a, ca, clock)
        assert (await load(a, ca, "k1", Loader("1")))[1] == {"set": 1}  # guessed
        ca.clear_local()
        assert (await load(a, ca, "k2", Loader("2")))[1] == {"get": 1, "set": 1}
        await advance_gently(clock, PAST)
        assert (await load(a, ca, "k3", Loader("3")))[1] == {"set": 1}  # complete again
        inv = a.invalidations
        server.command("CLIENT", "KILL", "TYPE", "pubsub")  # the listener's connection dies
        await eventually(lambda: not inv.healthy)
        # nothing is guessed while the listener is down (pushes may be missed; nor is the
        # loaded value stored then: the race guard cannot vouch for it)
        assert (await load(a, ca, "k4", Loader("4")))[1] == {"get": 1}
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(4.0)  # the reconnection's backoff
        assert await inv.wait_healthy(5)
        # a new session: the record starts again
        assert (await load(a, ca, "k5", Loader("5")))[1] == {"get": 1, "set": 1}
        await advance_gently(clock, PAST)
        assert (await load(a, ca, "k6", Loader("6")))[1] == {"set": 1}
        assert ca.stats.known_absent == 3  # k1, k3, k6


async def test_an_evicted_own_write_is_read_not_guessed(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # the writer connection has NOLOOP: this process's own write is never pushed back, so the
    # eviction of its entry is what keeps the key from looking untouched
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, _, clock):
        ca = a.cache("p", ttl=TTL, max_entries=2, max_tenant_share=1.0)
        await complete(a, ca, clock)
        await ca.set("mine", {"by": "me"}, tenant="t")
        assert ca.peek("mine", tenant="t") == {"by": "me"}
        for key in ("x", "y"):
            await ca.get_or_load(key, Loader(key), tenant="t")
        assert ca.peek("mine", tenant="t") is None  # evicted
        load_a = Loader("a")
        assert await load(a, ca, "mine", load_a) == ({"by": "me"}, {"get": 1})
        assert load_a.calls == 0


async def test_more_keys_heard_than_the_cap_restart_the_record(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with two_hubs(server) as (a, b, clock):
        # remembers 4 keys heard (and holds 4 entries: none is evicted here)
        ca = a.cache("p", ttl=TTL, max_entries=4, max_tenant_share=1.0)
        cb = b.cache("p", ttl=TTL, max_entries=4, max_tenant_share=1.0)
        await complete(a, ca, clock)
        assert (await load(a, ca, "z1", Loader("1")))[1] == {"set": 1}
        await cb.set_many({f"w{i}": i for i in range(4)}, tenant="t")
        await listeners_caught_up([a, b])
        assert (await load(a, ca, "z2", Loader("2")))[1] == {"set": 1}  # 4 fit
        await cb.set("w4", 4, tenant="t")
        await listeners_caught_up([a, b])
        # the oldest record was dropped: nothing is known of the time before it any more
        assert ca._l1.unseen.since == clock.monotonic()
        assert (await load(a, ca, "z3", Loader("3")))[1] == {"get": 1, "set": 1}
        await advance_gently(clock, PAST)
        assert (await load(a, ca, "z4", Loader("4")))[1] == {"set": 1}
        assert ca.stats.known_absent == 3


async def test_pubsub_mode_never_guesses(lowtide_fresh_server: ValkeyServer) -> None:
    # a fill sends no message on the backplane: no push would tell of another process's copy
    server = lowtide_fresh_server
    async with two_hubs(server, "pubsub") as (a, _, clock):
        ca = a.cache("p", ttl=TTL)
        await complete(a, ca, clock)
        assert (await load(a, ca, "k", Loader("k")))[1] == {"get": 1, "set": 1}
        assert ca.stats.known_absent == 0
