"""Cache writes that fail or are cut short while the hub still uses Redis: nothing kept in
process memory may differ from what Redis and the other processes hold."""

from __future__ import annotations

import asyncio

import pytest

from lowtide import Lowtide
from lowtide.errors import RedisUnavailable
from lowtide.testing import ValkeyServer
from tests.helpers import eventually


async def test_a_delete_cancelled_in_flight_leaves_no_copy_of_what_it_deleted() -> None:
    # over the NOLOOP writer no push of this process's own DEL comes back: only the write
    # path can stop a read that raced with it from keeping the deleted value
    with ValkeyServer() as server:
        async with Lowtide(server.url, invalidation="tracking", instance="a") as hub:
            assert await hub.ready(5)
            assert hub.invalidations.writer is not None
            cache = hub.cache("c", ttl=300)
            await cache.set("k", "v1", tenant="t1")
            rk = cache._l2.key(("t1", "k"))
            server.command("CLIENT", "PAUSE", "300", "WRITE")  # the DEL waits, reads do not
            deleting = asyncio.create_task(cache.delete("k", tenant="t1"))
            await asyncio.sleep(0.05)  # sent on the writer, not answered yet
            deleting.cancel()  # the request's timeout
            with pytest.raises(asyncio.CancelledError):
                await deleting
            assert await cache.get("k", tenant="t1") == "v1"  # read before the DEL ran
            await eventually(lambda: server.command("EXISTS", rk) == 0)  # the DEL ran
            await eventually(lambda: cache.peek("k", tenant="t1") is None)
            assert await cache.get("k", tenant="t1") is None
            assert hub.mode.value == "distributed"


async def test_a_write_refused_for_a_busy_pool_raises_and_keeps_nothing() -> None:
    # every connection busy past the queue timeout is not an outage: the hub stays
    # distributed, so a value Redis never got must not be served from process memory
    with ValkeyServer() as server:
        async with (
            Lowtide(server.url, invalidation="keyspace", instance="a", max_connections=2) as a,
            Lowtide(server.url, invalidation="keyspace", instance="b") as b,
        ):
            assert await a.ready(5)
            assert await b.ready(5)
            ca, cb = a.cache("c", ttl=300), b.cache("c", ttl=300)
            await ca.set("k", "v1", tenant="t1")
            await ca.set("gone", "g1", tenant="t1")
            a.gateway.queue_timeout = 0.2
            server.command("CLIENT", "PAUSE", "600", "WRITE")
            # two slow writes of other keys hold both connections of the pool
            holding = [asyncio.create_task(ca.set(f"other{i}", i, tenant="t1")) for i in (0, 1)]
            await asyncio.sleep(0.05)
            with pytest.raises(RedisUnavailable) as refused:
                await ca.set("k", "v2", tenant="t1")
            assert refused.value.reason == "busy"
            assert ca.peek("k", tenant="t1") is None  # neither v2 nor the old copy
            with pytest.raises(RedisUnavailable):
                await ca.delete("gone", tenant="t1")
            await asyncio.gather(*holding)
            assert a.mode.value == "distributed"
            assert await ca.get("k", tenant="t1") == "v1"  # what Redis and b hold
            assert await cb.get("k", tenant="t1") == "v1"
            assert await ca.get("gone", tenant="t1") == "g1"  # not deleted: the caller knows


async def test_a_fill_refused_for_a_busy_pool_returns_the_loaded_value_and_keeps_none() -> None:
    with ValkeyServer() as server:
        async with Lowtide(server.url, invalidation="keyspace", max_connections=2) as a:
            assert await a.ready(5)
            cache = a.cache("c", ttl=300)
            a.gateway.queue_timeout = 0.2
            release = asyncio.Event()

            async def loader() -> str:
                server.command("CLIENT", "PAUSE", "600", "WRITE")
                holding.extend(
                    asyncio.create_task(cache.set(f"other{i}", i, tenant="t1")) for i in (0, 1)
                )
                await asyncio.sleep(0.05)  # both connections now wait on a paused write
                release.set()
                return "loaded"

            holding: list[asyncio.Task[None]] = []
            assert await cache.get_or_load("k", loader, tenant="t1") == "loaded"
            assert release.is_set()
            assert cache.peek("k", tenant="t1") is None  # its SET NX never left this process
            await asyncio.gather(*holding)
            assert server.command("EXISTS", cache._l2.key(("t1", "k"))) == 0
