"""The pub/sub backplane announces a write only where another process can hold what it replaces
(``lowtide.cache.notify``), and a cache stops keeping copies where their messages cost more than
the reads they save (``lowtide.cache.adaptive``). Real servers, real hubs; costs from the ledger
and the server's ``INFO commandstats``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from lowtide import Cache, Lowtide, build_key
from lowtide.cache.adaptive import WINDOW
from lowtide.context import Attribution
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.helpers import eventually, listeners_caught_up

A = Attribution("test", "-")


@asynccontextmanager
async def hubs(url: str, n: int, **options: object) -> AsyncIterator[list[Lowtide]]:
    """``n`` pub/sub hubs on ``url``, each subscribed and self-tested."""
    async with AsyncExitStack() as stack:
        out = []
        for i in range(n):
            hub = await stack.enter_async_context(
                Lowtide(url, instance=f"h{i}", invalidation="pubsub", **options)
            )
            assert await hub.invalidations.wait_healthy(5)
            out.append(hub)
        yield out


async def fence(hubs: list[Lowtide]) -> None:
    """Publish a message from the first hub and wait until every hub heard it: whatever was
    published before has been delivered (one connection each, in order)."""
    seen = [h.invalidations.received for h in hubs]
    await hubs[0].gateway.call(
        A, "PUBLISH", hubs[0].invalidations.channel, build_key("lt", "cache", "fence", "t", "x")
    )
    await eventually(
        lambda: all(h.invalidations.received > s for h, s in zip(hubs, seen, strict=True))
    )


def cache_cmds(hub: Lowtide) -> dict[str, int]:
    return ledger_commands(hub, component="cache")


async def test_a_cold_fill_sends_no_publish(lowtide_server: ValkeyServer, lowtide_url: str) -> None:
    async with hubs(lowtide_url, 2) as (a, _):
        ca = a.cache("profiles")
        before, server0 = cache_cmds(a), server_commands(lowtide_server)

        async def load() -> dict[str, int]:
            return {"v": 1}

        assert await ca.get_or_load("u1", load, tenant="t") == {"v": 1}
        # 1 GET (nothing there), 1 SET NX: no process can hold a copy of a value that was not
        # in Redis, so nobody is told
        assert changes(before, cache_cmds(a)) == {"get": 1, "set": 1}
        assert changes(server0, server_commands(lowtide_server), minus={"info": 1}) == {
            "get": 1,
            "set": 1,
        }
        assert (ca.stats.quiet_writes, ca.stats.notified) == (1, 0)
        assert await ca.get("u1", tenant="t") == {"v": 1}  # the filler keeps its copy
        assert changes(before, cache_cmds(a)) == {"get": 1, "set": 1}


async def test_a_write_to_a_key_other_hubs_hold_reaches_each_of_them(lowtide_url: str) -> None:
    async with hubs(lowtide_url, 4) as all_hubs:
        caches = [h.cache("profiles") for h in all_hubs]
        await caches[0].set("u1", "v1", tenant="t")
        for c in caches[1:]:
            assert await c.get("u1", tenant="t") == "v1"  # each fills its copy
        before = [cache_cmds(h) for h in all_hubs]
        await caches[0].set("u1", "v2", tenant="t")
        # SET ... GET answered the old value, which others may hold: 1 PUBLISH
        assert changes(before[0], cache_cmds(all_hubs[0])) == {"set": 1, "publish": 1}
        await eventually(lambda: all(c.peek("u1", tenant="t") is None for c in caches[1:]))
        for h, c, b in zip(all_hubs[1:], caches[1:], before[1:], strict=True):
            assert changes(b, cache_cmds(h)) == {}  # the push itself cost them nothing
            assert await c.get("u1", tenant="t") == "v2"
            assert changes(b, cache_cmds(h)) == {"get": 1}
        assert caches[0].peek("u1", tenant="t") == "v2"  # the writer kept its own value


async def test_rewriting_the_same_bytes_tells_no_one(lowtide_url: str) -> None:
    async with hubs(lowtide_url, 2) as (a, b):
        ca, cb = a.cache("profiles"), b.cache("profiles")
        await ca.set("u1", {"n": 1}, tenant="t")
        await fence([a, b])  # its message lands before b reads (during the read, b keeps none)
        assert await cb.get("u1", tenant="t") == {"n": 1}
        before_a, before_b = cache_cmds(a), cache_cmds(b)
        await ca.set("u1", {"n": 1}, tenant="t")
        assert changes(before_a, cache_cmds(a)) == {"set": 1}
        await fence([a, b])
        assert cb.peek("u1", tenant="t") == {"n": 1}  # b's copy is still right, still served
        assert await cb.get("u1", tenant="t") == {"n": 1}
        assert changes(before_b, cache_cmds(b)) == {}


async def test_a_delete_is_announced_only_when_there_was_something(lowtide_url: str) -> None:
    async with hubs(lowtide_url, 2) as (a, b):
        ca, cb = a.cache("profiles"), b.cache("profiles")
        c0 = cache_cmds(a)
        await ca.delete("nothing", tenant="t")
        assert changes(c0, cache_cmds(a)) == {"getdel": 1}  # absent stays absent
        await ca.set("u1", "v", tenant="t")
        assert await cb.get("u1", tenant="t") == "v"
        c1 = cache_cmds(a)
        await ca.delete("u1", tenant="t")
        assert changes(c1, cache_cmds(a)) == {"getdel": 1, "publish": 1}
        await eventually(lambda: cb.peek("u1", tenant="t") is None)
        assert await cb.get("u1", tenant="t") is None


async def test_an_explicit_set_of_an_absent_key_reaches_a_remembered_absence(
    lowtide_url: str,
) -> None:
    # control state (a breaker that is not open) is often "no value": a process remembers the
    # absence, and the first write must still reach it at once
    async with hubs(lowtide_url, 2) as (a, b):
        ca, cb = a.cache("flags"), b.cache("flags")
        assert await cb.get("f", tenant="t") is None  # b remembers "absent"
        c0 = cache_cmds(a)
        dropped = cb.stats.invalidations
        await ca.set("f", "on", tenant="t")
        assert changes(c0, cache_cmds(a)) == {"set": 1, "publish": 1}
        # the remembered absence reads as None too: wait for the push to drop it
        await eventually(lambda: cb.stats.invalidations > dropped)
        assert await cb.get("f", tenant="t") == "on"


async def test_fills_writes_and_deletes_racing_on_four_hubs_leave_no_stale_copy(
    lowtide_url: str,
) -> None:
    keys = [f"k{i}" for i in range(8)]
    async with hubs(lowtide_url, 4) as all_hubs:
        caches = [h.cache("race") for h in all_hubs]
        version = 0

        async def worker(cache: Cache, seed: int) -> None:
            nonlocal version
            rng = random.Random(seed)
            for _ in range(300):
                key = rng.choice(keys)
                op = rng.random()
                if op < 0.6:

                    async def load(key: str = key) -> str:
                        await asyncio.sleep(rng.random() / 1000)
                        return f"loaded:{key}"

                    await cache.get_or_load(key, load, tenant="t")
                elif op < 0.85:
                    version += 1
                    await cache.set(key, f"v{version}", tenant="t")
                else:
                    await cache.delete(key, tenant="t")

        for round_ in range(3):
            await asyncio.gather(*(worker(c, round_ * 10 + i) for i, c in enumerate(caches)))
            await fence(all_hubs)  # every message sent has arrived
            for key in keys:
                raw = await all_hubs[0].gateway.call(
                    A, "GET", build_key("lt", "cache", "race", "t", key)
                )
                for cache in caches:
                    local = cache.peek(key, tenant="t")
                    if local is not None:
                        assert raw is not None, f"round {round_}: {key} is gone from Redis"
                        assert raw.endswith(f'"{local}"'.encode()), f"round {round_}: {key}"
        assert sum(c.stats.quiet_writes for c in caches) > 0  # fills told no one


async def drive_copies_off(cache: Cache) -> None:
    """Writes that replace different values (each a PUBLISH while copies are on) and reads
    that copies would not answer: copies cost more than they save."""
    for i in range(2 * WINDOW):
        await cache.set(f"w{i % 8}", i, tenant="t")
        await cache.get(f"cold{i}", tenant="t")


async def test_copies_that_do_not_pay_are_turned_off_and_back_on(lowtide_url: str) -> None:
    async with hubs(lowtide_url, 2) as (a, b):
        ca, cb = a.cache("churn"), b.cache("churn")
        assert ca.info()["copies"] == "on"
        await drive_copies_off(ca)
        info = ca.info()
        assert info["copies"] == "off", info
        assert info["copy_cost"] > info["copy_benefit"]
        health = next(c for c in a.health()["caches"] if c["name"] == "churn")
        assert health["copies"] == "off"  # said in health too
        # values written now are marked "no copies": nobody keeps one, so replacing one is free
        await ca.set("p", "v1", tenant="t")
        await listeners_caught_up([a, b])  # (its message, if any, heard before b reads)
        assert await cb.get("p", tenant="t") == "v1"
        assert await cb.get("p", tenant="t") == "v1"
        assert (cb.stats.private_reads, cb.stats.would_hits) == (2, 1)
        c0 = cache_cmds(a)
        await ca.set("p", "v2", tenant="t")
        assert changes(c0, cache_cmds(a)) == {"set": 1}  # no PUBLISH
        assert await cb.get("p", tenant="t") == "v2"  # b read through: never stale
        # reads that copies would answer make them pay again
        for _ in range(2 * WINDOW):
            assert await ca.get("p", tenant="t") == "v2"
        assert ca.info()["copies"] == "on"
        assert ca.info()["copy_switches"] == 2
        await ca.set("p", "v3", tenant="t")  # shared again: b may keep it
        await listeners_caught_up([a, b])
        assert await cb.get("p", tenant="t") == "v3"
        c1 = cache_cmds(b)
        assert await cb.get("p", tenant="t") == "v3"
        assert changes(c1, cache_cmds(b)) == {}


async def test_control_state_always_keeps_copies(lowtide_url: str) -> None:
    async with hubs(lowtide_url, 1) as (a,):
        cache = a.cache("pinned", adaptive=False)
        await drive_copies_off(cache)
        assert cache.info()["copies"] == "on"
        assert cache.info()["adaptive"] is False


async def test_a_key_of_another_type_is_overwritten_and_announced(
    lowtide_server: ValkeyServer, lowtide_url: str
) -> None:
    async with hubs(lowtide_url, 1) as (a,):
        cache = a.cache("profiles")
        rk = build_key("lt", "cache", "profiles", "t", "h")
        lowtide_server.command("HSET", rk, "f", "1")  # planted by another program
        c0 = cache_cmds(a)
        await cache.set("h", "v", tenant="t")  # SET ... GET is refused (WRONGTYPE): plain SET
        assert changes(c0, cache_cmds(a)) == {"set": 2, "publish": 1}
        assert await cache.get("h", tenant="t") == "v"
        lowtide_server.command("DEL", rk)
        lowtide_server.command("HSET", rk, "f", "1")
        c1 = cache_cmds(a)
        await cache.delete("h", tenant="t")  # GETDEL refused (WRONGTYPE): DEL, announced
        assert changes(c1, cache_cmds(a)) == {"getdel": 1, "del": 1, "publish": 1}
        assert lowtide_server.command("EXISTS", rk) == 0


async def test_without_getdel_in_the_acl_deletes_fall_back_to_del_and_publish(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    server.command("ACL", "SETUSER", "app", "on", ">pw", "~lt:*", "&*", "+@all", "-getdel")
    url = f"redis://app:pw@{server.host}:{server.port}/0"
    async with hubs(url, 1) as (a,):
        cache = a.cache("profiles")
        c0 = cache_cmds(a)
        await cache.delete("k", tenant="t")  # refused (NOPERM): from now on DEL + PUBLISH
        await cache.delete("k", tenant="t")
        assert changes(c0, cache_cmds(a)) == {"getdel": 1, "del": 2, "publish": 2}
