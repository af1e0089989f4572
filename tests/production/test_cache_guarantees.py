"""The tiered cache under production conditions: slow replies, foreign writers, skewed clocks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lowtide import Lowtide, ManualClock
from lowtide.testing import FaultProxy, ValkeyServer
from tests.helpers import listeners_caught_up


async def test_a_slow_read_never_serves_a_value_a_push_replaced(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    async with (
        Lowtide(proxy.url, instance="reader", op_timeout=2.0) as a,
        Lowtide(server.url, instance="writer") as b,
    ):
        ca, cb = a.cache("profiles", soft_timeout=0.1), b.cache("profiles")
        await cb.set("k", "v1", tenant="t")
        await asyncio.sleep(0.2)  # b's push has reached a: a's read below may fill L1
        assert await ca.get("k", tenant="t") == "v1"
        assert ca.peek("k", tenant="t") == "v1"  # now in a's L1
        await cb.set("k", "v2", tenant="t")  # another machine replaces it: a gets the push
        for _ in range(200):
            if ca.stats.invalidations:
                break
            await asyncio.sleep(0.01)
        assert ca.stats.invalidations == 1
        proxy.set_latency(0.3)  # Redis answers, slowly (slower than the soft timeout)
        t0 = time.monotonic()
        assert await ca.get("k", tenant="t") == "v2"  # waited for the answer: not v1
        assert time.monotonic() - t0 >= 0.3
        assert ca.stats.soft_timeouts == 0


async def test_a_slow_read_may_answer_with_a_value_nobody_replaced(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    async with (
        Lowtide(proxy.url, instance="reader", op_timeout=2.0) as a,
        Lowtide(server.url, instance="writer") as b,
    ):
        cache = a.cache("profiles", soft_timeout=0.1)
        await b.cache("profiles").set("k", "v1", tenant="t")
        await asyncio.sleep(0.2)  # the write's push has come and gone
        assert await cache.get("k", tenant="t") == "v1"  # read into L1
        a.caches.demote_all()  # not fresh any more, but nobody wrote it since
        proxy.set_latency(0.3)
        t0 = time.monotonic()
        assert await cache.get("k", tenant="t") == "v1"  # the last good value, after 0.1 s
        assert time.monotonic() - t0 < 0.3
        assert cache.stats.soft_timeouts == 1


async def test_staleness_is_counted_from_when_the_read_was_sent(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    # pub/sub mode (Upstash's): a write by a program that does not PUBLISH is bounded only by
    # max_staleness, and that bound must hold even when the write lands while our GET's reply
    # is on its way back
    server, proxy = proxied
    bound = 1.0
    async with (
        Lowtide(proxy.url, instance="reader", invalidation="pubsub", op_timeout=3.0) as a,
        Lowtide(server.url, instance="other", invalidation="ttl") as other,  # never publishes
    ):
        ca = a.cache("profiles", max_staleness=bound, soft_timeout=None)
        co = other.cache("profiles")
        await co.set("k", "old", tenant="t")
        proxy.set_latency(0.3)  # each way: the server answers 0.3 s after we send
        read = asyncio.create_task(ca.get("k", tenant="t"))
        await asyncio.sleep(0.45)  # the server has answered; the reply is still on its way
        await co.set("k", "new", tenant="t")
        written = time.monotonic()
        assert await read == "old"
        ages = []
        while True:
            value = await ca.get("k", tenant="t")
            if value == "new":
                break
            ages.append(time.monotonic() - written)
            await asyncio.sleep(0.02)
        assert ages  # the old copy was served from L1 for a while ...
        assert max(ages) <= bound  # ... but never past the bound


async def test_a_writer_whose_clock_is_400_s_behind_is_read_like_any_other(
    lowtide_url: str,
) -> None:
    skewed = ManualClock(wall_start=time.time() - 400)  # another machine's clock, 400 s slow
    async with (
        Lowtide(lowtide_url, instance="slow-clock", clock=skewed) as writer,
        Lowtide(lowtide_url, instance="reader") as reader,
    ):
        await writer.cache("skew", ttl=300).set("k", "v", tenant="t")
        cache = reader.cache("skew", ttl=300)
        assert await cache.get("k", tenant="t") == "v"  # not expired 100 s before it was written
        loads = 0

        async def load() -> str:
            nonlocal loads
            loads += 1
            return "loaded"

        wc = writer.cache("skew", ttl=300)
        assert await wc.get_or_load("k2", load, tenant="t") == "loaded"
        assert await cache.get("k2", tenant="t") == "loaded"  # the skewed writer's load is kept
        assert await wc.get_or_load("k2", load, tenant="t") == "loaded"
        assert loads == 1


async def test_closing_the_hub_stops_a_load_a_soft_timeout_left_running(lowtide_url: str) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow_load() -> str:
        started.set()
        try:
            await asyncio.sleep(5)
        finally:
            finished.set()
        return "late"

    async with Lowtide(lowtide_url) as lt:
        cache = lt.cache("closing")
        task = asyncio.create_task(cache.get_or_load("k", slow_load, tenant="t"))
        await started.wait()
        task.cancel()  # the caller gives up; the shielded load runs on in the background
    assert finished.is_set()  # ... until the hub closed: it does not outlive its cache


async def test_get_or_load_misses_are_counted_like_get_misses(lowtide_url: str) -> None:
    async def load() -> str:
        return "v"

    async with Lowtide(lowtide_url) as lt:
        cache = lt.cache("misses")
        await cache.get_or_load("a", load, tenant="t")  # not in L1: a miss (load, SET)
        await asyncio.sleep(0.1)  # no message about our own write comes (NOLOOP writer)
        await cache.get_or_load("a", load, tenant="t")  # L1: a hit
        await cache.get_or_load("a", load, tenant="t")  # L1: a hit
        await cache.get("b", tenant="t")  # a miss
        assert (cache.stats.misses, cache.stats.hits) == (2, 2)


async def test_a_write_heard_between_a_miss_and_its_load_keeps_no_negative_copy() -> None:
    # the reader's GET finds nothing; before its loader runs, another process writes the key
    # and the push arrives; the loader (reading a replica that lags) returns None: that None
    # must not be remembered over the value Redis now holds
    with ValkeyServer() as server:
        async with (
            Lowtide(server.url, instance="reader") as a,
            Lowtide(server.url, instance="writer") as b,
        ):
            assert await a.ready(5)
            assert await b.ready(5)
            ca, cb = a.cache("profiles", negative_ttl=30), b.cache("profiles")
            send = a.gateway.call

            async def call(attribution: Any, *args: Any) -> Any:
                reply = await send(attribution, *args)
                if args[0] == "GET" and reply is None:
                    await cb.set("k", "v1", tenant="t")  # lands after the GET ran
                    await listeners_caught_up([a, b])  # and the reader heard it
                return reply

            a.gateway.call = call  # type: ignore[method-assign]

            async def lagging_loader() -> None:
                return None

            assert await ca.get_or_load("k", lagging_loader, tenant="t") is None
            a.gateway.call = send  # type: ignore[method-assign]
            assert await ca.get("k", tenant="t") == "v1"
