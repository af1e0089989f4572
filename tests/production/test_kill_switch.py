"""The kill switch under production conditions: counted by the server, not by lowtide."""

from __future__ import annotations

import asyncio

from lowtide import Lowtide, Mode
from lowtide.control import write_switch
from lowtide.redis.info import parse_commandstats
from lowtide.testing import ValkeyServer


def server_counts(server: ValkeyServer) -> dict[str, int]:
    return parse_commandstats(server.command("INFO", "commandstats"))


def data_commands(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands other than the harness's own INFO and the switch/listener's allowed traffic."""
    allowed = {"info", "ping", "get", "client|id", "client|tracking", "subscribe"}
    return {
        k: v - before.get(k, 0)
        for k, v in after.items()
        if v - before.get(k, 0) and k not in allowed
    }


async def test_a_hub_started_while_the_fleet_is_suspended_sends_no_data(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    async with Lowtide(url, fleet_switch=False) as operator:
        await write_switch(operator, suspend=True, reason="incident 7")
    before = server_counts(lowtide_fresh_server)
    async with Lowtide(url, instance="late") as lt:
        assert lt.mode is Mode.SUSPENDED
        assert lt.fleet_suspended
        cache = lt.cache("profiles")
        for i in range(7):
            await cache.set(f"k{i}", i, tenant="t1")
            assert await cache.get(f"k{i}", tenant="t1") == i  # local state
        await asyncio.sleep(0.3)
    after = server_counts(lowtide_fresh_server)
    assert data_commands(before, after) == {}


async def test_suspend_while_the_listener_connects_stops_every_command(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    for spins in range(10):  # suspend at a different point of the listener's handshake
        lt = Lowtide(url, instance=f"s{spins}", start_wait=0)
        await lt.start()
        for _ in range(spins):
            await asyncio.sleep(0)
        lt.suspend()
        await asyncio.sleep(0.05)  # commands written before suspend() returned have landed
        before = server_counts(lowtide_fresh_server)
        cache = lt.cache("profiles")
        await cache.set("k", 1, tenant="t1")
        await asyncio.sleep(0.5)
        after = server_counts(lowtide_fresh_server)
        await lt.aclose()
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        assert delta == {"info": 1}, spins  # only the harness's own INFO


async def test_a_listener_reconnecting_while_the_fleet_is_suspended_writes_nothing(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    async with (
        Lowtide(url, fleet_switch=False) as operator,
        Lowtide(url, instance="web-1") as lt,
    ):
        await write_switch(operator, suspend=True, reason="incident 8")
        for _ in range(200):
            if lt.fleet_suspended:
                break
            await asyncio.sleep(0.01)
        assert lt.fleet_suspended
        before = server_counts(lowtide_fresh_server)
        lowtide_fresh_server.command("CLIENT", "KILL", "TYPE", "pubsub")  # listener dropped
        await asyncio.sleep(2.5)  # it reconnects (backoff) and listens again
        after = server_counts(lowtide_fresh_server)
        assert data_commands(before, after) == {"client|kill": 1}
        await write_switch(operator, suspend=False)  # and the resume still reaches it
        assert await lt.wait_for(Mode.DISTRIBUTED, 6)
