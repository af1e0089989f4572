"""The fleet-wide circuit breaker on a real server: 0 commands closed, one probe for 20 hubs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from lowtide import CircuitOpen, Lowtide, Transition
from lowtide.testing import ledger_total
from tests.helpers import Boom, eventually, fail


@pytest.fixture
async def hubs(lowtide_url: str) -> AsyncIterator[list[Lowtide]]:
    async with AsyncExitStack() as stack:
        out = []
        for i in range(20):
            lt = await stack.enter_async_context(Lowtide(lowtide_url, instance=f"m{i}"))
            out.append(lt)
        for lt in out:
            assert await lt.invalidations.wait_healthy(5)
        yield out


async def test_healthy_calls_cost_nothing(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        breaker = lt.circuit_breaker("salesforce", min_calls=5)
        async with breaker.guard("t1"):
            pass  # the first call reads the fleet state once (1 GET)
        assert ledger_total(lt, component="breaker") == 1
        for _ in range(10_000):
            async with breaker.guard("t1"):
                pass
        assert ledger_total(lt, component="breaker") == 1
        assert breaker.state("t1") == "closed"


async def test_a_trip_on_one_machine_opens_the_fleet(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ba = a.circuit_breaker("slack", min_calls=5, failure_rate=0.5, open_for=30)
        bb = b.circuit_breaker("slack", min_calls=5, failure_rate=0.5, open_for=30)
        seen: list[Transition] = []
        bb.on_transition(seen.append)
        async with bb.guard("t1"):
            pass  # b knows t1 (reads the absent state once)
        before_a = ledger_total(a, component="breaker")
        before_b = ledger_total(b, component="breaker")
        await fail(ba, "t1", 5)
        assert ba.state("t1") == "open"
        # its first read + 1 SET of the open state
        assert ledger_total(a, component="breaker") - before_a == 2
        await eventually(lambda: bb.state_cache.stats.invalidations >= 1)
        with pytest.raises(CircuitOpen) as info:
            async with bb.guard("t1"):
                pytest.fail("must not run")
        assert 25 < info.value.retry_after <= 30
        assert ledger_total(b, component="breaker") - before_b == 1  # learned it with one GET
        assert [(t.old, t.new) for t in seen] == [("closed", "open")]
        for _ in range(100):
            with pytest.raises(CircuitOpen):
                async with bb.guard("t1"):
                    pass
        assert ledger_total(b, component="breaker") - before_b == 1  # rejections cost nothing
        async with bb.guard("t2"):  # other tenants are unaffected
            pass


async def test_twenty_hubs_see_exactly_one_probe(hubs: list[Lowtide]) -> None:
    breakers = [lt.circuit_breaker("hubspot", min_calls=3, open_for=1.0) for lt in hubs]
    for b in breakers:
        async with b.guard("t1"):
            pass
    await fail(breakers[0], "t1", 3)
    for b in breakers[1:]:
        await eventually(lambda b=b: b.state_cache.stats.invalidations >= 1)
    for b in breakers[1:]:
        with pytest.raises(CircuitOpen):
            async with b.guard("t1"):
                pass
    await asyncio.sleep(1.1)
    probes = 0

    async def call(b) -> None:  # type: ignore[no-untyped-def]
        nonlocal probes
        try:
            async with b.guard("t1"):
                probes += 1
                await asyncio.sleep(0.05)
        except CircuitOpen:
            pass

    await asyncio.gather(*(call(b) for b in breakers for _ in range(3)))
    assert probes == 1
    assert sum(b.stats["probes"] for b in breakers) == 1
    # the probe succeeded: every machine closes on the push
    await eventually(
        lambda: all(b.state_cache.peek("state", tenant="t1") is None for b in breakers)
    )
    for b in breakers:
        async with b.guard("t1"):
            pass
    assert all(b.state("t1") == "closed" for b in breakers)


async def test_a_failed_probe_reopens_for_longer(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        b = lt.circuit_breaker("erp", min_calls=2, open_for=0.3)
        await fail(b, "t1", 2)
        await asyncio.sleep(0.35)
        with pytest.raises(Boom):
            async with b.guard("t1"):
                raise Boom  # the probe fails
        with pytest.raises(CircuitOpen) as info:
            async with b.guard("t1"):
                pass
        assert 0.4 < info.value.retry_after <= 0.61  # doubled open period
        await asyncio.sleep(0.65)
        async with b.guard("t1"):
            pass  # probe ok
        assert b.state("t1") == "closed"


async def test_quorum_needs_k_machines(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ba = a.circuit_breaker("q", min_calls=2, quorum=2, open_for=30)
        bb = b.circuit_breaker("q", min_calls=2, quorum=2, open_for=30)
        await fail(ba, "t1", 2)
        assert ba.state("t1") == "open"  # a is open for itself...
        async with bb.guard("t1"):
            pass  # ...but one vote does not open the fleet
        await fail(bb, "t1", 2)  # the second machine agrees: the fleet opens
        assert bb.state("t1") == "open"
        await eventually(lambda: ba.state_cache.stats.invalidations >= 1)
        assert await ba.fleet_state("t1") is not None  # the state was written once, by b


async def test_slow_calls_and_ignored_errors(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker("slow", min_calls=3, slow_call=0.01, ignore=(KeyError,))
        for _ in range(3):
            with pytest.raises(KeyError):
                async with b.guard("t1"):
                    raise KeyError("not a dependency failure")
        assert b.state("t1") == "closed"
        for _ in range(3):
            async with b.guard("t1"):
                await asyncio.sleep(0.02)
        assert b.state("t1") == "open"
