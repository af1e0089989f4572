"""Every command the drop-in client sends is in the ledger, and the ledger equals the server's
INFO commandstats exactly (handshakes, pipelines, transactions, scripts, errors included)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import redis.asyncio as aredis

from lowtide import tenant_scope
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.deployments import KEYSPACE, PUBSUB, TRACKING_RESP2, ListenerMode
from tests.dropin.helpers import dropin, plain

INCR_TWICE = "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[1])"


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(TRACKING_RESP2, id="tracking"),
        pytest.param(PUBSUB, id="pubsub"),
        pytest.param(KEYSPACE, id="keyspace"),
    ],
)
async def test_the_ledger_equals_the_server(
    lowtide_fresh_server: ValkeyServer, mode: ListenerMode
) -> None:
    server = lowtide_fresh_server
    before = server_commands(server)
    harness: Counter[str] = Counter({"info": 1})  # the INFO that read `before`
    other = plain(server.url)
    async with dropin(
        server.url, hub_options=mode.options, client_name="svc", decode_responses=True
    ) as (lt, r):
        with tenant_scope("t1"):
            for i in range(20):
                await r.set(f"d:{i}", i)
            for _ in range(3):
                for i in range(20):
                    assert await r.get(f"d:{i}") == str(i)
            await r.mget([f"d:{i}" for i in range(25)])
        await r.hset("d:h", mapping={"a": "1"})
        await r.hgetall("d:h")
        await r.hgetall("d:h")
        await r.set("other:x", "1")
        await r.get("other:x")
        # a pipeline and a transaction: every command inside counts, MULTI/EXEC too
        async with r.pipeline(transaction=False) as p:
            p.get("d:1").incr("d:n").expire("d:n", 10)
            await p.execute()
        async with r.pipeline() as p:
            p.incr("d:n").get("d:n")
            await p.execute()
        # WATCH + MULTI/EXEC through redis-py's transaction helper
        await r.transaction(lambda pipe: pipe.multi() or pipe.set("d:w", "1"), "d:w")
        # a script: EVALSHA fails with NOSCRIPT, redis-py loads it and runs it again
        script = r.register_script(INCR_TWICE)
        assert await script(keys=["d:s"]) == 2
        # the server also counts the two INCRs the script runs; no client can see those (the
        # documented exception: lowtide's own scripts report theirs, an application's cannot)
        harness["incr"] += 2
        # error replies: WRONGTYPE and a wrong arity
        with pytest.raises(aredis.ResponseError):
            await r.lpush("d:h", "x")
        with pytest.raises(aredis.ResponseError):
            await r.execute_command("GET")
        # a foreign write the listener hears of (pushed in tracking mode), then a re-read
        await other.set("d:1", "changed")
        harness["set"] += 1
        await asyncio.sleep(0.05)
        await r.get("d:1")
        # the server drops the client's connections; the pool reconnects (a new handshake)
        server.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        harness["client|kill"] += 1
        for _ in range(3):
            await asyncio.sleep(0)  # let the loop see the closed sockets
        await r.get("other:x")
        inside = lt.ledger.snapshot()
    await other.aclose()
    snap = lt.ledger.snapshot()
    assert snap.by_command == inside.by_command  # close sends nothing
    assert changes(before, server_commands(server), minus=harness) == snap.by_command
    # the parts a naive wrapper would miss
    app = ledger_commands(snap, component="app")
    assert (app["multi"], app["exec"], app["watch"]) == (2, 2, 1)
    assert (app["evalsha"], app["script|load"]) == (2, 1)
    assert ledger_commands(snap, component="connection").get("client|setname", 0) >= 2
    assert "hello" not in snap.by_command  # RESP2 by default: no HELLO
    assert not any(c.startswith("client|setinfo") for c in snap.by_command)
    # 20 x 3 reads of held keys cost nothing: one GET each at most (after its own write)
    assert ledger_commands(snap, component="app", tenant="t1").get("get", 0) <= 20
    assert (app.get("publish", 0) > 0) is mode.publishes
