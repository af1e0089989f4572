"""lowtide on a real 3-master Redis Cluster: the ledger, limits, failover, the demo.

The cache's contract (per-node invalidation included) runs on a cluster too, in
tests/test_cache_contract.py.
"""

from __future__ import annotations

import asyncio

import pytest

from lowtide import Lowtide, build_key
from lowtide.testing import Cluster, changes, server_commands
from tests.helpers import eventually

pytestmark = pytest.mark.cluster


async def test_ledger_reconciles_with_the_nodes(lowtide_cluster: Cluster) -> None:
    before = server_commands(lowtide_cluster)
    async with Lowtide(lowtide_cluster.url, fleet_switch=False) as lt:
        cache = lt.cache("c", per_tenant=False)
        for i in range(40):
            await cache.set(f"k{i}", i)
            await cache.get(f"x{i}")
        snap = lt.ledger.snapshot()
    harness = {"info": len(lowtide_cluster.masters)}  # the harness's own readings
    assert changes(before, server_commands(lowtide_cluster), minus=harness) == snap.by_command


async def test_limiter_and_breaker_on_a_cluster(lowtide_cluster: Cluster) -> None:
    async with Lowtide(lowtide_cluster.url) as lt:
        assert await lt.invalidations.wait_healthy(10)
        fixed = lt.rate_limiter("hubspot", limit=20, per=60)
        bucket = lt.rate_limiter("slack", limit=20, per=60, algorithm="token_bucket")
        for limiter in (fixed, bucket):
            allowed = 0
            for _ in range(50):
                allowed += (await limiter.acquire("t1")).allowed
            assert 1 <= allowed <= 20
        breaker = lt.circuit_breaker("erp", min_calls=2)
        for _ in range(2):
            with pytest.raises(LookupError):
                async with breaker.guard("t1"):
                    raise LookupError("the ERP is down")
        assert breaker.state("t1") == "open"
        key = build_key("lt", "breaker", "erp", "t1", "state")
        assert any(node.server.command("EXISTS", key) == 1 for node in lowtide_cluster.masters)


async def test_invalidation_keeps_working_through_a_failover() -> None:
    from lowtide.testing import start_cluster

    cluster = start_cluster(3, replicas=1)
    try:
        a, b = Lowtide(cluster.url, instance="a"), Lowtide(cluster.url, instance="b")
        for hub in (a, b):
            hub.invalidations.keepalive = 1.0  # compare the topology every second
            await hub.start()
        try:
            ca, cb = a.cache("p"), b.cache("p")
            assert await a.invalidations.wait_healthy(10)
            assert await b.invalidations.wait_healthy(10)
            keys = [f"k{i}" for i in range(30)]
            for k in keys:
                await ca.set(k, 1, tenant="t")
            await asyncio.sleep(0.1)
            for k in keys:
                assert await cb.get(k, tenant="t") == 1
            before = a.gateway.primaries()
            cluster.failover(cluster.replicas[0])
            for k in keys:  # MOVED teaches a's client the new topology; no error reaches us
                await ca.set(k, 2, tenant="t")
            assert a.gateway.primaries() != before
            # a's listener notices the new primaries, flushes and re-subscribes to them
            await eventually(
                lambda: (
                    a.invalidations.healthy
                    and sorted(c.address for c in a.invalidations.connections)
                    == a.gateway.primaries()
                ),
                within=10,
            )
            for k in keys:
                await ca.set(k, 3, tenant="t")
            await asyncio.sleep(0.3)
            assert {await cb.get(k, tenant="t") for k in keys} == {3}
            assert a.mode.value == b.mode.value == "distributed"
        finally:
            await a.close()
            await b.close()
    finally:
        cluster.stop()


async def test_the_demo_runs_against_a_cluster(lowtide_cluster: Cluster) -> None:
    from lowtide.demo import DemoConfig, run_demo

    # speedup 10: the baselines' cluster client allows 100 connections per node, and compressed
    # time multiplies the requests in flight
    cfg = DemoConfig(seconds=60, warmup=30, speedup=10, machines=2, invalidation=("tracking",))
    result = await run_demo(cfg, lowtide_cluster.url)
    naive, lowtide = result.strategies["naive"], result.strategies["lowtide/tracking"]
    assert naive.gets_per_day > 0
    assert lowtide.billed_per_day < naive.billed_per_day
    assert lowtide.overshoot == 0
    assert lowtide.errors == {}
    assert naive.errors == {}
    for node in lowtide_cluster.masters:  # cleaned up on every node
        assert node.server.command("KEYS", "ltdemo*") == []


async def test_renewal_sends_nothing_on_a_cluster(lowtide_cluster: Cluster) -> None:
    # an MGET there is split per hash slot: capped copies lapse and are read one by one
    async with Lowtide(lowtide_cluster.url, invalidation="pubsub", fleet_switch=False) as lt:
        assert await lt.invalidations.wait_healthy(10)
        cache = lt.cache("c", ttl=60, max_staleness=0.6)
        for i in range(10):
            await cache.set(f"k{i}", i, tenant="t1")
        for _ in range(30):  # 1.5 s: past two bounds
            for i in range(10):
                assert await cache.get(f"k{i}", tenant="t1") == i
            await asyncio.sleep(0.05)
        assert cache.stats.renewals == 0
        commands = lt.ledger.snapshot().by_command
        assert "mget" not in commands
        assert commands.get("get", 0) >= 20  # each key lapsed and was read again, twice
