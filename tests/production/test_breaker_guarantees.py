"""The breaker under production conditions: outer timeouts, slow probes, crashed probers, and
what ``state()`` says after another machine decided (real servers, several hubs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from lowtide import CircuitBreaker, CircuitOpen, Lowtide
from lowtide.keys import build_key
from lowtide.testing import FaultProxy, ValkeyServer
from tests.helpers import eventually, fail


async def hubs(stack: AsyncExitStack, url: str, n: int) -> list[Lowtide]:
    out = [await stack.enter_async_context(Lowtide(url, instance=f"m{i}")) for i in range(n)]
    for lt in out:
        assert await lt.invalidations.wait_healthy(5)
    return out


def state_key(name: str, tenant: str) -> str:
    return build_key("lt", "breaker", name, tenant, "state")


@pytest.fixture
async def pair(lowtide_url: str) -> AsyncIterator[list[Lowtide]]:
    async with AsyncExitStack() as stack:
        yield await hubs(stack, lowtide_url, 2)


async def test_a_probe_cancelled_by_an_outer_timeout_records_nothing(
    pair: list[Lowtide], lowtide_server: ValkeyServer
) -> None:
    a, b = pair
    ba = a.circuit_breaker("cancel-probe", min_calls=3, open_for=0.5)
    bb = b.circuit_breaker("cancel-probe", min_calls=3, open_for=0.5)
    async with bb.guard("t1"):
        pass
    await fail(ba, "t1", 3)
    await eventually(lambda: bb.state("t1") == "open")
    await asyncio.sleep(0.6)  # half-open: the next call is the probe
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), bb.guard("t1"):
            await asyncio.sleep(5)  # the dependency hangs; the caller gives up
    assert bb.stats["probes"] == 1
    assert bb.stats["cancelled"] == 1
    # nothing was learned: the fleet stays open (half-open) on every hub
    assert lowtide_server.command("GET", state_key("cancel-probe", "t1")) is not None
    assert bb.state("t1") == "half_open"
    await asyncio.sleep(0.2)
    assert ba.state("t1") == "half_open"
    # the probe lease was given back: another hub may probe at once, and its success closes
    ran = False
    async with ba.guard("t1"):
        ran = True
    assert ran
    await eventually(lambda: bb.state("t1") == "closed")


async def test_a_probe_cancelled_while_taking_its_lease_gives_the_lease_back(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    async with (
        Lowtide(server.url, instance="a") as a,
        Lowtide(proxy.url, instance="b") as b,
    ):
        for lt in (a, b):
            assert await lt.invalidations.wait_healthy(5)
        ba = a.circuit_breaker("cancel-take", min_calls=3, open_for=1.0)
        bb = b.circuit_breaker("cancel-take", min_calls=3, open_for=1.0)
        async with bb.guard("t1"):
            pass
        await fail(ba, "t1", 3)
        await eventually(lambda: bb.state("t1") == "open")
        await asyncio.sleep(1.1)  # half-open: the next call is the probe
        proxy.stall_replies(after_bytes=1)  # its SET NX lands; the reply is held
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), bb.guard("t1"):
                pytest.fail("the probe ran before its lease was taken")
        proxy.pass_through()
        assert server.command("KEYS", "*probe*") != []  # the SET landed: a lease of 1 s
        await eventually(lambda: server.command("KEYS", "*probe*") == [], within=0.5)
        ran = False
        async with ba.guard("t1"):  # another hub probes at once
            ran = True
        assert ran
        await eventually(lambda: bb.state("t1") == "closed")


async def test_cancelled_calls_are_not_successes_while_closed(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        breaker = lt.circuit_breaker("cancel-closed", min_calls=4, failure_rate=0.5)
        await fail(breaker, "t1", 2)
        for _ in range(10):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01), breaker.guard("t1"):
                    await asyncio.sleep(1)
        assert breaker.stats["cancelled"] == 10
        await fail(breaker, "t1", 2)  # 4 failures of 4 recorded calls: over the rate
        assert breaker.state("t1") == "open"


async def test_a_slow_probe_is_the_only_call_fleet_wide(lowtide_url: str) -> None:
    async with AsyncExitStack() as stack:
        fleet = await hubs(stack, lowtide_url, 10)
        breakers = [lt.circuit_breaker("slow-probe", min_calls=3, open_for=1.0) for lt in fleet]
        for b in breakers:
            async with b.guard("t1"):
                pass
        await fail(breakers[0], "t1", 3)
        for b in breakers[1:]:
            await eventually(lambda b=b: b.state("t1") == "open")
        await asyncio.sleep(1.05)
        in_flight = calls = peak = 0
        probe_done = asyncio.Event()

        async def dependency() -> None:
            nonlocal in_flight, calls, peak
            calls += 1
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(3.5)  # 3.5x open_for: the probe lease must be renewed
            finally:
                in_flight -= 1
                probe_done.set()

        async def caller(b: CircuitBreaker) -> None:
            # every machine keeps calling (every 0.1 s) for as long as the probe runs
            while not probe_done.is_set():
                try:
                    async with b.guard("t1"):
                        await dependency()
                except CircuitOpen:
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(caller(b) for b in breakers))
        assert calls == 1
        assert peak == 1
        assert sum(b.stats["probes"] for b in breakers) == 1
        for b in breakers:
            await eventually(lambda b=b: b.state("t1") == "closed")


async def test_a_crashed_prober_is_replaced(lowtide_url: str) -> None:
    async with AsyncExitStack() as stack:
        a, b = await hubs(stack, lowtide_url, 2)
        ba = a.circuit_breaker("crashed-probe", min_calls=3, open_for=0.5)
        bb = b.circuit_breaker("crashed-probe", min_calls=3, open_for=0.5)
        async with bb.guard("t1"):
            pass
        await fail(ba, "t1", 3)
        await eventually(lambda: bb.state("t1") == "open")
        await asyncio.sleep(0.6)
        hang = asyncio.Event()

        async def stuck_probe() -> None:
            async with ba.guard("t1"):
                await hang.wait()

        prober = asyncio.create_task(stuck_probe())
        await eventually(lambda: ba.stats["probes"] == 1)
        with pytest.raises(CircuitOpen):
            async with bb.guard("t1"):
                pass
        a.suspend()  # the prober's machine stops talking to Redis: no more renewals
        ran = False
        for _ in range(40):
            try:
                async with bb.guard("t1"):
                    ran = True
                break
            except CircuitOpen:
                await asyncio.sleep(0.1)
        assert ran  # the lease lapsed (0.5 s) and b took over the probe
        prober.cancel()
        with pytest.raises(asyncio.CancelledError):
            await prober


async def test_state_shows_a_trip_decided_elsewhere_without_a_call(pair: list[Lowtide]) -> None:
    a, b = pair
    ba = a.circuit_breaker("view", min_calls=3, open_for=30)
    bb = b.circuit_breaker("view", min_calls=3, open_for=30)
    async with bb.guard("t1"):
        pass  # b knows t1
    calls_before = bb.stats["calls"]
    await fail(ba, "t1", 3)
    await eventually(lambda: bb.state("t1") == "open")
    assert bb.stats["calls"] == calls_before
