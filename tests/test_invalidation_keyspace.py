"""Invalidation by keyspace notifications (``invalidation="keyspace"``), on a real server.

The listener turns on the event classes it needs (never removing any), copies live as long as
their Redis value does (no ``max_staleness`` cap: every writer's changes are published by the
server), a writer keeps its own write without reading it back and without a PUBLISH, a silent
FLUSHALL is noticed by the sentinel check, and hostile messages on the keyspace channels are
bounded like any other pushed message. (The cache contract in every mode, keyspace included, is
tests/test_cache_contract.py.)
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from lowtide import Lowtide, ManualClock
from lowtide.keys import build_key
from lowtide.redis import keyspace as ks
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.helpers import advance_gently, eventually, listeners_caught_up


def events(server: ValkeyServer) -> str:
    reply = server.command("CONFIG", "GET", "notify-keyspace-events")
    return bytes(reply[1]).decode() if isinstance(reply, list) else ""


def test_missing_flags_add_only_what_is_needed() -> None:
    assert ks.missing_flags("") == "Kg$hxe"
    assert ks.missing_flags("Ex") == "Kg$he"
    assert ks.missing_flags("KA") == ""  # A stands for every event class
    assert ks.missing_flags("AE") == "K"
    assert ks.pattern(0, "lt:c:") == "__keyspace@0__:lt:c:*"
    assert ks.pattern(3, "a*b?[c]\\") == "__keyspace@3__:a\\*b\\?\\[c\\]\\\\*"
    assert not ks.is_invalidation(b"expire")
    assert not ks.is_invalidation(b"persist")
    assert not ks.is_invalidation(b"new")  # comes with the write that created the key
    assert not ks.is_invalidation(b"keymiss")  # a read that found nothing
    assert ks.is_invalidation(b"set")
    assert ks.is_invalidation(b"expired")
    assert ks.is_invalidation(b"x" * 100)
    assert ks.is_invalidation(None)


@pytest.mark.parametrize("before", ["", "Ex", "KEA"])
async def test_the_listener_adds_the_event_classes_it_needs_and_removes_none(before: str) -> None:
    with ValkeyServer() as server:
        server.command("CONFIG", "SET", "notify-keyspace-events", before)
        sets = server_commands(server).get("config|set", 0)
        async with Lowtide(server.url, invalidation="keyspace") as hub:
            assert await hub.invalidations.wait_healthy(5)
            assert hub.health()["invalidation"]["mode"] == "keyspace"
            now = events(server)
            assert set(before) <= set(now)
            assert ks.missing_flags(now) == ""
            if before == "KEA":
                assert set(now) == set(before)  # nothing to add: no CONFIG SET was sent
                assert server_commands(server).get("config|set", 0) == sets


async def test_copies_live_as_long_as_their_redis_value_and_writers_send_no_publish() -> None:
    clock = ManualClock()
    with ValkeyServer() as server:
        async with (
            Lowtide(server.url, invalidation="keyspace", instance="a", clock=clock) as a,
            Lowtide(server.url, invalidation="keyspace", instance="b", clock=clock) as b,
        ):
            for hub in (a, b):
                assert await hub.invalidations.wait_healthy(5)
            ca, cb = a.cache("profiles", ttl=300), b.cache("profiles", ttl=300)
            before_server = server_commands(server)
            before = ledger_commands(a, component="cache")
            before_b = ledger_commands(b, component="cache")
            await ca.set("u1", "v1", tenant="t1")
            # the write's message reached both first (one landing while b's GET is in flight
            # rightly keeps b from holding what it read), and a swallowed its own
            await listeners_caught_up([a, b])
            assert await cb.get("u1", tenant="t1") == "v1"
            assert await ca.get("u1", tenant="t1") == "v1"  # no read-back
            # past max_staleness (60 s): still served from memory, no GET
            await advance_gently(clock, 90)
            for _ in range(5):
                assert await ca.get("u1", tenant="t1") == "v1"
                assert await cb.get("u1", tenant="t1") == "v1"
            assert changes(before, ledger_commands(a, component="cache")) == {"set": 1}
            assert changes(before_b, ledger_commands(b, component="cache")) == {"get": 1}
            assert "publish" not in changes(before_server, server_commands(server))
            # a write by any client reaches both
            raw = build_key("lt", "cache", "profiles", "t1", "u1")
            other = plain_client(server.url)
            await other.delete(raw)
            await other.aclose()
            await eventually(
                lambda: ca.peek("u1", tenant="t1") is None and cb.peek("u1", tenant="t1") is None
            )
            # the Redis copy's own expiry is pushed too ("expired")
            await ca.set("u2", "v", tenant="t1", ttl=1.0)
            await listeners_caught_up([a, b])
            assert await cb.get("u2", tenant="t1") == "v"
            assert cb.peek("u2", tenant="t1") == "v"
            await eventually(lambda: cb.peek("u2", tenant="t1") is None)


async def test_a_silent_flushall_is_noticed_by_the_sentinel_check() -> None:
    clock = ManualClock()
    with ValkeyServer() as server:
        async with Lowtide(server.url, invalidation="keyspace", clock=clock) as hub:
            assert await hub.invalidations.wait_healthy(5)
            cache = hub.cache("profiles", ttl=300)
            await cache.set("u1", "v1", tenant="t1")
            server.flushall()
            await listeners_caught_up([hub])  # whatever the flush sent has arrived: nothing
            assert cache.peek("u1", tenant="t1") == "v1"  # no event for a flush
            before = ledger_commands(hub, component="invalidation")
            await advance_gently(clock, 45.1)  # three keepalive periods
            await eventually(lambda: cache.peek("u1", tenant="t1") is None)
            assert hub.health()["invalidation"]["silent_flushes"] == 1
            # one PEXPIRE found the sentinel gone, one SET wrote it again
            sent = changes(before, ledger_commands(hub, component="invalidation"))
            sent.pop("ping", None)  # keepalives of a quiet listener
            assert sent == {"pexpire": 1, "set": 1}
            assert await cache.get("u1", tenant="t1") is None
            # while nothing vanishes, a check costs one PEXPIRE and flushes nothing
            await cache.set("u1", "v2", tenant="t1")
            before = ledger_commands(hub, component="invalidation")
            await advance_gently(clock, 45.1)
            await eventually(
                lambda: (
                    changes(before, ledger_commands(hub, component="invalidation")).get("pexpire")
                    == 1
                )
            )
            assert "set" not in changes(before, ledger_commands(hub, component="invalidation"))
            assert cache.peek("u1", tenant="t1") == "v2"
            assert hub.health()["invalidation"]["silent_flushes"] == 1


async def test_the_fleet_shares_one_sentinel_check_per_period_and_every_hub_hears_a_flush() -> None:
    keepalive = 0.4  # a check period of 1.2 s
    with ValkeyServer() as server:
        async with AsyncExitStack() as stack:
            hubs = []
            for i in range(3):
                hub = Lowtide(server.url, invalidation="keyspace", instance=f"k{i}")
                hub.invalidations.keepalive = keepalive
                hubs.append(await stack.enter_async_context(hub))
            for hub in hubs:
                assert await hub.invalidations.wait_healthy(5)
            caches = [hub.cache("profiles", ttl=300) for hub in hubs]
            await caches[0].set("u1", "v1", tenant="t1")
            await listeners_caught_up(hubs)  # the write's message must not race the reads
            for cache in caches[1:]:
                assert await cache.get("u1", tenant="t1") == "v1"
            before = server_commands(server).get("pexpire", 0)
            await asyncio.sleep(10 * 3 * keepalive)  # 10 check periods
            checks = server_commands(server).get("pexpire", 0) - before
            assert all(hub.invalidations.healthy for hub in hubs)
            # about one check per period for the whole fleet (each hub alone: 30)
            assert 8 <= checks <= 15, checks
            assert all(c.peek("u1", tenant="t1") == "v1" for c in caches)
            server.flushall()  # silent: one hub's check finds the sentinel gone, tells the others
            for cache in caches:
                await eventually(lambda cache=cache: cache.peek("u1", tenant="t1") is None)
            flushes = [hub.health()["invalidation"]["silent_flushes"] for hub in hubs]
            assert flushes == [1, 1, 1]
            assert server.command("EXISTS", "lt:x:sentinel::fleet") == 1  # written again


async def _quiet_fleet(server: ValkeyServer, stack: AsyncExitStack) -> list[Lowtide]:
    """Three healthy keyspace-mode hubs whose own sentinel checks are not due during a test."""
    hubs = []
    for i in range(3):
        hub = Lowtide(server.url, invalidation="keyspace", instance=f"k{i}")
        hub.invalidations.keepalive = 60.0
        hubs.append(await stack.enter_async_context(hub))
    for hub in hubs:
        assert await hub.invalidations.wait_healthy(5)
    return hubs


async def test_two_checks_that_find_the_sentinel_gone_at_once_flush_each_process_once() -> None:
    with ValkeyServer() as server:
        async with AsyncExitStack() as stack:
            hubs = await _quiet_fleet(server, stack)
            server.flushall()
            checks = [hub.invalidations._probes for hub in hubs[:2]]
            for probes in checks:
                probes._due = 0.0  # both due now
            found = await asyncio.gather(
                *(probes.flushed(hubs[0].invalidations.mode) for probes in checks)
            )
            # one SET NX landed; the other process flushes on hearing it (True as well when
            # it heard that write while its own SET NX was in flight)
            assert True in found
            await eventually(
                lambda: [h.health()["invalidation"]["silent_flushes"] for h in hubs] == [1, 1, 1]
            )
            await asyncio.sleep(0.2)  # nothing more arrives
            assert [h.health()["invalidation"]["silent_flushes"] for h in hubs] == [1, 1, 1]
            assert server.command("EXISTS", "lt:x:sentinel::fleet") == 1


async def test_a_check_that_hears_another_write_while_its_own_is_in_flight_flushes() -> None:
    # the order that left a process with stale copies after a FLUSHALL: its SET NX is in
    # flight when it hears another process's SET of the sentinel; its own then fails (NX)
    with ValkeyServer() as server:
        async with AsyncExitStack() as stack:
            hubs = await _quiet_fleet(server, stack)
            caches = [hub.cache("profiles", ttl=300) for hub in hubs]
            await caches[0].set("u1", "v1", tenant="t1")
            await listeners_caught_up(hubs)
            assert all([await c.get("u1", tenant="t1") == "v1" for c in caches])
            server.flushall()
            late, first = (hub.invalidations._probes for hub in hubs[:2])
            gateway = hubs[0].gateway
            send = gateway.control

            async def held(attribution: Any, *args: Any) -> Any:
                if args[:1] == ("SET",) and "NX" in args:
                    first._due = 0.0
                    assert await first.flushed(hubs[1].invalidations.mode)  # lands first
                    await listeners_caught_up(hubs)  # and every process heard it
                return await send(attribution, *args)

            gateway.control = held  # type: ignore[method-assign]
            late._due = 0.0
            assert await late.flushed(hubs[0].invalidations.mode)  # its SET NX found the key
            gateway.control = send  # type: ignore[method-assign]
            await asyncio.sleep(0.2)  # nothing more arrives
            # each process flushes once: the two checks' callers on True (above), the third on
            # hearing the write that landed
            assert [h.health()["invalidation"]["silent_flushes"] for h in hubs] == [1, 1, 1]
            assert caches[2].peek("u1", tenant="t1") is None


async def test_hostile_messages_on_keyspace_channels_are_bounded() -> None:
    with ValkeyServer() as server:
        async with Lowtide(server.url, invalidation="keyspace") as hub:
            assert await hub.invalidations.wait_healthy(5)
            cache = hub.cache("profiles")
            await cache.set("u1", "v1", tenant="t1")
            await cache.set("u2", "v2", tenant="t1")
            raw = build_key("lt", "cache", "profiles", "t1", "u1")
            other = plain_client(server.url)
            # a huge "event" on a real key's channel: one invalidation of that key
            await other.publish(f"__keyspace@0__:{raw}", b"x" * (2 << 20))
            # a TTL-only event changes nothing
            await other.publish(f"__keyspace@0__:{raw.replace('u1', 'u2')}", b"expire")
            # an over-long key under the prefix: skipped and counted
            await other.publish("__keyspace@0__:lt:c:" + "k" * 200_000, b"set")
            await other.aclose()
            await eventually(lambda: cache.peek("u1", tenant="t1") is None)
            await eventually(lambda: hub.health()["invalidation"]["skipped_keys"] == 1)
            assert cache.peek("u2", tenant="t1") == "v2"
            assert hub.invalidations.healthy


async def test_refused_configuration_leaves_the_listener_down_with_the_reason() -> None:
    with ValkeyServer() as server:
        server.command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config")
        url = f"redis://app:pw@{server.host}:{server.port}/0"
        async with Lowtide(url, invalidation="keyspace", start_wait=0) as hub:
            await eventually(lambda: hub.invalidations.last_error is not None)
            assert not hub.invalidations.healthy
            assert "notify-keyspace-events" in str(hub.invalidations.last_error)
            cache = hub.cache("profiles")
            await cache.set("u1", "v1", tenant="t1")
            assert await cache.get("u1", tenant="t1") == "v1"  # through Redis, not memory
            assert cache.peek("u1", tenant="t1") is None


@pytest.mark.parametrize(("refused", "feed"), [((), "keyspace"), (("-config",), "pubsub")])
async def test_auto_on_upstash_uses_keyspace_notifications_where_config_is_allowed(
    refused: tuple[str, ...], feed: str
) -> None:
    with ValkeyServer() as server:
        server.command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", *refused)
        url = f"redis://app:pw@{server.host}:{server.port}/0"
        async with Lowtide(url, provider="upstash") as hub:
            assert await hub.invalidations.wait_healthy(5)
            assert hub.health()["invalidation"]["mode"] == feed
            assert hub.health()["invalidation"]["setting"] == "auto"
            # Upstash documents no CLIENT TRACKING: never tried
            assert "client|tracking" not in server_commands(server)
            assert (ks.missing_flags(events(server)) == "") is (feed == "keyspace")


async def test_a_write_on_an_expired_key_is_kept_by_its_writer_and_reaches_the_others() -> None:
    # with active expiry off, an expired key stays in Redis until touched: a write on it
    # publishes `expired` (the old value's removal) and then its own `set`
    with ValkeyServer(args=["--enable-debug-command", "yes"]) as server:
        server.command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        async with (
            Lowtide(server.url, invalidation="keyspace", instance="a") as a,
            Lowtide(server.url, invalidation="keyspace", instance="b") as b,
        ):
            for hub in (a, b):
                assert await hub.invalidations.wait_healthy(5)
            ca, cb = a.cache("profiles", ttl=300), b.cache("profiles", ttl=300)
            await ca.set("u1", "old", tenant="t1", ttl=0.05)
            await listeners_caught_up([a, b])
            await asyncio.sleep(0.1)  # its life is over; Redis still holds it (no active expiry)
            assert server.command(
                "DEBUG", "OBJECT", build_key("lt", "cache", "profiles", "t1", "u1")
            )
            echoes = ca.stats.echoes
            await ca.set("u1", "new", tenant="t1")
            await listeners_caught_up([a, b])
            assert ca.stats.echoes == echoes + 1  # its own `set`, not the `expired` before it
            before = ledger_commands(a, component="cache")
            assert await ca.get("u1", tenant="t1") == "new"  # still fresh in memory
            assert changes(before, ledger_commands(a, component="cache")) == {}
            assert await cb.get("u1", tenant="t1") == "new"  # the other hub reads the new value
