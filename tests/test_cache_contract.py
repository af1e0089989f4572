"""The tiered cache's contract across processes, run in every invalidation listener mode.

:class:`CacheContract` holds the behaviour tests (coredis' ``CommonExamples``);
:class:`TestCacheContract` runs each of them once per mode of
:data:`tests.deployments.LISTENER_MODES` (limits' ``ALL_STORAGES``): CLIENT TRACKING over RESP2
(the default) and RESP3 (``listener_resp3=True``), the pub/sub backplane
(``invalidation="pubsub"``) and a real 3-primary cluster (marked ``cluster``). Where a mode
documents a different behaviour the test states it through the mode's fields
(``sees_foreign_writes``, ``keeps_own_writes``, ``publishes``), never by weakening the check.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot

from lowtide import Cache, Lowtide, ManualClock, Mode, build_key
from lowtide.context import Attribution
from lowtide.testing import changes, ledger_commands
from tests.deployments import LISTENER_MODES, Deployment
from tests.helpers import advance_gently, eventually

A = Attribution("test", "-")
#: listener start-up: three connections and self-tests on a cluster
HEALTHY_WITHIN = 10


def cache_key(name: str, tenant: str, key: str) -> str:
    """The Redis key of ``key`` in cache ``name`` (default namespace)."""
    return build_key("lt", "cache", name, tenant, key)


async def healthy(*hubs: Lowtide) -> None:
    for hub in hubs:
        assert await hub.invalidations.wait_healthy(HEALTHY_WITHIN)


async def backplane_fence(deployment: Deployment, hub: Lowtide) -> None:
    """Publish a message on the backplane and wait until ``hub`` heard it: whatever was
    published before it has been delivered (one connection, in order)."""
    received = hub.invalidations.received
    deployment.command("PUBLISH", hub.invalidations.channel, cache_key("fence", "t", "x"))
    await eventually(lambda: hub.invalidations.received > received)


def in_the_slot_of(rk: str, base: str) -> str:
    """``base`` plus a number, chosen so that the key shares ``rk``'s cluster slot."""
    slot = key_slot(rk.encode())
    n = 0
    while key_slot(f"{base}{n}".encode()) != slot:
        n += 1
    return f"{base}{n}"


#: one script writes both keys: their invalidations arrive in one pushed batch
SET_BOTH = "redis.call('SET', KEYS[1], 'x'); redis.call('SET', KEYS[2], ARGV[1]); return 1"


class CacheContract:
    """Behaviour every listener mode must give (collected through :class:`TestCacheContract`)."""

    async def test_the_listener_runs_in_the_requested_mode(self, deployment: Deployment) -> None:
        mode = deployment.mode
        async with deployment.hub() as hub:
            await healthy(hub)
            assert hub.health()["invalidation"]["mode"] == mode.health
            assert hub.invalidations.publishes is mode.publishes
            assert hub.gateway.cluster is mode.cluster
            if mode.cluster:
                primaries = hub.gateway.primaries()
                assert primaries is not None
                assert len(hub.invalidations.connections) == len(primaries) == 3  # one each
            else:
                assert len(hub.invalidations.connections) == 1

    async def test_costs_hit_zero_miss_one_get_write_one_set(self, deployment: Deployment) -> None:
        mode = deployment.mode
        async with deployment.hub() as hub:
            await healthy(hub)
            cache = hub.cache("profiles", ttl=60)
            c0 = ledger_commands(hub, component="cache")
            assert await cache.get("u1", tenant="t1") is None  # miss: 1 GET
            assert await cache.get("u1", tenant="t1") is None  # remembered absence: 0
            await cache.set("u1", {"name": "Ada"}, tenant="t1")  # 1 SET (+1 PUBLISH)
            c1 = ledger_commands(hub, component="cache")
            write = {"set": 1, "publish": 1} if mode.publishes else {"set": 1}
            assert changes(c0, c1) == {"get": 1, **write}
            await asyncio.sleep(0.05)  # the write's own echo arrives
            assert await cache.get("u1", tenant="t1") == {"name": "Ada"}
            if mode.keeps_own_writes:
                # pub/sub: one message per write, the writer swallowed its own; tracking with
                # the NOLOOP writer: no echo at all. Still a hit
                assert changes(c1, ledger_commands(hub, component="cache")) == {}
            else:
                # tracking merges invalidations of one server cycle, so the writer does not keep
                # its own copy past the echo: the next read fetches it once (1 GET), then L1
                assert changes(c1, ledger_commands(hub, component="cache")) == {"get": 1}
            c2 = ledger_commands(hub, component="cache")
            for _ in range(100):
                assert await cache.get("u1", tenant="t1") == {"name": "Ada"}
            await asyncio.sleep(0.05)
            assert await cache.get("u1", tenant="t1") == {"name": "Ada"}
            assert changes(c2, ledger_commands(hub, component="cache")) == {}
            assert cache.stats.hits >= 101

    async def test_a_write_on_one_machine_drops_the_copy_on_another(
        self, deployment: Deployment
    ) -> None:
        async with deployment.hub("a") as a, deployment.hub("b") as b:
            await healthy(a, b)
            ca, cb = a.cache("profiles"), b.cache("profiles")
            await ca.set("u1", {"v": 1}, tenant="t1")
            # b fills its L1 (a read with the write's message landing while it is in flight
            # rightly keeps no copy: read again until b holds the one the next write must drop)

            async def b_holds() -> bool:
                assert await cb.get("u1", tenant="t1") == {"v": 1}
                return cb.peek("u1", tenant="t1") == {"v": 1}

            await eventually(b_holds)
            before = ledger_commands(b, component="cache")
            await ca.set("u1", {"v": 2}, tenant="t1")
            await eventually(lambda: cb.stats.invalidations >= 1)
            # lazy: the push made b send nothing
            assert changes(before, ledger_commands(b, component="cache")) == {}
            assert await cb.get("u1", tenant="t1") == {"v": 2}
            await ca.delete("u1", tenant="t1")
            await eventually(lambda: cb.stats.invalidations >= 2)
            assert await cb.get("u1", tenant="t1") is None

    async def test_writes_on_every_node_reach_the_other_machine(
        self, deployment: Deployment
    ) -> None:
        async with deployment.hub("a") as a, deployment.hub("b") as b:
            ca, cb = a.cache("profiles"), b.cache("profiles")
            await healthy(a, b)
            keys = [f"user:{i}" for i in range(30)]  # on a cluster: spread over every node
            for k in keys:
                await ca.set(k, 1, tenant="t1")
                assert await cb.get(k, tenant="t1") == 1

                async def held(k: str = k) -> bool:
                    # b fills its L1, unless a's message about the write landed while b's read
                    # was in flight (the race guard then keeps no copy): read again
                    if cb.peek(k, tenant="t1") == 1:
                        return True
                    assert await cb.get(k, tenant="t1") == 1
                    return False

                await eventually(held)
            for k in keys:
                await ca.set(k, 2, tenant="t1")
            await eventually(lambda: cb.stats.invalidations >= len(keys))
            for k in keys:
                assert await cb.get(k, tenant="t1") == 2
            before = cb.stats.hits
            for k in keys:
                assert await cb.get(k, tenant="t1") == 2
            assert cb.stats.hits == before + len(keys)

    async def test_writes_by_other_programs(self, deployment: Deployment) -> None:
        clock = ManualClock()
        async with deployment.hub(clock=clock) as hub:
            await healthy(hub)
            cache = hub.cache("profiles", max_staleness=5)
            await cache.set("u1", "old", tenant="t1")
            await asyncio.sleep(0.05)  # the write's own echo
            assert await cache.get("u1", tenant="t1") == "old"  # held in L1 now
            seen = cache.stats.invalidations
            rk = cache_key("profiles", "t1", "u1")
            deployment.command("DEL", rk)  # redis-cli, another service...
            if deployment.mode.sees_foreign_writes:
                await eventually(lambda: cache.stats.invalidations > seen)
                assert await cache.get("u1", tenant="t1") is None
                return
            # the backplane carries only what lowtide's writers PUBLISH: once a message sent
            # after the DEL has arrived, nothing about the DEL can still be on its way...
            await backplane_fence(deployment, hub)
            assert cache.stats.invalidations == seen
            before = ledger_commands(hub, component="cache")
            assert await cache.get("u1", tenant="t1") == "old"  # ...so L1 still answers
            assert changes(before, ledger_commands(hub, component="cache")) == {}
            clock.advance(5.1)  # but never for longer than max_staleness
            assert await cache.get("u1", tenant="t1") is None
            assert changes(before, ledger_commands(hub, component="cache")) == {"get": 1}

    async def test_a_flushall_demotes_every_copy(self, deployment: Deployment) -> None:
        clock = ManualClock()
        async with deployment.hub(clock=clock) as hub:
            await healthy(hub)
            cache = hub.cache("profiles", max_staleness=5)
            keys = [f"u{i}" for i in range(10)]  # on a cluster: on every node
            for k in keys:
                await cache.set(k, "v", tenant="t1")
            await asyncio.sleep(0.05)  # the writes' own echoes
            for k in keys:
                assert await cache.get(k, tenant="t1") == "v"  # held in L1 now
            for server in deployment.servers:
                server.flushall()  # redis-cli FLUSHALL, on every primary
            if deployment.mode.sees_foreign_writes:
                if not deployment.mode.flush_pushed:
                    # no event for a flush: the next sentinel check (every three keepalive
                    # periods, 45 s) finds its probe key gone
                    assert [cache.peek(k, tenant="t1") for k in keys] == ["v"] * len(keys)
                    await advance_gently(clock, 45.1)
                # the listener drops everything: every copy is demoted
                await eventually(lambda: all(cache.peek(k, tenant="t1") is None for k in keys))
            else:
                # not on the backplane: copies answer until max_staleness, then L2 does
                await backplane_fence(deployment, hub)
                assert [cache.peek(k, tenant="t1") for k in keys] == ["v"] * len(keys)
                clock.advance(5.1)
            before = ledger_commands(hub, component="cache")
            for k in keys:
                assert await cache.get(k, tenant="t1") is None
            assert changes(before, ledger_commands(hub, component="cache")) == {"get": len(keys)}

    async def test_an_l1_copy_is_served_for_at_most_max_staleness(
        self, deployment: Deployment
    ) -> None:
        clock = ManualClock()
        async with deployment.hub(clock=clock) as hub:
            await healthy(hub)
            cache = hub.cache("p", max_staleness=5)
            await cache.set("k", 1, tenant="t")
            await asyncio.sleep(0.05)  # the write's own echo
            assert await cache.get("k", tenant="t") == 1  # held in L1 now
            c0 = ledger_commands(hub, component="cache")
            assert await cache.get("k", tenant="t") == 1
            assert changes(c0, ledger_commands(hub, component="cache")) == {}
            clock.advance(6)
            assert await cache.get("k", tenant="t") == 1
            assert changes(c0, ledger_commands(hub, component="cache")) == {"get": 1}

    async def test_listener_loss_demotes_l1_until_resubscribed(
        self, deployment: Deployment
    ) -> None:
        async with deployment.hub(reconnect_min=0.1, reconnect_max=0.2) as hub:
            await healthy(hub)
            cache = hub.cache("profiles")
            await cache.set("u1", "v1", tenant="t1")
            assert await cache.get("u1", tenant="t1") == "v1"
            assert deployment.kill_listeners() >= 1
            await eventually(lambda: not hub.invalidations.healthy)
            c0 = ledger_commands(hub, component="cache")
            assert await cache.get("u1", tenant="t1") == "v1"  # from L2, not from untrusted L1
            assert await cache.get("u1", tenant="t1") == "v1"  # still not filled: listener down
            assert changes(c0, ledger_commands(hub, component="cache")) == {"get": 2}
            await healthy(hub)  # resubscribed and self-tested again
            c1 = ledger_commands(hub, component="cache")
            assert await cache.get("u1", tenant="t1") == "v1"  # 1 GET, which fills L1 again
            assert await cache.get("u1", tenant="t1") == "v1"
            assert changes(c1, ledger_commands(hub, component="cache")) == {"get": 1}

    async def test_concurrent_writers_on_two_machines_leave_no_stale_copy(
        self, deployment: Deployment, request: pytest.FixtureRequest
    ) -> None:
        # the reviewer's case: CLIENT TRACKING sends one message for writes in one server cycle
        # A race shows in some rounds only (about 60 % of them, where there is one). Where a
        # writer keeps its own copy (echo counting) run enough rounds that it cannot hide.
        rounds = 15 if deployment.mode.keeps_own_writes else 3
        async with deployment.hub("a") as a, deployment.hub("b") as b:
            await healthy(a, b)
            ca, cb = a.cache("race"), b.cache("race")
            for r in range(rounds):
                keys = [f"r{r}:k{i}" for i in range(200)]

                async def writes(cache: Cache, tag: str, keys: list[str] = keys) -> None:
                    for k in keys:
                        await cache.set(k, tag, tenant="t")

                await asyncio.gather(writes(ca, "a"), writes(cb, "b"))
                await asyncio.sleep(0.2)  # every push delivered
                for k in keys:
                    truth = await a.gateway.call(A, "GET", cache_key("race", "t", k))
                    assert truth is not None
                    for cache in (ca, cb):
                        local = cache.peek(k, tenant="t")
                        if local is not None:
                            assert local == (await cache.get(k, tenant="t"))
                            assert local.encode() in truth, f"round {r}"  # any copy equals Redis

    async def test_the_ledger_matches_the_server_for_cache_traffic(
        self, deployment: Deployment, request: pytest.FixtureRequest
    ) -> None:
        before = deployment.commandstats()
        async with deployment.hub() as lt:
            await healthy(lt)
            cache = lt.cache("c")
            for i in range(20):
                await cache.set(f"k{i}", i, tenant="t")
                await cache.get(f"k{i}", tenant="t")
                await cache.get(f"x{i}", tenant="t")
            await cache.get_many([f"k{i}" for i in range(30)], tenant="t")
            await cache.set_many({"m1": 1, "m2": 2}, tenant="t")
            await cache.delete("m1", tenant="t")
            by_command = lt.ledger.snapshot().by_command
        # minus the harness's own INFO (one per server) that read `before`
        harness = {"info": len(deployment.servers)}
        assert changes(before, deployment.commandstats(), minus=harness) == by_command

    async def test_redis_down_serves_stale_and_keeps_local_writes(
        self, deployment: Deployment
    ) -> None:
        async with deployment.hub() as hub:
            await healthy(hub)
            cache = hub.cache("profiles")
            await cache.set("u1", "v1", tenant="t1")
            hub.suspend()
            assert hub.mode is Mode.SUSPENDED
            assert await cache.get("u1", tenant="t1") == "v1"  # fail-safe from L1, no exception
            assert cache.stats.stale_served == 1
            await cache.set("u2", "local", tenant="t1")  # kept locally
            assert await cache.get("u2", tenant="t1") == "local"
            assert await cache.get("never", tenant="t1") is None

            async def loader() -> str:
                return "loaded"

            assert await cache.get_or_load("u3", loader, tenant="t1") == "loaded"
            hub.resume()
            assert await hub.wait_for(Mode.DISTRIBUTED, 5)
            await healthy(hub)
            c0 = ledger_commands(hub, component="cache")
            assert await cache.get("u2", tenant="t1") is None  # local-only write: L2 never had it
            assert changes(c0, ledger_commands(hub, component="cache")) == {"get": 1}

    async def test_a_load_never_overwrites_a_concurrent_write(self, deployment: Deployment) -> None:
        async with deployment.hub() as hub:
            await healthy(hub)
            cache = hub.cache("profiles")
            other = hub.cache("profiles")
            gate = asyncio.Event()

            async def slow_loader() -> str:
                await gate.wait()
                return "old"

            load = asyncio.ensure_future(cache.get_or_load("k", slow_loader, tenant="t"))
            await asyncio.sleep(0.02)  # the load found L2 empty and is waiting on the loader
            await other.set("k", "new", tenant="t")  # a write lands meanwhile
            await asyncio.sleep(0.02)
            gate.set()
            assert await load == "old"  # the caller gets what it loaded...
            raw = await hub.gateway.call(A, "GET", cache_key("profiles", "t", "k"))
            assert b"new" in raw  # ...but Redis keeps the newer write
            await asyncio.sleep(0.05)
            assert await cache.get("k", tenant="t") == "new"

    async def test_a_bad_key_in_a_pushed_batch_does_not_hide_the_others(
        self, deployment: Deployment
    ) -> None:
        async with deployment.hub() as hub:
            await healthy(hub)
            cache = hub.cache("profiles")
            rk = cache_key("profiles", "t", "k")
            await cache.set("k", "v1", tenant="t")
            await asyncio.sleep(0.05)
            assert await cache.get("k", tenant="t") == "v1"  # held in L1
            # a key under the cache prefix that does not decode (%FF is not UTF-8), then ours
            bad = "lt:c:profiles:t:%FF"
            if deployment.mode.cluster:
                bad = in_the_slot_of(rk, bad)  # one script writes keys of one slot only
            if deployment.mode.sees_foreign_writes:
                # one script, so one pushed batch
                deployment.command(
                    "EVAL",
                    SET_BOTH,
                    "2",
                    bad,
                    rk,
                    "foreign",
                    key=rk,
                )
            else:
                # the backplane's batch: one PUBLISH of newline-separated keys (as set_many does)
                deployment.command("PUBLISH", hub.invalidations.channel, f"{bad}\n{rk}")
            await eventually(lambda: cache.peek("k", tenant="t") is None)

    async def test_get_many_and_set_many(
        self, deployment: Deployment, request: pytest.FixtureRequest
    ) -> None:
        async with deployment.hub() as hub:
            await healthy(hub)
            cache = hub.cache("profiles")
            c0 = ledger_commands(hub, component="cache")
            received = hub.invalidations.received
            await cache.set_many({"a": 1, "b": 2, "c": 3}, tenant="t")
            # one PUBLISH carries the whole batch on the backplane
            publish = {"publish": 1} if deployment.mode.publishes else {}
            assert changes(c0, ledger_commands(hub, component="cache")) == {"set": 3, **publish}
            # the writes' own messages must arrive before the reads below, or one landing while
            # the MGET is in flight rightly keeps its key out of memory: keyspace notifications
            # send `set` and `expire` per key, the backplane one PUBLISH, CLIENT TRACKING
            # without the NOLOOP writer one push or more, with it none
            mode = deployment.mode
            coming = (
                6 if mode.health == "keyspace" else int(mode.publishes or not mode.keeps_own_writes)
            )
            await eventually(lambda: hub.invalidations.received >= received + coming)
            cache.clear_local()
            c1 = ledger_commands(hub, component="cache")
            got = await cache.get_many(["a", "b", "c", "d"], tenant="t")
            assert got == {"a": 1, "b": 2, "c": 3, "d": None}
            # one MGET; on a cluster one per hash slot of the keys (sent in one round trip)
            slots = {
                key_slot(build_key("lt", "cache", "profiles", "t", k).encode()) for k in "abcd"
            }
            mgets = len(slots) if deployment.mode.cluster else 1
            assert changes(c1, ledger_commands(hub, component="cache")) == {"mget": mgets}
            assert await cache.get_many(["a", "b", "c", "d"], tenant="t") == got
            assert changes(c1, ledger_commands(hub, component="cache")) == {"mget": mgets}


@pytest.mark.parametrize("deployment", LISTENER_MODES, indirect=True)
class TestCacheContract(CacheContract):
    """:class:`CacheContract` in every listener mode."""
