"""The tiered cache on a real server: single-flight, fail-safe, refresh, isolation, typed errors.

Behaviour across hubs (costs, push invalidation, own writes, races, staleness, listener loss) is
in tests/test_cache_contract.py, run in every invalidation listener mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lowtide import (
    ConfigError,
    InvalidKeyError,
    Lowtide,
    ManualClock,
    SerializationError,
    TenantRequired,
    ValueTooLarge,
    build_key,
    tenant_scope,
)
from lowtide.context import Attribution
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import eventually

A = Attribution("test", "-")


@pytest.fixture
async def hub(lowtide_url: str) -> AsyncIterator[Lowtide]:
    async with Lowtide(lowtide_url, instance="a") as lt:
        assert await lt.invalidations.wait_healthy(5)
        yield lt


async def test_single_flight_one_get_one_load_one_set(hub: Lowtide) -> None:
    cache = hub.cache("reports")
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"n": 1}

    c0 = ledger_commands(hub, component="cache")
    results = await asyncio.gather(
        *(cache.get_or_load("r", loader, tenant="t1") for _ in range(50))
    )
    assert results == [{"n": 1}] * 50
    assert calls == 1
    assert changes(c0, ledger_commands(hub, component="cache")) == {"get": 1, "set": 1}
    assert cache.stats.coalesced == 49


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(hub: Lowtide) -> None:
    cache = hub.cache("reports")
    gate = asyncio.Event()

    async def loader() -> str:
        await gate.wait()
        return "v"

    first = asyncio.ensure_future(cache.get_or_load("r", loader, tenant="t"))
    second = asyncio.ensure_future(cache.get_or_load("r", loader, tenant="t"))
    await asyncio.sleep(0.01)
    first.cancel()
    gate.set()
    assert await second == "v"


async def test_negative_caching_of_loader_none(hub: Lowtide) -> None:
    cache = hub.cache("users", negative_ttl=30)
    calls = 0

    async def loader() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_load("ghost", loader, tenant="t1") is None
    c0 = ledger_commands(hub, component="cache")
    for _ in range(10):
        assert await cache.get_or_load("ghost", loader, tenant="t1") is None
    assert calls == 1
    assert changes(c0, ledger_commands(hub, component="cache")) == {}


async def test_loader_errors_propagate_when_nothing_stale_is_left(
    hub: Lowtide, lowtide_server: ValkeyServer
) -> None:
    cache = hub.cache("quotes", eager_refresh=None)

    async def good() -> str:
        return "v1"

    async def bad() -> str:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):  # never loaded: nothing to fall back on
        await cache.get_or_load("q", bad, tenant="t")
    assert cache.stats.load_errors == 1
    assert await cache.get_or_load("q2", good, tenant="t") == "v1"
    assert await cache.get("q2", tenant="t") == "v1"  # now held in L1
    seen = cache.stats.invalidations
    lowtide_server.command("DEL", build_key("lt", "cache", "quotes", "t", "q2"))
    await eventually(lambda: cache.stats.invalidations > seen)
    # the push dropped the entry (the value was deleted): fail-safe must not resurrect it
    with pytest.raises(RuntimeError):
        await cache.get_or_load("q2", bad, tenant="t")


async def test_fail_safe_after_expiry_with_throttle(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock) as lt:
        assert await lt.invalidations.wait_healthy(5)
        cache = lt.cache(
            "quotes", ttl=10, max_staleness=5, eager_refresh=None, fail_safe_throttle=3
        )
        calls = 0

        async def good() -> str:
            return "v1"

        async def bad() -> str:
            nonlocal calls
            calls += 1
            raise RuntimeError("upstream down")

        assert await cache.get_or_load("q", good, tenant="t") == "v1"
        clock.advance(11)  # L1 stale, L2 envelope expired (its real TTL has not: it says so)
        assert await cache.get_or_load("q", bad, tenant="t") == "v1"  # served stale
        assert calls == 1
        assert cache.stats.stale_served == 1
        assert await cache.get_or_load("q", bad, tenant="t") == "v1"  # throttled: no retry
        assert calls == 1
        clock.advance(4)
        assert await cache.get_or_load("q", bad, tenant="t") == "v1"
        assert calls == 2


async def test_tenants_are_isolated_whatever_their_ids(hub: Lowtide) -> None:
    cache = hub.cache("profiles")
    hostile = ["t1", "t1:", "t1:x", "{t1}", "t1\x00", "t 1", "%3A", "t" * 256]
    for i, t in enumerate(hostile):
        await cache.set("k", i, tenant=t)
    for i, t in enumerate(hostile):
        assert await cache.get("k", tenant=t) == i
        cache.clear_local()
        assert await cache.get("k", tenant=t) == i  # from L2 too
    with pytest.raises(InvalidKeyError):
        await cache.set("k", 1, tenant="t" * 257)


async def test_tenant_is_required_and_scopes_work(hub: Lowtide) -> None:
    cache = hub.cache("profiles")
    with pytest.raises(TenantRequired):
        await cache.get("k")
    with pytest.raises(TenantRequired):
        await cache.set("k", 1)
    with tenant_scope("t9"):
        await cache.set("k", 1)
        assert await cache.get("k") == 1
    assert await cache.get("k", tenant="t9") == 1
    assert await cache.get("k", tenant="t8") is None
    shared = hub.cache("config", per_tenant=False)
    await shared.set("flags", {"beta": True})
    with tenant_scope("t9"):
        assert await shared.get("flags") == {"beta": True}
    with pytest.raises(TenantRequired):
        await shared.get("flags", tenant="t9")


async def test_bad_values_raise_typed_errors_and_change_nothing(
    hub: Lowtide, lowtide_server: ValkeyServer
) -> None:
    cache = hub.cache("blobs", max_value_bytes=1000)
    await cache.set("k", "good", tenant="t")
    c0 = ledger_commands(hub, component="cache")
    with pytest.raises(SerializationError):
        await cache.set("k", {1, 2}, tenant="t")
    with pytest.raises(SerializationError):
        await cache.set_many({"a": 1, "k": object()}, tenant="t")
    with pytest.raises(ValueTooLarge) as info:
        await cache.set("k", "x" * 2000, tenant="t")
    assert info.value.size > info.value.limit == 1000
    assert changes(c0, ledger_commands(hub, component="cache")) == {}
    assert await cache.get("k", tenant="t") == "good"
    assert await cache.get("a", tenant="t") is None
    # a pickle (or anything else) planted in Redis is refused, never executed
    import pickle

    rk = build_key("lt", "cache", "blobs", "t", "evil")
    lowtide_server.command("SET", rk, pickle.dumps({"x": 1}))
    with pytest.raises(SerializationError):
        await cache.get("evil", tenant="t")


async def test_eager_refresh_reloads_in_the_background(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock) as lt:
        assert await lt.invalidations.wait_healthy(5)
        cache = lt.cache("rates", ttl=10, max_staleness=10, eager_refresh=0.5)
        version = 0

        async def loader() -> int:
            nonlocal version
            version += 1
            return version

        assert await cache.get_or_load("fx", loader, tenant="t") == 1
        await asyncio.sleep(0.05)
        assert await cache.get("fx", tenant="t") == 1  # held in L1 (read back after the echo)
        clock.advance(6)  # past 50% of its life: answered at once, refreshed behind
        assert await cache.get_or_load("fx", loader, tenant="t") == 1
        await eventually(lambda: version == 2)
        await asyncio.sleep(0.05)  # the refresh's write and its echo
        assert await cache.get_or_load("fx", loader, tenant="t") == 2  # from L1 or 1 GET
        c0 = ledger_commands(lt, component="cache")
        assert await cache.get_or_load("fx", loader, tenant="t") == 2
        assert changes(c0, ledger_commands(lt, component="cache")) == {}
        assert version == 2  # the loader ran once for the refresh, not again
        assert cache.stats.refreshes == 1


async def test_ttl_mode_needs_no_listener_and_bounds_staleness(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, invalidation="ttl") as lt:
        cache = lt.cache("p", max_staleness=5)
        await cache.set("k", 1, tenant="t")
        c0 = ledger_commands(lt, component="cache")
        assert await cache.get("k", tenant="t") == 1
        assert changes(c0, ledger_commands(lt, component="cache")) == {}
        clock.advance(6)
        assert await cache.get("k", tenant="t") == 1
        assert changes(c0, ledger_commands(lt, component="cache")) == {"get": 1}
        assert lt.health()["invalidation"]["mode"] == "ttl"


async def test_same_name_with_other_options_is_an_error(hub: Lowtide) -> None:
    assert hub.cache("p", ttl=10) is hub.cache("p", ttl=10)
    with pytest.raises(ConfigError, match="already exists"):
        hub.cache("p", ttl=20)


@pytest.mark.parametrize(
    ("refused", "feed"),
    [(("-client|tracking",), "keyspace"), (("-client|tracking", "-config"), "pubsub")],
)
async def test_auto_mode_falls_back_where_tracking_is_refused(
    lowtide_fresh_server: ValkeyServer, refused: tuple[str, ...], feed: str
) -> None:
    server = lowtide_fresh_server
    # a managed service without CLIENT TRACKING (and without CONFIG), modelled by an ACL user
    # that may not run them: keyspace notifications, else the pub/sub backplane
    server.command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all", *refused)
    url = f"redis://app:s3cret@127.0.0.1:{server.port}/0"
    async with Lowtide(url, instance="a") as a, Lowtide(url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        health = a.health()["invalidation"]
        assert health["mode"] == feed
        assert health["setting"] == "auto"
        assert "s3cret" not in str(a.health())
        ca, cb = a.cache("p"), b.cache("p")
        received = b.invalidations.received
        await ca.set("k", 1, tenant="t")  # a new key: announced (a remembered absence may exist)
        # b hears it before reading: a push landing during b's read would (rightly) keep b
        # from holding the copy the next write must invalidate
        await eventually(lambda: b.invalidations.received > received)
        assert await cb.get("k", tenant="t") == 1
        await ca.set("k", 2, tenant="t")
        await eventually(lambda: cb.stats.invalidations >= 1)
        assert await cb.get("k", tenant="t") == 2
