"""The invalidation listener: pushes from any writer, race guard, flush on loss, self-test."""

from __future__ import annotations

import asyncio
import time

import pytest

from lowtide import Lowtide, ManualClock, Mode, build_key
from lowtide.context import Attribution
from lowtide.testing import FaultProxy, ValkeyServer, changes, ledger_commands, server_commands
from tests.helpers import eventually

A = Attribution("test", "-")


async def test_writes_by_any_client_are_pushed(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    seen: list[list[str] | None] = []
    async with Lowtide(server.url) as lt:
        inv = lt.invalidations
        inv.subscribe(seen.append)
        assert await inv.wait_healthy(5)
        assert lt.health()["invalidation"]["mode"] == "tracking"
        cache_key = build_key("lt", "cache", "profiles", "t1", "k")
        counter_key = build_key("lt", "quota", "usage", "t1", "w")
        await lt.gateway.call(A, "SET", cache_key, "v1")  # our own write
        server.command("SET", cache_key, "v2")  # another program (redis-cli, another service)
        server.command("INCR", counter_key)  # not a tracked prefix: no message
        await eventually(lambda: sum(1 for s in seen if s and cache_key in s) >= 2)
        assert not any(s and counter_key in s for s in seen)
        server.command("FLUSHALL")
        await eventually(lambda: None in seen)


async def test_race_guard_discards_a_fill_overtaken_by_an_invalidation(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        inv = lt.invalidations
        assert await inv.wait_healthy(5)
        key = build_key("lt", "cache", "n", "t1", "k")
        token = inv.begin(key)
        value = await lt.gateway.call(A, "GET", key)  # the read is in flight...
        server.command("SET", key, "newer")  # ...and a write lands before we store it
        before = inv.received
        await eventually(lambda: inv.received > before)
        assert value is None
        assert inv.valid(key, token) is False
        token2 = inv.begin(key)
        assert await lt.gateway.call(A, "GET", key) == b"newer"
        assert inv.valid(key, token2) is True  # nothing happened in between


async def test_listener_loss_flushes_and_recovers(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    seen: list[list[str] | None] = []
    clock = ManualClock()
    async with Lowtide(server.url, clock=clock) as lt:
        inv = lt.invalidations
        inv.subscribe(seen.append)
        assert await inv.wait_healthy(5)
        key = build_key("lt", "cache", "n", "t1", "k")
        token = inv.begin(key)
        server.command("CLIENT", "KILL", "TYPE", "pubsub")  # the listener's connection dies
        await eventually(lambda: not inv.healthy)
        assert None in seen  # flushed
        assert inv.valid(key, token) is False  # a read begun before the loss is discarded
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(4.0)
        assert await inv.wait_healthy(5)
        server.command("SET", key, "x")
        await eventually(lambda: any(s and key in s for s in seen))


async def test_suspend_flushes_and_resume_resubscribes(lowtide_fresh_server: ValkeyServer) -> None:
    seen: list[list[str] | None] = []
    async with Lowtide(lowtide_fresh_server.url) as lt:
        inv = lt.invalidations
        inv.subscribe(seen.append)
        assert await inv.wait_healthy(5)
        lt.suspend()
        assert not inv.healthy
        assert seen[-1] is None
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5)
        assert await inv.wait_healthy(5)


async def test_listener_commands_are_in_the_ledger(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    before = server_commands(server)
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        assert lt.switch is not None
        await eventually(lambda: lt.switch is not None and lt.switch.checks >= 1)
        snap = lt.ledger.snapshot()
    # minus the harness's own INFO that read `before`
    assert changes(before, server_commands(server), minus={"info": 1}) == snap.by_command
    assert snap.by_command["client|tracking"] == 1
    assert snap.by_command["subscribe"] == 1
    assert snap.by_command["client|id"] == 1
    assert snap.by_command["set"] == 1  # the self-test probe


@pytest.mark.parametrize("components", [("cache",), ("cache", "tenants", "breaker", "control")])
async def test_prefixes_are_narrow(lowtide_url: str, components: tuple[str, ...]) -> None:
    from lowtide.invalidation import Invalidations

    async with Lowtide(lowtide_url) as lt:
        inv = Invalidations(lt, components=components)
        assert inv.prefixes == [f"lt:{c}:" for c in ("c", "t", "b", "x")[: len(components)]]
        await inv.aclose()


async def test_resp3_listener_path(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    seen: list[list[str] | None] = []
    async with Lowtide(server.url, listener_resp3=True) as lt:
        inv = lt.invalidations
        inv.subscribe(seen.append)
        assert await inv.wait_healthy(5)  # the self-test passed over push frames
        assert lt.health()["invalidation"]["mode"] == "tracking"
        snap = lt.ledger.snapshot()
        assert snap.by_command.get("hello", 0) >= 1  # the RESP3 handshake is counted
        assert "subscribe" not in snap.by_command  # no pub/sub in RESP3 mode
        key = build_key("lt", "cache", "profiles", "t1", "k")
        server.command("SET", key, "v")
        await eventually(lambda: any(s and key in s for s in seen))
        server.command("FLUSHALL")
        await eventually(lambda: None in seen)
        before = inv.received
        await eventually(lambda: inv.received >= before)  # keepalive PONGs are not messages
        # the cache over this listener: tests/test_cache_contract.py, mode tracking-resp3


async def test_a_busy_listener_sends_no_keepalive_ping_and_a_quiet_one_does(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    lt = Lowtide(server.url)
    lt.invalidations.keepalive = 0.2  # before start: the listener's first period uses it
    async with lt:
        assert await lt.invalidations.wait_healthy(5)
        key = build_key("lt", "cache", "n", "t1", "k")
        pings = lambda: ledger_commands(lt, component="invalidation").get("ping", 0)  # noqa: E731
        before = pings()
        for i in range(40):  # 2 s of pushes, one every 50 ms: ten keepalive periods
            server.command("SET", key, str(i))
            await asyncio.sleep(0.05)
        assert pings() == before  # every period heard a push: no PING
        await eventually(lambda: pings() >= before + 2)  # quiet: PINGs again
        assert lt.invalidations.healthy


async def test_a_half_open_listener_is_found_within_three_keepalive_periods(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    server, proxy = proxied
    lt = Lowtide(proxy.url)
    lt.invalidations.keepalive = 0.2
    async with lt:
        assert await lt.invalidations.wait_healthy(5)
        seen: list[list[str] | None] = []
        lt.invalidations.subscribe(seen.append)
        key = build_key("lt", "cache", "n", "t1", "k")
        for i in range(10):  # busy: the listener sends no PING
            server.command("SET", key, str(i))
            await asyncio.sleep(0.05)
        proxy.blackhole()  # the peer goes away without closing anything
        lost = time.monotonic()
        await eventually(lambda: None in seen, within=5)
        assert time.monotonic() - lost < 3 * 0.2 + 0.5  # three periods (and a scheduling margin)
        assert not lt.invalidations.healthy
