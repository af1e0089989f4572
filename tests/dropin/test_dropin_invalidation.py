"""What the drop-in client sees of writes, in each invalidation listener mode.

Tracking (RESP2 and RESP3 listener): every write by any client is pushed, so a plain redis-py
client's write is seen as soon as its push arrives. Pub/sub backplane: only writes made through
lowtide (a drop-in client or a cache on any hub) are published; a plain client's write is seen
once the copy's ``max_staleness`` has passed. Every mode: a process reads its own writes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lowtide.testing import changes, ledger_commands
from tests.deployments import KEYSPACE, PUBSUB, TRACKING_RESP2, TRACKING_RESP3, ListenerMode
from tests.dropin.helpers import dropin, plain
from tests.helpers import eventually, listeners_caught_up

MODES = [
    pytest.param(TRACKING_RESP2, id="tracking-resp2"),
    pytest.param(TRACKING_RESP3, id="tracking-resp3"),
    pytest.param(PUBSUB, id="pubsub"),
    pytest.param(KEYSPACE, id="keyspace"),
]


@pytest.mark.parametrize("mode", MODES)
async def test_a_plain_clients_write(lowtide_url: str, mode: ListenerMode) -> None:
    other = plain(lowtide_url)
    await other.set("d:k", "old")
    async with dropin(lowtide_url, hub_options=mode.options, max_staleness=1.0) as (lt, r):
        assert await r.get("d:k") == b"old"
        assert await r.get("d:k") == b"old"  # held: 0 commands
        before = ledger_commands(lt, component="app")
        await other.set("d:k", "new")
        written = time.monotonic()
        if mode.sees_foreign_writes:
            # pushed by the server: seen as soon as the push arrives (milliseconds)
            await eventually(lambda: r.lt_engine.info()["invalidations"] >= 1, within=1.0)
            assert await r.get("d:k") == b"new"
            assert time.monotonic() - written < 1.0
            assert changes(before, ledger_commands(lt, component="app")) == {"get": 1}
        else:
            # not published by a plain client: the held copy answers until it is older than
            # max_staleness (1 s here), then the next read fetches the new value
            assert await r.get("d:k") == b"old"
            assert changes(before, ledger_commands(lt, component="app")) == {}

            async def reads_new() -> bool:
                return await r.get("d:k") == b"new"

            await eventually(reads_new, within=3.0)
            assert time.monotonic() - written <= 1.0 + 0.5  # the bound, plus a loaded machine
            # every poll before that was answered from memory: one GET in all
            assert changes(before, ledger_commands(lt, component="app")) == {"get": 1}
    await other.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_writes_through_a_drop_in_client_reach_every_hub(
    lowtide_url: str, mode: ListenerMode
) -> None:
    async with (
        dropin(lowtide_url, hub_options=mode.options, instance="a") as (la, a),
        dropin(lowtide_url, hub_options=mode.options, instance="b") as (lb, b),
    ):
        await a.set("d:k", "1")
        # (each write's message heard before the other hub reads: one landing while its read
        # is in flight rightly keeps it from holding a copy, and then no later write of that
        # key would count as an invalidation)
        await listeners_caught_up([la, lb])
        assert await b.get("d:k") == b"1"
        assert await b.get("d:k") == b"1"  # held
        await a.set("d:k", "2")
        await eventually(lambda: b.lt_engine.info()["invalidations"] >= 1, within=1.0)
        assert await b.get("d:k") == b"2"
        await a.hset("d:h", "f", "1")  # any write command, not only SET
        await listeners_caught_up([la, lb])
        assert await b.hget("d:h", "f") == b"1"
        await a.hincrby("d:h", "f", 5)
        await eventually(lambda: b.lt_engine.info()["invalidations"] >= 2, within=1.0)
        assert await b.hget("d:h", "f") == b"6"
        published = ledger_commands(la, component="app").get("publish", 0)
    assert (published > 0) is mode.publishes


@pytest.mark.parametrize("mode", MODES)
async def test_a_process_reads_its_own_writes(lowtide_url: str, mode: ListenerMode) -> None:
    async with dropin(lowtide_url, hub_options=mode.options, decode_responses=True) as (_, r):
        await r.set("d:k", "0")
        for i in range(1, 60):
            # a read in flight while the write is sent must not leave the old value behind
            _, _, after = await asyncio.gather(r.get("d:k"), r.set("d:k", str(i)), r.get("d:k"))
            assert after in (str(i - 1), str(i))
            assert await r.get("d:k") == str(i)
            assert await r.mget("d:k", "d:none") == [str(i), None]


@pytest.mark.parametrize("mode", [MODES[0], MODES[1]])
async def test_a_read_racing_a_foreign_write_never_keeps_the_old_value(
    lowtide_url: str, mode: ListenerMode
) -> None:
    other = plain(lowtide_url)
    await other.set("d:k", "0")
    async with dropin(lowtide_url, hub_options=mode.options, decode_responses=True) as (lt, r):
        for i in range(1, 60):
            received = lt.invalidations.received
            await asyncio.gather(r.get("d:k"), other.set("d:k", str(i)))
            # once the push of the write has arrived, nothing older may be answered
            await eventually(lambda: lt.invalidations.received > received, within=2.0)  # noqa: B023
            assert await r.get("d:k") == str(i)
    await other.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_flushes_and_listener_loss_drop_what_is_held(
    lowtide_url: str, mode: ListenerMode
) -> None:
    other = plain(lowtide_url)
    async with dropin(lowtide_url, hub_options=mode.options) as (lt, r):
        await r.set("d:k", "1")
        assert await r.get("d:k") == b"1"
        await r.flushdb()  # through the drop-in client: drops everything held at once
        assert await r.get("d:k") is None
        received = lt.invalidations.received
        await other.set("d:k", "2")
        if mode.sees_foreign_writes:
            await eventually(lambda: lt.invalidations.received > received, within=1.0)
            assert await r.get("d:k") == b"2"
        if mode.flush_pushed and mode.sees_foreign_writes:
            received = lt.invalidations.received
            await other.flushall()  # by another client: the server pushes a flush
            await eventually(lambda: lt.invalidations.received > received, within=1.0)
            assert await r.get("d:k") is None
        # losing the listener demotes every copy: reads go to Redis until it is back
        await other.set("d:x", "1")
        assert await r.get("d:x") == b"1"
        before = ledger_commands(lt, component="app")
        lt.invalidations._lost("test", expected=True)
        assert await r.get("d:x") == b"1"
        assert changes(before, ledger_commands(lt, component="app")) == {"get": 1}
    await other.aclose()


async def test_expiry_is_seen(lowtide_url: str) -> None:
    other = plain(lowtide_url)
    await other.set("d:k", "v", px=150)
    async with dropin(lowtide_url) as (_, r):
        assert await r.get("d:k") == b"v"
        # the server expires the key and pushes its invalidation (active expiry)
        await eventually(lambda: r.lt_engine.info()["invalidations"] >= 1, within=3.0)
        assert await r.get("d:k") is None
    await other.aclose()
