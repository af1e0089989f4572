"""Faults on real servers through a fault-injecting proxy: outage under load, slow and stalled
Redis, error replies. Callers of fail-open components never see an exception."""

from __future__ import annotations

import asyncio
import time

import pytest

from lowtide import Lowtide, Mode, RedisCommandError, build_key
from lowtide.context import Attribution
from lowtide.testing import FaultProxy, ValkeyServer
from tests.helpers import eventually, server_fleet_total


async def test_outage_under_load_no_exceptions_bounded_reconnects_fast_recovery(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    outage = 30.0  # the 30 s outage, in real time
    async with Lowtide(proxy.url, instance="web-1") as lt:
        cache = lt.cache("profiles")
        limiter = lt.rate_limiter("hubspot", limit=10_000, per=60, fleet_size=4)
        breaker = lt.circuit_breaker("hubspot", min_calls=50)
        quotas = lt.quotas({"pro": 10**9}, lambda t: "pro", flush_interval=3600)
        assert await lt.invalidations.wait_healthy(5)
        errors: list[BaseException] = []
        ops = {"n": 0}
        stop = asyncio.Event()

        async def load() -> dict[str, int]:
            return {"v": 1}

        async def worker(i: int) -> None:
            t = f"t{i % 3}"
            while not stop.is_set():
                try:
                    await cache.get_or_load(f"k{ops['n'] % 20}", load, tenant=t)
                    await cache.set(f"w{i}", ops["n"], tenant=t)
                    await cache.get(f"w{i}", tenant=t)
                    await limiter.acquire(t)
                    async with breaker.guard(t):
                        pass
                    ops["n"] += 1
                except Exception as exc:  # the property under test: none of these may raise
                    errors.append(exc)
                await asyncio.sleep(0.005)

        workers = [asyncio.create_task(worker(i)) for i in range(4)]
        await asyncio.sleep(0.5)
        tasks_before = len(asyncio.all_tasks())
        proxy.refuse()  # Redis goes away
        accepted = proxy.accepted
        await asyncio.sleep(outage)
        attempts = proxy.accepted - accepted
        assert lt.mode is Mode.DEGRADED
        ops_during = ops["n"]
        proxy.pass_through()  # and comes back
        t0 = time.monotonic()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5.0)
        recovery = time.monotonic() - t0
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)
        assert errors == []
        assert ops["n"] > ops_during > 0  # the app kept working through the outage
        assert attempts <= outage + 2  # at most one reconnection attempt per second
        assert recovery < 5.0
        assert len(asyncio.all_tasks()) <= tasks_before + 3  # nothing piles up
        assert await lt.invalidations.wait_healthy(5)
        # quota counts of the whole run reach the fleet counter after recovery
        await quotas.flush()
        billed = lt.ledger.billed_by_tenant()
        for t in ("t0", "t1", "t2"):
            assert server_fleet_total(server, quotas, t) == billed[t]


async def test_slow_redis_soft_timeout_then_degrade_and_recover(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    _, proxy = proxied
    async with Lowtide(proxy.url, op_timeout=1.0) as lt:
        cache = lt.cache("profiles", soft_timeout=0.1)
        assert await lt.invalidations.wait_healthy(5)
        await cache.set("k", "v1", tenant="t")
        lt.caches.demote_all()  # the copy is no longer fresh: a read must ask Redis
        proxy.set_latency(0.4)
        t0 = time.monotonic()
        assert await cache.get("k", tenant="t") == "v1"  # last good value, not held 0.8 s
        assert time.monotonic() - t0 < 0.3
        assert cache.stats.soft_timeouts == 1
        assert lt.mode is Mode.DISTRIBUTED  # slow is not down
        proxy.set_latency(1.5)  # slower than the operation timeout
        await cache.get("other", tenant="t")  # times out: the hub degrades, the caller is fine
        await eventually(lambda: lt.mode is Mode.DEGRADED, within=3)
        proxy.pass_through()
        assert await lt.wait_for(Mode.DISTRIBUTED, 6.0)


async def test_a_reply_stalled_mid_way_times_out_and_recovers(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    _, proxy = proxied
    async with Lowtide(proxy.url, op_timeout=0.5, fleet_switch=False) as lt:
        att = Attribution("test", "-")
        await lt.gateway.call(att, "SET", "big", "x" * 1000)
        proxy.stall_replies(after_bytes=5)
        with pytest.raises(ConnectionError):  # RedisUnavailable(reason="timeout")
            await lt.gateway.call(att, "GET", "big")
        assert lt.mode is Mode.DEGRADED
        proxy.pass_through()
        proxy.cut()  # drop the half-read connection
        assert await lt.wait_for(Mode.DISTRIBUTED, 6.0)
        assert await lt.gateway.call(att, "GET", "big") == b"x" * 1000


async def test_error_replies_are_typed_and_lose_nothing(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        cache = lt.cache("profiles")
        assert await lt.invalidations.wait_healthy(5)
        await cache.set("k", "v1", tenant="t")
        # WRONGTYPE: someone overwrote our key with a list
        rk = build_key("lt", "cache", "profiles", "t", "k")
        server.command("DEL", rk)
        server.command("LPUSH", rk, "x")
        await eventually(lambda: cache.stats.invalidations >= 1)
        with pytest.raises(RedisCommandError) as info:
            await cache.get("k", tenant="t")
        assert info.value.code == "WRONGTYPE"
        # NOSCRIPT after SCRIPT FLUSH: the token bucket falls back to EVAL on its own
        limiter = lt.rate_limiter("tb", limit=100, per=10, algorithm="token_bucket")
        assert (await limiter.acquire("t")).allowed
        server.command("SCRIPT", "FLUSH")
        limiter.drop_lease("t")
        assert (await limiter.acquire("t")).allowed
        # OOM: the write fails with a typed error and L1 keeps the last good value
        await cache.set("m", "before", tenant="t")
        server.command("CONFIG", "SET", "maxmemory", "1")
        server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        with pytest.raises(RedisCommandError) as oom:
            await cache.set("m", "after", tenant="t")
        assert oom.value.code == "OOM"
        assert await cache.get("m", tenant="t") == "before"
        server.command("CONFIG", "SET", "maxmemory", "0")
        assert lt.mode is Mode.DISTRIBUTED  # error replies are answers, not outages


async def test_readonly_replica_is_a_typed_error() -> None:
    with ValkeyServer() as primary, ValkeyServer() as replica:
        replica.command("REPLICAOF", primary.host, str(primary.port))
        async with Lowtide(replica.url, fleet_switch=False) as lt:
            cache = lt.cache("profiles", per_tenant=False)
            with pytest.raises(RedisCommandError) as info:
                await cache.set("k", 1)
            assert info.value.code == "READONLY"
            assert lt.mode is Mode.DISTRIBUTED
