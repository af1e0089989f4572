"""The ledger's per-command totals equal the server's INFO commandstats delta, exactly."""

from __future__ import annotations

import asyncio

import pytest

from lowtide import Lowtide, RedisCommandError
from lowtide.context import Attribution
from lowtide.ledger import billing_profile
from lowtide.redis import Script
from lowtide.testing import ValkeyServer, changes, server_commands

INCR_AND_EXPIRE = Script.from_package("selftest_counter")


async def test_mixed_workload_reconciles_exactly(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    before = server_commands(server)
    harness = {"info": 1}  # the INFO that read `before`

    async with Lowtide(server.url) as lt:
        gw = lt.gateway
        a = Attribution("test", "lt:z:mixed:*", "t1")
        b = Attribution("other", "lt:z:other:*", "t2")
        for i in range(40):
            await gw.call(a, "SET", f"k{i}", i)
        for i in range(55):
            await gw.call(b, "GET", f"k{i}")
        await gw.call(a, "MGET", "k1", "k2", "k3")
        # a pipeline and a transaction: every command inside counts, MULTI/EXEC too
        await gw.pipeline(a, [("GET", "k1"), ("INCR", "n"), ("EXPIRE", "n", 10)])
        await gw.pipeline(b, [("INCR", "n"), ("GET", "n")], transaction=True)
        # a script: first EVALSHA fails with NOSCRIPT, EVAL loads it; inner calls reported
        assert await gw.run_script(a, INCR_AND_EXPIRE, ["s"], [2]) == 2
        assert await gw.run_script(a, INCR_AND_EXPIRE, ["s"], [2]) == 4
        # error replies: WRONGTYPE (failed call) and a wrong arity (rejected call)
        with pytest.raises(RedisCommandError) as wrongtype:
            await gw.call(a, "LPUSH", "k1", "x")
        assert wrongtype.value.code == "WRONGTYPE"
        with pytest.raises(RedisCommandError):
            await gw.call(a, "GET")
        # a container command in server naming
        await gw.call(a, "CONFIG GET", "maxmemory")
        # the server drops our connections; the pool reconnects on its own
        server.command("CLIENT", "KILL", "TYPE", "normal")
        harness["client|kill"] = 1
        for _ in range(3):
            await asyncio.sleep(0)  # let the loop see the closed sockets
        assert await gw.call(a, "GET", "k1") == b"1"
        snap_inside = lt.ledger.snapshot()
    snap = lt.ledger.snapshot()

    assert snap.by_command == snap_inside.by_command  # close sends nothing
    assert changes(before, server_commands(server), minus=harness) == snap.by_command
    # spot-check the parts a naive wrapper would miss
    assert snap.by_command["multi"] == 1
    assert snap.by_command["exec"] == 1
    assert snap.by_command["incrby"] == 2  # inside the script
    assert snap.by_command["pexpire"] == 1
    assert snap.by_command["evalsha"] == 2
    assert snap.by_command["eval"] == 1
    assert snap.by_command["config|get"] == 1
    assert snap.script_inner == 3
    assert snap.by_component["other"] == 55 + 4  # GETs + MULTI, INCR, GET, EXEC
    assert snap.by_tenant["t2"] == 55 + 4
    assert snap.by_family["lt:z:other:*"] == 55 + 4
    # the start-up PING, INFO cluster (detection) and TIME (the server clock, for expiries)
    assert snap.by_component["hub"] == 3


async def test_handshake_with_password_and_db_is_counted() -> None:
    with ValkeyServer(password="hunter2") as server:
        before = server_commands(server)  # AUTH + INFO
        url = f"redis://:hunter2@{server.host}:{server.port}/3"
        async with Lowtide(url, fleet_switch=False) as lt:
            await lt.gateway.call(Attribution("test", "-"), "SET", "a", "1")
            snap = lt.ledger.snapshot()
        after = server_commands(server)
    # the first reading's INFO is counted after it ran; the second's AUTH before INFO ran
    assert changes(before, after, minus={"auth": 1, "info": 1}) == snap.by_command
    assert snap.by_command["auth"] == 1
    assert snap.by_command["select"] == 1
    assert snap.by_component["connection"] == 2
    assert "hello" not in snap.by_command  # RESP2: no HELLO
    assert not any(c.startswith("client|") for c in snap.by_command)  # no SETINFO/SETNAME


async def test_upstash_profile_bills_by_its_rules(lowtide_fresh_server: ValkeyServer) -> None:
    # Valkey rejects the Upstash-only script shebang, so run as "redis" and bill the same
    # counts under the upstash profile (a Global database with one read region).
    async with Lowtide(lowtide_fresh_server.url, read_regions=1, fleet_switch=False) as lt:
        a = Attribution("test", "-")
        await lt.gateway.call(a, "SET", "k", "v")  # write: 1 + 1 read region
        await lt.gateway.call(a, "GET", "k")  # read: 1
        await lt.gateway.call(a, "INFO", "server")  # free
        await lt.gateway.run_script(a, INCR_AND_EXPIRE, ["s"], [1])
        snap = lt.ledger.snapshot("upstash")
        redis_view = lt.ledger.snapshot()
    # PING and INFO cluster at start free, TIME at start 1; SET 2; GET 1; INFO 0; EVALSHA 1 +
    # EVAL 1 + INCRBY 2 + PEXPIRE 2
    assert snap.billed == 1 + 2 + 1 + 0 + 1 + 1 + 2 + 2
    assert snap.total == 3 + 1 + 1 + 1 + 2 + 2
    assert redis_view.billed == redis_view.total
    # priced on upstash, not on redis (no per-month projection yet: under a minute of counting)
    assert (snap.usd_per_month, redis_view.usd_per_month) == (None, None)
    assert billing_profile("upstash").usd(snap.billed) > 0
    assert billing_profile("redis").usd(redis_view.billed) == 0.0


async def test_upstash_script_shebang_is_rejected_by_plain_servers(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # why the shebang is added only for provider="upstash": plain servers refuse it
    async with Lowtide(lowtide_fresh_server.url, provider="upstash") as lt:
        with pytest.raises(RedisCommandError, match="allow-key-locking"):
            await lt.gateway.run_script(Attribution("test", "-"), INCR_AND_EXPIRE, ["s"], [1])
    assert INCR_AND_EXPIRE.body(upstash=True).startswith("#!lua flags=allow-key-locking")
    assert not INCR_AND_EXPIRE.body(upstash=False).startswith("#!")
