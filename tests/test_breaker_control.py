"""The breaker's knobs on a real server (issue 16, item 3): which outcomes count as failures
(``failure_when``, ``result_failure_when``), manual open/close fleet-wide and the way back to
automatic, and its order with a rate limiter (counted: admissions spent on refused calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lowtide import CircuitBreaker, CircuitOpen, ConfigError, Lowtide, RateLimited, Transition
from lowtide.keys import build_key
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import eventually
from tests.production.hostile import plant


class StatusError(Exception):
    """What an HTTP client raises for an error response (like ``httpx.HTTPStatusError``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Response:
    """What an HTTP client returns when it does not raise for a status."""

    def __init__(self, status: int) -> None:
        self.status = status


def server_error(exc: BaseException) -> bool:
    """A 5xx (or anything that is not an HTTP status) is the dependency's fault; a 4xx is ours."""
    return not isinstance(exc, StatusError) or exc.status >= 500


def bad_response(r: Response) -> bool:
    return r.status >= 500


@pytest.fixture
async def pair(lowtide_url: str) -> AsyncIterator[tuple[Lowtide, Lowtide]]:
    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        yield a, b


async def raise_status(breaker: CircuitBreaker, tenant: str, status: int, n: int) -> None:
    for _ in range(n):
        with pytest.raises((StatusError, CircuitOpen)):
            async with breaker.guard(tenant):
                raise StatusError(status)


# -- which outcomes are failures ---------------------------------------------------------------
async def test_failure_when_counts_5xx_and_not_4xx(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker("status-5xx", min_calls=5, failure_when=server_error)
        await raise_status(b, "t1", 404, 50)  # the caller's mistakes: the dependency is fine
        await raise_status(b, "t1", 429, 50)
        assert b.state("t1") == "closed"
        assert b.stats["failures"] == 0
        assert b.stats["calls"] == 100  # they ran and counted as successes
        with pytest.raises(KeyError):  # not a StatusError: failure_on decides alone
            async with b.guard("t2"):
                raise KeyError("x")
        assert b.stats["failures"] == 1
        await raise_status(b, "t1", 503, 5)  # 5 failures of 105 calls: rate not reached
        assert b.state("t1") == "closed"
        await raise_status(b, "t3", 502, 5)  # a tenant with only 5xx trips at min_calls
        assert b.state("t3") == "open"
        assert b.stats["trips"] == 1


async def test_failure_when_applies_after_failure_on_and_ignore(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker(
            "status-order",
            min_calls=3,
            failure_on=(StatusError,),
            ignore=(ValueError,),
            failure_when=lambda exc: True,  # would count everything it is asked about
        )
        for exc in (KeyError("not in failure_on"), ValueError("ignored")):
            for _ in range(3):
                with pytest.raises(type(exc)):
                    async with b.guard("t1"):
                        raise exc
        assert b.state("t1") == "closed"
        assert b.stats["failures"] == 0


async def test_result_failure_when_judges_returned_responses(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker("status-result", min_calls=4, result_failure_when=bad_response)
        for status in (200, 404, 201, 400):
            async with b.guard("t1") as call:
                assert call.result(Response(status)).status == status  # handed back unchanged
                assert not call.failed
        assert b.stats["failures"] == 0

        async def fetch() -> Response:
            return Response(503)

        for _ in range(4):
            r = await b.call(fetch, tenant="t2")  # the response is returned, never raised
            assert r.status == 503
        assert b.stats["failures"] == 4
        assert b.state("t2") == "open"
        with pytest.raises(CircuitOpen):
            await b.call(fetch, tenant="t2")
        # call.fail(): a call that returned normally but is known bad
        for _ in range(4):
            async with b.guard("t3") as call:
                call.fail()
        assert b.state("t3") == "open"


async def test_a_predicate_that_raises_is_judged_without_it(lowtide_url: str) -> None:
    def broken(x: object) -> bool:
        raise RuntimeError("bug in the predicate")

    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker(
            "status-buggy", min_calls=3, failure_when=broken, result_failure_when=broken
        )
        for _ in range(3):
            with pytest.raises(StatusError):  # the caller sees its own exception, not the bug
                async with b.guard("t1"):
                    raise StatusError(404)
        assert b.state("t1") == "open"  # without the predicate, every exception is a failure
        for _ in range(3):
            async with b.guard("t2") as call:
                call.result(Response(503))
        assert b.state("t2") == "closed"  # without the predicate, a result is a success
        assert b.stats["predicate_errors"] == 6


async def test_predicates_must_be_functions(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        with pytest.raises(ConfigError, match="failure_when"):
            lt.circuit_breaker("conf-x", failure_when=500)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not_called"):
            lt.circuit_breaker("conf-y", not_called=RateLimited)  # type: ignore[arg-type]
        b = lt.circuit_breaker("conf-z", failure_when=server_error)
        assert lt.circuit_breaker("conf-z", failure_when=server_error) is b  # same function
        with pytest.raises(ConfigError, match="failure_when"):
            lt.circuit_breaker("conf-z", failure_when=lambda e: True)


# -- manual control --------------------------------------------------------------------------
async def test_open_holds_every_machine_open_until_automatic(
    pair: tuple[Lowtide, Lowtide],
) -> None:
    a, b = pair
    ba = a.circuit_breaker("manual-open", min_calls=5, open_for=0.2)
    bb = b.circuit_breaker("manual-open", min_calls=5, open_for=0.2)
    seen: list[Transition] = []
    bb.on_transition(seen.append)
    for breaker in (ba, bb):
        async with breaker.guard("t1"):
            pass  # both know t1 (1 GET each)
    before_a = ledger_commands(a, component="breaker")
    before_b = ledger_commands(b, component="breaker")
    assert await ba.open("t1") is True
    assert ba.forced("t1") == "open"
    assert ba.state("t1") == "open"
    with pytest.raises(CircuitOpen):
        async with ba.guard("t1"):
            pytest.fail("must not run")
    await eventually(lambda: len(seen) > 0)  # by push, without a call on b
    assert [(t.old, t.new, t.reason) for t in seen] == [("closed", "open", "forced open")]
    assert bb.forced("t1") == "open"
    await asyncio.sleep(0.3)  # longer than open_for: a forced state has no half-open
    for _ in range(20):
        with pytest.raises(CircuitOpen):
            async with bb.guard("t1"):
                pytest.fail("must not run")
    assert bb.stats["probes"] == 0
    async with bb.guard("t2"):  # other tenants are unaffected
        pass
    spent_a = changes(before_a, ledger_commands(a, component="breaker"))
    # 1 SET; the writer's own write may come back as a push it reads once (the cache's echo
    # handling, as after an automatic trip)
    assert spent_a.pop("set") == 1
    assert spent_a in ({}, {"get": 1})
    # b: the push about t1 read once, then t2's first call
    assert changes(before_b, ledger_commands(b, component="breaker")) == {"get": 2}
    assert await bb.automatic("t1") is True  # any machine may end it
    await eventually(lambda: ba.forced("t1") is None and ba.state("t1") == "closed")
    assert bb.state("t1") == "closed"
    async with ba.guard("t1"):
        pass
    assert seen[-1].new == "closed"
    assert seen[-1].reason == "automatic"


async def test_close_keeps_every_machine_closed_whatever_fails(
    pair: tuple[Lowtide, Lowtide],
) -> None:
    a, b = pair
    ba = a.circuit_breaker("manual-close", min_calls=3)
    bb = b.circuit_breaker("manual-close", min_calls=3)
    async with bb.guard("t1"):
        pass  # b knows t1: it follows pushes about it
    await raise_status(ba, "t1", 500, 4)
    assert ba.state("t1") == "open"
    await eventually(lambda: bb.state("t1") == "open")
    await bb.close("t1")  # closes what tripped by itself, and holds it closed
    await eventually(lambda: ba.state("t1") == "closed" and ba.forced("t1") == "closed")
    await raise_status(ba, "t1", 500, 30)  # every call runs; none can trip it
    assert ba.state("t1") == "closed"
    assert ba.stats["trips"] == 1  # only the first, automatic one
    await ba.automatic("t1")
    await eventually(lambda: bb.forced("t1") is None)
    await raise_status(bb, "t1", 500, 3)  # automatic again, with an empty window
    assert bb.state("t1") == "open"


async def test_forcing_for_some_seconds_returns_to_automatic(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker("manual-seconds", min_calls=3)
        await b.open("t1", seconds=0.3)
        with pytest.raises(CircuitOpen) as info:
            async with b.guard("t1"):
                pass
        assert 0.0 < info.value.retry_after <= 0.3
        await asyncio.sleep(0.35)
        async with b.guard("t1"):
            pass  # the forced state ended: automatic, closed
        assert b.forced("t1") is None
        assert b.state("t1") == "closed"
        await raise_status(b, "t1", 500, 3)
        assert b.state("t1") == "open"


async def test_a_local_hub_is_forced_locally() -> None:
    async with Lowtide(None) as lt:
        b = lt.circuit_breaker("manual-local")
        assert await b.open("t1") is False  # no Redis: only this hub
        with pytest.raises(CircuitOpen):
            async with b.guard("t1"):
                pass
        assert await b.automatic("t1") is False
        async with b.guard("t1"):
            pass


# -- with a rate limiter ----------------------------------------------------------------------
async def test_breaker_outside_the_limiter_spends_no_rate_budget_on_refused_calls(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url) as lt:
        breaker = lt.circuit_breaker("order-refused", min_calls=3, open_for=30)
        limiter = lt.rate_limiter("order-refused", 1000, 60)
        for order in ("limiter outside", "breaker outside"):
            tenant = f"t-{order}"
            await breaker.open(tenant)
            before = limiter.stats["allowed"]
            refused = 0
            for _ in range(50):
                try:
                    if order == "limiter outside":
                        async with limiter.hold(tenant), breaker.guard(tenant):
                            pytest.fail("must not run")
                    else:
                        async with breaker.guard(tenant), limiter.hold(tenant):
                            pytest.fail("must not run")
                except CircuitOpen:
                    refused += 1
            spent = limiter.stats["allowed"] - before
            assert refused == 50
            # the README's old order spends one admission per refused call; this one none
            assert spent == (50 if order == "limiter outside" else 0), order


async def test_a_rate_limited_call_inside_the_guard_is_no_call(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        breaker = lt.circuit_breaker("order-denied", min_calls=3, open_for=0.3)
        limiter = lt.rate_limiter("order-denied", 2, 3600)  # one window for the whole test
        denied = 0
        for _ in range(30):
            try:
                async with breaker.guard("t1"), limiter.hold("t1"):
                    pass
            except RateLimited:
                denied += 1
        assert denied == 28
        assert breaker.state("t1") == "closed"  # denials are not the dependency failing...
        assert breaker.stats["failures"] == 0
        assert breaker.stats["not_called"] == 28
        # ...and not successes either: 2 failures of 4 recorded calls reach the rate
        await raise_status(breaker, "t1", 500, 2)
        assert breaker.state("t1") == "open"
        await asyncio.sleep(0.35)
        # half-open: the probe is refused by the limiter, so it is given back, not failed
        released = ledger_commands(lt, component="breaker").get("evalsha", 0)
        with pytest.raises(RateLimited):
            async with breaker.guard("t1"), limiter.hold("t1"):
                pass
        assert breaker.stats["probes"] == 1
        assert breaker.state("t1") == "half_open"
        # the fleet-wide probe lease is released (1 EVALSHA), so the next call may probe
        await eventually(
            lambda: ledger_commands(lt, component="breaker").get("evalsha", 0) > released
        )
        async with breaker.guard("t1"):
            pass
        assert breaker.stats["probes"] == 2
        assert breaker.state("t1") == "closed"


async def test_not_called_can_be_changed(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        b = lt.circuit_breaker("order-strict", min_calls=3, not_called=())
        limiter = lt.rate_limiter("order-strict", 1, 60)
        async with b.guard("t1"), limiter.hold("t1"):
            pass  # admitted: a success
        for _ in range(2):
            with pytest.raises(RateLimited):
                async with b.guard("t1"), limiter.hold("t1"):
                    pass
        assert b.state("t1") == "open"  # denials counted as failures: 2 of 3 calls


async def test_a_forced_state_written_elsewhere_is_adopted(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        await lt.sync_server_clock()
        b = lt.circuit_breaker("planted", open_for=1.0)
        rk = build_key("lt", "breaker", "planted", "t1", "state")
        plant(server, rk, {"forced": "open", "gen": 1})  # another process forced it open
        with pytest.raises(CircuitOpen):
            async with b.guard("t1"):
                pass
        assert b.forced("t1") == "open"
        assert await b.fleet_state("t1") == {"forced": "open", "gen": 1}
        assert b.info()["forced"] == 1
        assert b.info()["bad_state"] == 0
        await b.automatic("t1")
        assert server.command("GET", rk) is None
        async with b.guard("t1"):
            pass
