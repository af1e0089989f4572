"""One limit per name: in a process (same object) and across the fleet (stricter limit wins)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from lowtide import ConfigError, Lowtide
from tests.helpers import eventually


async def test_the_same_name_is_the_same_object_and_other_options_are_refused(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url) as lt:
        a = lt.rate_limiter("crm", limit=5, per=10)
        assert lt.rate_limiter("crm", limit=5, per=10) is a
        assert lt.rate_limiter("crm", 5, 10.0, algorithm="fixed_window") is a  # defaults count
        with pytest.raises(ConfigError, match=r"limit=50 \(was 5\)"):
            lt.rate_limiter("crm", limit=50, per=10)
        with pytest.raises(ConfigError, match="algorithm='token_bucket'"):
            lt.rate_limiter("crm", limit=5, per=10, algorithm="token_bucket")
        b = lt.circuit_breaker("crm", open_for=30)
        assert lt.circuit_breaker("crm", open_for=30) is b
        with pytest.raises(ConfigError, match=r"open_for=10 \(was 30\)"):
            lt.circuit_breaker("crm", open_for=10)
        for _ in range(1000):  # a per-request call builds nothing new
            assert lt.rate_limiter("crm", limit=5, per=10) is a


async def admitted_in_one_window(limiters: list, tenant: str, asks: int) -> int:  # type: ignore[type-arg]
    total = 0
    for _ in range(asks):
        for lim in limiters:
            if (await lim.acquire(tenant)).allowed:
                total += 1
    return total


async def test_two_processes_with_different_limits_share_the_stricter_one(
    lowtide_url: str,
) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Lowtide(lowtide_url, instance="old"))
        b = await stack.enter_async_context(Lowtide(lowtide_url, instance="new"))
        await a.sync_server_clock()
        into = a.server_time() % 3600
        if into > 3500:
            await asyncio.sleep(3600 - into + 0.1)
        la = a.rate_limiter("mismatch", limit=5, per=3600)
        lb = b.rate_limiter("mismatch", limit=50, per=3600)
        assert (await lb.acquire("t1")).allowed  # b first: its 50 is stored
        total = 1 + await admitted_in_one_window([la, lb], "t1", 40)
        assert total <= 5
        await eventually(lambda: lb.info()["enforced_limit"] == 5)


async def test_different_algorithms_for_one_name_never_over_admit(lowtide_url: str) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Lowtide(lowtide_url, instance="fw"))
        b = await stack.enter_async_context(Lowtide(lowtide_url, instance="tb"))
        la = a.rate_limiter("algo", limit=5, per=3600)
        lb = b.rate_limiter("algo", limit=5, per=3600, algorithm="token_bucket")
        assert (await la.acquire("t1")).allowed  # a stores fixed_window/5/3600
        got_b = [(await lb.acquire("t1")).allowed for _ in range(10)]
        assert not any(got_b)  # b cannot share a's budget: it refuses
        assert lb.info()["config_conflict"] == "fixed_window/5/3600.0"


async def test_a_fleet_that_disagrees_on_the_invalidation_setting_shares_one_counter(
    lowtide_url: str,
) -> None:
    # one process listens for the window keys' changes, the other hears nothing (ttl): both
    # count in the same window keys, so together they admit the limit, no more
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Lowtide(lowtide_url, instance="heard"))
        b = await stack.enter_async_context(
            Lowtide(lowtide_url, instance="deaf", invalidation="ttl")
        )
        la = a.rate_limiter("layout", limit=5, per=3600, fleet_size=2)
        lb = b.rate_limiter("layout", limit=5, per=3600, fleet_size=2)
        got = [(await lim.acquire("t1")).allowed for _ in range(10) for lim in (la, lb)]
        assert sum(got) == 5
        assert lb.info()["config_conflict"] is None


async def test_a_shared_limiter_ignores_tenant_everywhere(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        shared = lt.rate_limiter("shared-429", limit=100, per=60, per_tenant=False)
        assert (await shared.acquire()).allowed
        await shared.penalize("t1", retry_after=30)  # a tenant given to a shared limiter ...
        assert not (await shared.acquire()).allowed  # ... still stops the one shared budget
        assert not (await shared.acquire("t2")).allowed
        shared.drop_lease("t9")  # and names the shared lease too
