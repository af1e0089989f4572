"""The hub: modes, kill switch, reconnection with backoff, health without secrets."""

from __future__ import annotations

import logging

import pytest

from lowtide import Lowtide, LowtideError, ManualClock, Mode, RedisUnavailable
from lowtide.context import Attribution
from lowtide.testing import ValkeyServer
from tests.helpers import eventually

A = Attribution("test", "-")


async def test_suspend_from_env_opens_no_connection(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    before = int(server.info("stats")["total_connections_received"])
    lt = Lowtide.from_env({"REDIS_URL": server.url, "SUSPEND_REDIS": "true"})
    async with lt:
        assert lt.mode is Mode.SUSPENDED
        health = lt.health()
        assert health["status"] == "suspended"
        assert health["reason"] == "env"
        with pytest.raises(RedisUnavailable):
            await lt.gateway.call(A, "GET", "k")
    after = int(server.info("stats")["total_connections_received"])
    assert after - before == 1  # only the harness's own second INFO connection
    assert lt.ledger.snapshot().total == 0


async def test_runtime_suspend_and_resume(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, fleet_switch=False) as lt:
        await lt.gateway.call(A, "SET", "k", "v")
        assert int(server.info("clients")["connected_clients"]) == 2  # hub + this INFO
        lt.suspend()
        assert lt.mode is Mode.SUSPENDED
        sent = lt.ledger.total
        with pytest.raises(RedisUnavailable) as info:
            await lt.gateway.call(A, "GET", "k")
        assert info.value.reason == "suspended"
        assert lt.ledger.total == sent  # refused without touching the network
        await eventually(lambda: int(server.info("clients")["connected_clients"]) == 1)
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, timeout=5)
        assert await lt.gateway.call(A, "GET", "k") == b"v"
        reasons = [c.reason for c in lt.history]
        assert reasons == ["start", "runtime", "resume", "recovered"]


async def test_resume_after_env_suspend_connects(lowtide_fresh_server: ValkeyServer) -> None:
    lt = Lowtide.from_env({"LOWTIDE_REDIS_URL": lowtide_fresh_server.url, "LOWTIDE_SUSPEND": "1"})
    async with lt:
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, timeout=5)
        await lt.gateway.call(A, "PING")


async def test_start_with_server_down_degrades_without_raising() -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    clock = ManualClock()
    async with Lowtide(url, clock=clock) as lt:
        assert lt.mode is Mode.DEGRADED
        assert lt.health()["status"] == "degraded"
        assert lt.health()["redis"]["last_error"]


async def test_outage_degrades_then_recovers_with_bounded_attempts() -> None:
    server = ValkeyServer().start()
    port = server.port
    clock = ManualClock()
    changes: list[str] = []
    try:
        # the hub's own reconnection only (no listener sleeping on the same clock)
        async with Lowtide(server.url, clock=clock, fleet_switch=False) as lt:
            lt.on_mode_change(lambda c: changes.append(f"{c.old}->{c.new}"))
            await lt.gateway.call(A, "SET", "k", "v")
            server.stop()
            with pytest.raises(RedisUnavailable):
                await lt.gateway.call(A, "GET", "k")
            assert lt.mode is Mode.DEGRADED
            # while degraded, calls fail fast without network I/O
            with pytest.raises(RedisUnavailable) as info:
                await lt.gateway.call(A, "GET", "k")
            assert info.value.reason == "degraded"
            attempts0 = lt.health()["redis"]["connect_attempts"]
            await eventually(lambda: clock.sleepers == 1)
            for _ in range(30):  # 30 seconds of outage, one second at a time
                clock.advance(1.0)
                await eventually(lambda: clock.sleepers == 1)
            attempts = lt.health()["redis"]["connect_attempts"] - attempts0
            assert 30 / 4.0 - 1 <= attempts <= 30  # never more than one per second
            server = ValkeyServer(port=port).start()
            clock.advance(4.0)  # at most reconnect_max later
            assert await lt.wait_for(Mode.DISTRIBUTED, timeout=5)
            assert await lt.gateway.call(A, "SET", "k", "v2") in (True, b"OK", "OK")
        assert changes == ["distributed->degraded", "degraded->distributed"]
    finally:
        server.stop()


async def test_passwords_never_reach_repr_health_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lowtide")
    with ValkeyServer(password="s3cr3t-pw") as server:
        good = f"redis://:s3cr3t-pw@{server.host}:{server.port}/0"
        async with Lowtide(good) as lt:
            assert lt.mode is Mode.DISTRIBUTED
            texts = [repr(lt), str(lt.health()), repr(lt.settings)]
        bad = f"redis://default:wrong-s3cr3t@{server.host}:{server.port}/0"
        async with Lowtide(bad) as lt2:
            assert lt2.mode is Mode.DEGRADED  # authentication failed
            texts += [repr(lt2), str(lt2.health()), repr(lt2.settings)]
    texts.append(caplog.text)
    for t in texts:
        assert "s3cr3t-pw" not in t
        assert "wrong-s3cr3t" not in t
    assert "***" in texts[1]


async def test_metrics_log_line_when_tracking_is_on(
    lowtide_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lowtide")
    clock = ManualClock()
    lt = Lowtide.from_env({"REDIS_URL": lowtide_url, "TRACK_REDIS_METRICS": "yes"}, clock=clock)
    async with lt:
        await lt.gateway.call(A, "GET", "k")
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(60)
        await eventually(lambda: "Redis Metrics" in caplog.text)
    line = next(r.getMessage() for r in caplog.records if "Redis Metrics" in r.getMessage())
    # the kill switch is read before the hub turns distributed and again once the listener is
    # subscribed (so a switch flipped in between is not missed): 2 GETs, then ours
    assert '"get": 3' in line
    assert '"test": 1' in line


async def test_close_is_idempotent_and_final(lowtide_url: str) -> None:
    lt = Lowtide(lowtide_url)
    await lt.start()
    await lt.close()
    await lt.close()
    with pytest.raises(LowtideError):
        await lt.start()


def test_constructor_validates_settings() -> None:
    from lowtide import ConfigError

    with pytest.raises(ConfigError):
        Lowtide("ftp://x")
    with pytest.raises(ConfigError):
        Lowtide("redis://h:1", default_ttl=-5)
