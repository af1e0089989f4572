"""Cache writes over the listener's NOLOOP writer connection (CLIENT TRACKING, one server).

The writer's own write is not pushed back to it, so it keeps its copy (no read-back GET), while
every other write (another hub, a plain client, one merged into the same server cycle after
ours, an expiry) still is. Losing either connection flushes and recovers both.
"""

from __future__ import annotations

import asyncio

from lowtide import Lowtide
from lowtide.cache import Cache
from lowtide.keys import build_key
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.helpers import eventually


def cache_key(name: str, tenant: str, key: str) -> str:
    return build_key("lt", "cache", name, tenant, key)


async def healthy(*hubs: Lowtide) -> None:
    for hub in hubs:
        assert await hub.invalidations.wait_healthy(5)


def clients(server: ValkeyServer) -> list[dict[str, str]]:
    text = server.command("CLIENT", "LIST").decode()
    return [
        dict(f.split("=", 1) for f in line.split(" ") if "=" in f) for line in text.splitlines()
    ]


def writer_id(server: ValkeyServer, hub: Lowtide) -> str:
    """The client id of ``hub``'s writer: the connection whose pushes go to its listener."""
    (listener,) = hub.invalidations.connections
    (w,) = [c for c in clients(server) if c["redir"] == str(listener.client_id)]
    assert "t" in w["flags"]  # tracking on
    return w["id"]


async def until_held(server: ValkeyServer, client_id: str) -> None:
    """Wait until the server holds ``client_id``'s command (paused: flag ``b``)."""

    def held() -> bool:
        return any(c["id"] == client_id and "b" in c["flags"] for c in clients(server))

    await eventually(held)


async def four() -> int:
    return 4


async def test_a_write_then_reads_cost_no_get_on_the_writer(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        await healthy(lt)
        assert lt.health()["invalidation"]["quiet_writes"] is True
        cache = lt.cache("profiles", ttl=60)
        before, s0 = ledger_commands(lt, component="cache"), server_commands(server)
        await cache.set("u1", {"v": 1}, tenant="t1")
        await cache.set_many({"u2": 2, "u3": 3}, tenant="t1")
        assert await cache.get_or_load("u4", four, tenant="t1") == 4
        # 4 SETs (the fill is SET NX GET, after the miss's GET)
        mid, s1 = ledger_commands(lt, component="cache"), server_commands(server)
        assert changes(before, mid) == {"set": 4, "get": 1}
        assert changes(s0, s1, minus={"info": 1})["set"] == 4
        await asyncio.sleep(0.1)  # an echo, if one came, would have arrived
        for _ in range(3):
            assert await cache.get("u1", tenant="t1") == {"v": 1}
            assert await cache.get("u2", tenant="t1") == 2
            assert await cache.get("u4", tenant="t1") == 4
        # no read-back: every read was answered from L1
        assert changes(mid, ledger_commands(lt, component="cache")) == {}
        assert changes(s1, server_commands(server), minus={"info": 1}).get("get", 0) == 0


async def test_foreign_writes_after_ours_are_seen(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    plain = plain_client(server.url)
    try:
        async with Lowtide(server.url) as a, Lowtide(server.url) as b:
            await healthy(a, b)
            ca, cb = a.cache("profiles"), b.cache("profiles")
            await ca.set("k", "a1", tenant="t")
            assert ca.peek("k", tenant="t") == "a1"
            await cb.set("k", "b1", tenant="t")  # another process (hub)
            await eventually(lambda: ca.peek("k", tenant="t") is None)
            assert await ca.get("k", tenant="t") == "b1"
            await ca.set("k", "a2", tenant="t")
            await plain.set(cache_key("profiles", "t", "k"), b"x")  # another program
            await eventually(lambda: ca.peek("k", tenant="t") is None)
            await ca.delete("k", tenant="t")
            await plain.set(cache_key("profiles", "t", "k"), b"y")
            await eventually(lambda: a.invalidations.received >= 4)
            assert ca.peek("k", tenant="t") is None
    finally:
        await plain.aclose()


async def test_a_foreign_write_merged_into_our_server_cycle(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # CLIENT PAUSE WRITE holds both writes; UNPAUSE runs them in one event-loop cycle, in the
    # order they arrived, so their invalidations are merged into one message
    server = lowtide_fresh_server
    rk = cache_key("merged", "t", "k")
    async with Lowtide(server.url) as lt, Lowtide(server.url) as other:
        await healthy(lt, other)
        cache: Cache = lt.cache("merged")
        foreign = other.cache("merged")
        wid, pid = writer_id(server, lt), writer_id(server, other)
        for first in ("ours", "theirs"):
            await cache.set("k", "seed", tenant="t")
            server.command("CLIENT", "PAUSE", 10_000, "WRITE")
            try:
                if first == "ours":
                    ours = asyncio.ensure_future(cache.set("k", "ours", tenant="t"))
                    await until_held(server, wid)
                    theirs = asyncio.ensure_future(foreign.set("k", "theirs", tenant="t"))
                    await until_held(server, pid)
                else:
                    theirs = asyncio.ensure_future(foreign.set("k", "theirs", tenant="t"))
                    await until_held(server, pid)
                    ours = asyncio.ensure_future(cache.set("k", "ours", tenant="t"))
                    await until_held(server, wid)
            finally:
                server.command("CLIENT", "UNPAUSE")
            await asyncio.gather(ours, theirs)
            truth = server.command("GET", rk)
            await asyncio.sleep(0.1)  # every push of the cycle delivered
            local, elsewhere = cache.peek("k", tenant="t"), foreign.peek("k", tenant="t")
            if first == "ours":
                # theirs landed last in the cycle: pushed to us (our copy demoted), not to them
                assert b"theirs" in truth
                assert (local, elsewhere) == (None, "theirs")
                assert await cache.get("k", tenant="t") == "theirs"
            else:
                # ours landed last: Redis holds our value, we keep it, they were told
                assert b"ours" in truth
                assert (local, elsewhere) == ("ours", None)
                assert await foreign.get("k", tenant="t") == "ours"


async def test_many_more_writers_than_connections(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, max_connections=4) as lt:
        await healthy(lt)
        cache = lt.cache("busy")
        s0 = server_commands(server)
        await asyncio.gather(*(cache.set(f"k{i}", i, tenant="t") for i in range(300)))
        s1 = server_commands(server)
        assert changes(s0, s1, minus={"info": 1})["set"] == 300
        for i in range(300):
            assert cache.peek(f"k{i}", tenant="t") == i  # every writer kept its copy
        assert changes(s1, server_commands(server), minus={"info": 1}) == {}


async def test_killing_the_writer_flushes_and_recovers(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        await healthy(lt)
        inv = lt.invalidations
        cache = lt.cache("k")
        await cache.set("a", 1, tenant="t")
        assert cache.peek("a", tenant="t") == 1
        server.command("CLIENT", "KILL", "ID", writer_id(server, lt))
        # its registration is gone: the listener hears nothing more, so memory is flushed
        await eventually(lambda: not inv.healthy)
        assert cache.peek("a", tenant="t") is None
        assert inv.last_error is not None
        await healthy(lt)  # both connections again, self-tested
        wid = writer_id(server, lt)
        assert inv.info()["quiet_writes"] is True
        await cache.set("a", 2, tenant="t")
        assert cache.peek("a", tenant="t") == 2
        server.command("SET", cache_key("k", "t", "a"), "x")  # still pushed
        await eventually(lambda: cache.peek("a", tenant="t") is None)
        assert writer_id(server, lt) == wid


async def test_killing_the_listener_registers_a_new_writer(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        await healthy(lt)
        inv = lt.invalidations
        old = writer_id(server, lt)
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: not inv.healthy)
        await healthy(lt)
        new = writer_id(server, lt)  # redirected to the new listener
        assert new != old
        assert old not in {c["id"] for c in clients(server)}  # the broken one was closed
        cache = lt.cache("k")
        await cache.set("a", 1, tenant="t")
        assert cache.peek("a", tenant="t") == 1
        server.command("SET", cache_key("k", "t", "a"), "x")
        await eventually(lambda: cache.peek("a", tenant="t") is None)


async def test_setting_off_writes_through_the_pool(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, noloop_writes=False) as lt:
        await healthy(lt)
        assert lt.health()["invalidation"]["quiet_writes"] is False
        (listener,) = lt.invalidations.connections
        lid = str(listener.client_id)
        assert [c["id"] for c in clients(server) if c["redir"] == lid] == [lid]  # itself
        cache = lt.cache("k")
        await cache.set("a", 1, tenant="t")
        await eventually(lambda: cache.peek("a", tenant="t") is None)  # its own echo
