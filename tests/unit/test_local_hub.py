"""A hub with no Redis (no URL, or suspended from the start): everything works in process."""

from __future__ import annotations

import pytest

from lowtide import CircuitOpen, Lowtide, ManualClock, Mode, RedisUnavailable
from tests.helpers import fail


async def test_local_only_without_url() -> None:
    async with Lowtide(None) as lt:
        assert lt.mode is Mode.LOCAL
        assert lt.health()["status"] == "ok"
        assert lt.health()["redis"]["configured"] is False
        with pytest.raises(RedisUnavailable) as info:
            _ = lt.gateway
        assert info.value.reason == "local"
        lt.suspend()
        assert lt.mode is Mode.LOCAL


async def test_local_only_hub_caches_in_process() -> None:
    async with Lowtide(None) as lt:
        cache = lt.cache("p")
        await cache.set("k", [1, 2], tenant="t")
        assert await cache.get("k", tenant="t") == [1, 2]

        async def loader() -> str:
            return "x"

        assert await cache.get_or_load("j", loader, tenant="t") == "x"
        await cache.delete("k", tenant="t")
        assert await cache.get("k", tenant="t") is None


async def test_local_breaker_while_suspended() -> None:
    clock = ManualClock()  # the open period does not run out under a loaded machine
    async with Lowtide("redis://127.0.0.1:1", suspend=True, clock=clock) as lt:
        b = lt.circuit_breaker("x", min_calls=2, open_for=0.2)
        await fail(b, "t1", 2)
        with pytest.raises(CircuitOpen):
            async with b.guard("t1"):
                pass
        clock.advance(0.25)
        async with b.guard("t1"):
            pass  # local probe
        assert b.state("t1") == "closed"


async def test_state_per_tenant_is_bounded_but_open_breakers_are_kept() -> None:
    async with Lowtide(None) as lt:
        b = lt.circuit_breaker("x", min_calls=2, max_tenants=3)
        await fail(b, "t-open", 2)
        assert b.state("t-open") == "open"
        for i in range(10):
            async with b.guard(f"t{i}"):
                pass
        assert b.info()["tenants"] <= 4  # the cap, plus the open breaker that must not be forgotten
        assert b.state("t-open") == "open"
        limiter = lt.rate_limiter("y", limit=10, per=60, max_tenants=3)
        for i in range(10):
            assert (await limiter.acquire(f"t{i}")).allowed
        assert limiter.info()["tenants"] == 3


async def test_breaker_info_counts_half_open_tenants() -> None:
    clock = ManualClock()
    async with Lowtide(None, clock=clock) as lt:
        b = lt.circuit_breaker("x", min_calls=2, open_for=10)
        await fail(b, "t1", 2)
        await fail(b, "t2", 2)
        assert (b.info()["open"], b.info()["half_open"]) == (2, 0)
        clock.advance(11)  # both open periods over: the next call of each would be a probe
        assert (b.info()["open"], b.info()["half_open"]) == (2, 2)
