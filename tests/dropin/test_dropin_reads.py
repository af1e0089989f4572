"""The drop-in client's cached reads: 0 commands after the first, redis-py's reply shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aredis

from lowtide import Lowtide, tenant_scope
from lowtide.dropin import DropInRedis
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.dropin.helpers import dropin, plain
from tests.helpers import eventually


async def seed(url: str) -> None:
    p = plain(url)
    await p.set("d:s", "v")
    await p.hset("d:h", mapping={"a": "1", "b": "2"})
    await p.sadd("d:set", "x", "y")
    await p.rpush("d:l", "1", "2", "3")
    await p.zadd("d:z", {"m": 1.5, "n": 2.0})
    await p.aclose()


READS: list[tuple[str, Any]] = [
    ("get", lambda r: r.get("d:s")),
    ("mget", lambda r: r.mget("d:s", "d:missing")),
    ("hget", lambda r: r.hget("d:h", "a")),
    ("hmget", lambda r: r.hmget("d:h", ["a", "b", "c"])),
    ("hgetall", lambda r: r.hgetall("d:h")),
    ("exists", lambda r: r.exists("d:s", "d:h", "d:nope")),
    ("smembers", lambda r: r.smembers("d:set")),
    ("sismember", lambda r: r.sismember("d:set", "x")),
    ("lrange", lambda r: r.lrange("d:l", 0, -1)),
    ("zscore", lambda r: r.zscore("d:z", "m")),
    ("zrange", lambda r: r.zrange("d:z", 0, -1, withscores=True)),
    ("strlen", lambda r: r.strlen("d:s")),
    ("llen", lambda r: r.llen("d:l")),
    ("zcard", lambda r: r.zcard("d:z")),
    ("hlen", lambda r: r.hlen("d:h")),
    ("type", lambda r: r.type("d:h")),
]


@pytest.mark.parametrize(
    ("decode", "protocol"),
    [(False, 2), (True, 2), (True, 3)],
    ids=["bytes", "decoded", "decoded-resp3"],
)
async def test_reads_of_unchanged_keys_cost_no_command_after_the_first(
    lowtide_fresh_server: ValkeyServer, decode: bool, protocol: int
) -> None:
    server = lowtide_fresh_server
    await seed(server.url)
    direct = aredis.Redis.from_url(
        server.url, protocol=protocol, driver_info=None, decode_responses=decode
    )
    async with dropin(server.url, decode_responses=decode, protocol=protocol) as (lt, r):
        for name, read in READS:
            expected = await read(direct)
            before = server_commands(server)
            answers = [await read(r) for _ in range(100)]
            sent = changes(before, server_commands(server), minus={"info": 1})
            sent.pop("hello", None)  # RESP3: the first connection's handshake (checked below)
            # one command reached the server for 100 reads; the rest came from L1 (EXISTS of 3
            # keys: one per key it did not hold, as a sum cannot be split; the GET of d:s
            # already told it that d:s exists)
            assert sum(sent.values()) == (2 if name == "exists" else 1), (name, sent)
            assert all(a == expected for a in answers), (name, answers[-1], expected)
            assert type(answers[-1]) is type(expected), name
        hits = ledger_commands(lt, component="app")
        handshake = ledger_commands(lt, component="connection")
    await direct.aclose()
    assert sum(hits.values()) == len(READS) + 1
    # RESP3 only when asked for: one HELLO per connection (the default sends none)
    assert set(handshake) == ({"hello"} if protocol == 3 else set())


async def test_answers_are_private_copies(lowtide_url: str) -> None:
    await seed(lowtide_url)
    async with dropin(lowtide_url, decode_responses=True) as (_, r):
        first = await r.lrange("d:l", 0, -1)
        first.append("mutated")
        h = await r.hgetall("d:h")
        h["zz"] = "mutated"
        assert await r.lrange("d:l", 0, -1) == ["1", "2", "3"]
        assert await r.hgetall("d:h") == {"a": "1", "b": "2"}


async def test_keys_outside_the_prefixes_always_go_to_redis(lowtide_url: str) -> None:
    p = plain(lowtide_url)
    await p.set("other:k", "1")
    async with dropin(lowtide_url) as (lt, r):
        for _ in range(5):
            assert await r.get("other:k") == b"1"
        assert ledger_commands(lt, component="app") == {"get": 5}
    await p.aclose()


async def test_mget_sends_only_the_keys_it_does_not_hold(lowtide_url: str) -> None:
    p = plain(lowtide_url)
    await p.mset({"d:a": "1", "d:b": "2", "d:c": "3"})
    async with dropin(lowtide_url, decode_responses=True) as (lt, r):
        assert await r.get("d:a") == "1"  # also answers MGET of d:a
        before = ledger_commands(lt, component="app")
        assert await r.mget(["d:a", "d:b", "d:c", "d:a"]) == ["1", "2", "3", "1"]
        assert changes(before, ledger_commands(lt, component="app")) == {"mget": 1}
        before = ledger_commands(lt, component="app")
        assert await r.mget("d:c", "d:b") == ["3", "2"]
        assert await r.get("d:b") == "2"  # an MGET element that is not nil answers GET
        assert await r.exists("d:a", "d:b") == 2
        assert changes(before, ledger_commands(lt, component="app")) == {}
    await p.aclose()


async def test_concurrent_misses_share_one_command(lowtide_url: str) -> None:
    p = plain(lowtide_url)
    await p.set("d:hot", "v")
    async with dropin(lowtide_url) as (lt, r):
        answers = await asyncio.gather(*(r.get("d:hot") for _ in range(50)))
        assert answers == [b"v"] * 50
        assert ledger_commands(lt, component="app") == {"get": 1}
    await p.aclose()


async def test_errors_are_redis_py_errors_and_are_not_held(lowtide_url: str) -> None:
    p = plain(lowtide_url)
    await p.hset("d:h", "a", "1")
    async with dropin(lowtide_url) as (lt, r):
        for _ in range(2):
            with pytest.raises(aredis.ResponseError, match="WRONGTYPE"):
                await r.get("d:h")
        assert ledger_commands(lt, component="app") == {"get": 2}
    await p.aclose()


async def test_it_is_a_redis_asyncio_client(lowtide_url: str) -> None:
    async with dropin(lowtide_url, decode_responses=True) as (_, r):
        assert isinstance(r, aredis.Redis)
        assert isinstance(r, DropInRedis)
        assert await r.ping() is True
        assert await r.set("d:x", "1") is True
        assert await r.incr("d:n") == 1
        one = r.client()  # redis-py's single-connection client keeps the engine
        assert isinstance(one, DropInRedis)
        assert await one.get("d:x") == "1"
        await one.aclose()
        assert await r.get("d:x") == "1"


async def test_commands_are_labelled_by_component_family_and_tenant(lowtide_url: str) -> None:
    async with dropin(lowtide_url) as (lt, r):
        with tenant_scope("t1"):
            await r.set("d:a", "1")
            await r.get("d:a")
            await r.get("d:a")  # from L1: not in the ledger
        await r.set("sessions:42:user", "x")
        await r.set("plain", "x")
        snap = lt.ledger.snapshot()
    assert ledger_commands(snap, component="app", family="d:*", tenant="t1") == {
        "set": 1,
        "get": 1,
    }
    assert ledger_commands(snap, component="app", family="sessions:*") == {"set": 1}
    # a key with no separator is never a label (it could be anything)
    assert ledger_commands(snap, component="app", family="*") == {"set": 1}
    assert lt.saved()["app"] == 1


async def test_a_client_made_after_start_restarts_the_listener_once(lowtide_url: str) -> None:
    other = plain(lowtide_url)
    await other.set("d:k", "1")
    async with Lowtide(lowtide_url) as lt:
        profiles = lt.cache("profiles")
        await profiles.set("u1", {"n": 1}, tenant="t1")
        assert await lt.ready(10)
        r = lt.redis(("d:",))
        assert "d:" in lt.invalidations.prefixes
        assert await lt.ready(10)  # re-subscribed with the new prefix, self-tested
        assert await r.get("d:k") == b"1"
        assert await r.get("d:k") == b"1"
        assert ledger_commands(lt, component="app") == {"get": 1}
        seen = r.lt_engine.info()["invalidations"]
        await other.set("d:k", "2")  # the server now pushes writes under the prefix
        await eventually(lambda: r.lt_engine.info()["invalidations"] > seen, within=1.0)
        assert await r.get("d:k") == b"2"
        assert await profiles.get("u1", tenant="t1") == {"n": 1}
    await other.aclose()
