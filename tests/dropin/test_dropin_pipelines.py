"""Pipelines and transactions of the drop-in client: redis-py's results, reads always sent
(never answered from process memory), and what they write is never read back stale."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis

from lowtide.testing import changes, ledger_commands
from tests.deployments import KEYSPACE, PUBSUB, TRACKING_RESP2, ListenerMode
from tests.dropin.helpers import dropin, plain
from tests.helpers import eventually

MODES = [
    pytest.param(TRACKING_RESP2, id="tracking"),
    pytest.param(PUBSUB, id="pubsub"),
    pytest.param(KEYSPACE, id="keyspace"),
]


@pytest.mark.parametrize("mode", MODES)
async def test_a_pipelines_writes_are_read_back(lowtide_url: str, mode: ListenerMode) -> None:
    async with dropin(lowtide_url, hub_options=mode.options, decode_responses=True) as (_, r):
        await r.set("d:k", "1")
        assert await r.get("d:k") == "1"
        for transaction in (False, True):
            async with r.pipeline(transaction=transaction) as p:
                p.get("d:k").incr("d:k").get("d:k").hset("d:h", "f", "v").hget("d:h", "f")
                got = await p.execute()
            assert got[0] in ("1", "2")
            assert (got[1], got[2]) == (int(got[0]) + 1, str(int(got[0]) + 1))
            assert got[3:] == [1 if not transaction else 0, "v"]
            assert await r.get("d:k") == got[2]  # not the copy held before the pipeline
            assert await r.hget("d:h", "f") == "v"


async def test_reads_inside_a_pipeline_are_sent_even_when_held(lowtide_url: str) -> None:
    # pub/sub mode does not hear a plain client's write: the held copy answers plain reads
    # (within max_staleness), but a pipeline always asks the server
    other = plain(lowtide_url)
    await other.set("d:k", "old")
    async with dropin(lowtide_url, hub_options=PUBSUB.options, decode_responses=True) as (lt, r):
        assert await r.get("d:k") == "old"
        await other.set("d:k", "new")
        assert await r.get("d:k") == "old"  # held, documented for pub/sub mode
        before = ledger_commands(lt, component="app")
        async with r.pipeline(transaction=False) as p:
            p.get("d:k")
            assert await p.execute() == ["new"]
        async with r.pipeline() as p:
            p.get("d:k")
            assert await p.execute() == ["new"]
        sent = changes(before, ledger_commands(lt, component="app"))
        assert sent == {"get": 2, "multi": 1, "exec": 1}
    await other.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_watch_transactions_read_the_server(lowtide_url: str, mode: ListenerMode) -> None:
    async with dropin(lowtide_url, hub_options=mode.options, decode_responses=True) as (_, r):
        await r.set("d:counter", "0")
        assert await r.get("d:counter") == "0"  # held

        async def bump(pipe: aredis.client.Pipeline) -> None:
            value = int(await pipe.get("d:counter") or 0)  # WATCH mode: sent at once
            pipe.multi()
            pipe.set("d:counter", value + 1)

        await asyncio.gather(*(r.transaction(bump, "d:counter") for _ in range(20)))
        assert await r.get("d:counter") == "20"


async def test_multi_exec_on_a_single_connection_client(lowtide_url: str) -> None:
    async with dropin(lowtide_url) as (_, r):
        await r.set("d:k", "1")
        assert await r.get("d:k") == b"1"
        one = r.client()
        assert await one.execute_command("MULTI") in (b"OK", True)
        await one.set("d:k", "2")
        assert await one.get("d:k") == b"QUEUED"  # inside MULTI: sent, never answered from L1
        assert await one.execute_command("EXEC") == [b"OK", b"2"]
        assert await r.get("d:k") == b"2"
        await one.aclose()


async def test_pipelined_writes_reach_other_hubs_in_pubsub_mode(lowtide_url: str) -> None:
    async with (
        dropin(lowtide_url, hub_options=PUBSUB.options, instance="a") as (la, a),
        dropin(lowtide_url, hub_options=PUBSUB.options, instance="b") as (_, b),
    ):
        await a.set("d:k", "1")
        assert await b.get("d:k") == b"1"
        async with a.pipeline() as p:
            p.set("d:k", "2").get("d:k")
            assert await p.execute() == [True, b"2"]  # the PUBLISH replies are not returned
        await eventually(lambda: b.lt_engine.info()["invalidations"] >= 1, within=1.0)
        assert await b.get("d:k") == b"2"
        assert ledger_commands(la, component="app")["publish"] == 2
