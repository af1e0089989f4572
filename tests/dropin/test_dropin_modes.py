"""The drop-in client while Redis is unavailable, suspended or not configured: reads from
process memory when it holds them, else a redis-py ConnectionError; writes always raise."""

from __future__ import annotations

import pytest
import redis.asyncio as aredis
import redis.exceptions as rexc

from lowtide import Lowtide, Mode, RedisUnavailable, tenant_scope
from lowtide.dropin import DropInUnavailable
from lowtide.testing import FaultProxy, ValkeyServer, ledger_commands
from tests.dropin.helpers import dropin, plain
from tests.helpers import eventually


async def test_suspended_reads_come_from_memory_and_writes_raise(lowtide_url: str) -> None:
    other = plain(lowtide_url)
    await other.set("d:held", "1")
    async with dropin(lowtide_url) as (lt, r):
        assert await r.get("d:held") == b"1"
        assert await r.hgetall("d:held2") == {}  # an empty answer is held too
        lt.suspend()
        before = ledger_commands(lt)
        # the last known replies answer (fail-safe); nothing is sent
        assert await r.get("d:held") == b"1"
        # nothing held: the error existing redis-py code already handles
        with pytest.raises(rexc.ConnectionError) as missing:
            await r.get("d:never")
        assert isinstance(missing.value, DropInUnavailable)
        assert isinstance(missing.value, RedisUnavailable)
        assert missing.value.reason == "suspended"
        # writes never silently vanish
        with pytest.raises(rexc.ConnectionError):
            await r.set("d:held", "2")
        with pytest.raises(rexc.ConnectionError):
            await r.get("other:key")
        pipe = r.pipeline()
        pipe.set("d:x", "1")
        with pytest.raises(rexc.ConnectionError):
            await pipe.execute()
        assert ledger_commands(lt) == before
        assert r.lt_engine.info()["refused"] == 4
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5)
        assert await r.set("d:held", "2") is True
        assert await r.get("d:held") == b"2"
    await other.aclose()


async def test_a_server_that_stops_answering(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    with FaultProxy(server.host, server.port) as proxy:
        async with dropin(proxy.url, socket_timeout=0.5, socket_connect_timeout=0.5) as (lt, r):
            await r.set("d:k", "v")
            assert await r.get("d:k") == b"v"
            assert await r.get("d:k") == b"v"  # held
            proxy.refuse()
            lt.invalidations._lost("test", expected=True)  # the listener notices (keepalive)
            # held copies are demoted but answer while Redis cannot (fail-safe)
            assert await r.get("d:k") == b"v"
            with pytest.raises(rexc.ConnectionError):
                await r.get("d:other")
            with pytest.raises(rexc.ConnectionError):
                await r.set("d:k", "w")
            proxy.pass_through()
            await eventually(lambda: lt.invalidations.healthy, within=10)
            assert await r.get("d:k") == b"v"
            await r.set("d:k", "w")
            assert await r.get("d:k") == b"w"


async def test_local_mode_refuses_everything() -> None:
    async with Lowtide(None) as lt:
        r = lt.redis(("d:",))
        assert isinstance(r, aredis.Redis)
        with pytest.raises(rexc.ConnectionError) as info:
            await r.get("d:k")
        assert isinstance(info.value, DropInUnavailable)
        assert info.value.reason == "local"
        with pytest.raises(rexc.ConnectionError):
            await r.set("d:k", "v")


async def test_a_tenant_over_quota_is_refused_like_an_outage(lowtide_url: str) -> None:
    async with dropin(lowtide_url) as (lt, r):
        with tenant_scope("t1"):
            await r.set("d:k", "1")
            assert await r.get("d:k") == b"1"
        lt.quota_blocked.block("t1")
        with tenant_scope("t1"):
            assert await r.get("d:k") == b"1"  # held: answered without a command
            with pytest.raises(DropInUnavailable) as info:
                await r.set("d:k", "2")
            assert info.value.reason == "quota"
        with tenant_scope("t2"):
            await r.set("d:k", "2")


async def test_closing_the_hub_closes_its_clients(lowtide_url: str) -> None:
    async with dropin(lowtide_url) as (lt, r):
        await r.set("d:k", "1")
    with pytest.raises(DropInUnavailable):
        await r.get("d:k")
    with pytest.raises(Exception, match="closed"):
        lt.redis(("d:",))
