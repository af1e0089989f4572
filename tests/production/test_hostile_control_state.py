"""Hostile control state on a real server (issue 19, item 4): breaker states, limiter penalties,
counters and configurations, the kill switch, heartbeats, periodic jobs, fleet snapshots.

Every value planted (with the harness's raw client) is checked before use; bad state is counted
and ignored, never an exception to callers, never a dead background task.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from lowtide import (
    CircuitOpen,
    Lowtide,
    Mode,
    ModeChange,
    build_key,
)
from lowtide.cache.envelope import unwrap, wrap
from lowtide.control import MAX_REASON
from lowtide.fleet import MAX_FLEET_SIZE
from lowtide.fleetview import read_fleet
from lowtide.limiter.core import window_index
from lowtide.periodic import Periodic
from lowtide.testing import ValkeyServer
from tests.helpers import eventually, fail
from tests.production.hostile import CODEC, plant

# -- item 4: wrong-typed control state ----------------------------------------------------------
FAR = 1e18  # a deadline no breaker or penalty can have


@pytest.mark.parametrize(
    "planted",
    [
        {"until": "soon"},
        [1],
        None,
        "open",
        {"until": FAR},
        {"until": 1e300},
        {"until": -5},
        {"until": True},
        {"gen": 1},
        {"until": 0, "gen": "x"},
        {"until": 0, "gen": 10**30},
        {"until": 0, "opens": 2.5},
        {"until": 0, "opens": -1},
        {"forced": "maybe"},
        {"forced": True},
        {"forced": ["open"]},
        {"forced": "open", "until": "later"},
        {"forced": "open", "until": FAR},  # further ahead than any duration lowtide accepts
        {"forced": "closed", "gen": -1},
        b'j{"until": NaN}',
        b"\x80\x04pickle",
        "x" * 10_000,  # over the state cache's 256 bytes
        ("hash",),  # WRONGTYPE
    ],
    ids=repr,
)
async def test_bad_breaker_state_is_no_fleet_state_and_never_raises(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        breaker = lt.circuit_breaker("crm", min_calls=5, open_for=1.0)
        rk = build_key("lt", "breaker", "crm", "t1", "state")
        received = lt.invalidations.received
        if isinstance(planted, bytes):
            server.command("SET", rk, wrap(planted, 0))
        elif isinstance(planted, tuple):
            server.command("HSET", rk, "until", "1")
        else:
            plant(server, rk, planted)
        await eventually(lambda: lt.invalidations.received > received)
        for _ in range(3):
            async with breaker.guard("t1"):
                pass  # runs: the planted value is no fleet state
            assert breaker.state("t1") == "closed"
        assert await breaker.fleet_state("t1") is None
        if planted is not None:  # a JSON null reads as "no value", like no key at all
            assert breaker.info()["bad_state"] >= 1
        assert breaker.info()["rejected"] == 0
        # the breaker still works: local failures trip it, and its own state replaces the bad one
        await fail(breaker, "t1", 5)
        assert breaker.state("t1") == "open"
        with pytest.raises(CircuitOpen):
            async with breaker.guard("t1"):
                pass
        if not isinstance(planted, tuple):
            assert (await breaker.fleet_state("t1") or {}).get("opens") == 0


async def test_a_well_formed_fleet_state_within_bounds_is_still_adopted(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        await lt.sync_server_clock()
        breaker = lt.circuit_breaker("crm", open_for=10.0)  # max_open: 100 s
        now = lt.server_time()
        plant(server, build_key("lt", "breaker", "crm", "t1", "state"), {"until": now + 50})
        with pytest.raises(CircuitOpen) as info:
            async with breaker.guard("t1"):
                pass
        assert 45 < info.value.retry_after <= 50
        assert breaker.state("t1") == "open"
        plant(server, build_key("lt", "breaker", "crm", "t2", "state"), {"until": now + 500})
        async with breaker.guard("t2"):
            pass  # 500 s ahead is more than max_open (+ a minute): ignored
        assert breaker.info()["bad_state"] == 1


def penalty_key(limiter: str, tenant: str) -> str:
    return build_key("lt", "control", f"{limiter}.penalty", tenant, "until")


@pytest.mark.parametrize(
    "planted",
    ["soon", FAR, "far+2h", True, [1], {"until": 1}, b"\x80garbage", ("hash",), "x" * 1000],
    ids=repr,
)
async def test_bad_penalties_are_ignored_and_counted(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        await lt.sync_server_clock()
        limiter = lt.rate_limiter("crm", 5, 60.0)  # max_penalty: 3600 s
        assert limiter.max_penalty == 3600.0
        rk = penalty_key("crm", "t1")
        if planted == "far+2h":
            planted = lt.server_time() + 7200
        if isinstance(planted, bytes):
            server.command("SET", rk, wrap(planted, 0))
        elif isinstance(planted, tuple):
            server.command("HSET", rk, "until", "1")
        else:
            plant(server, rk, planted)
        decisions = [await limiter.acquire("t1") for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2  # the limit, as usual
        assert max(d.retry_after for d in decisions) <= 60.0
        assert limiter.info()["bad_penalties"] >= 1
        await limiter.prefetch("t1")  # never raises either


async def test_a_penalty_is_at_most_max_penalty_written_or_read(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        await lt.sync_server_clock()
        limiter = lt.rate_limiter("crm", 5, 1.0, max_penalty=120.0)
        plant(server, penalty_key("crm", "t1"), lt.server_time() + 100)  # within bounds
        decision = await limiter.acquire("t1")
        assert not decision.allowed
        assert 95 < decision.retry_after <= 100
        await limiter.penalize("t2", 86_400.0)  # a provider's Retry-After of a day
        assert 0 < server.command("PTTL", penalty_key("crm", "t2")) <= 120_000
        decision = await limiter.acquire("t2")
        assert not decision.allowed
        assert decision.retry_after <= 120.0
        assert limiter.info()["bad_penalties"] == 0


@pytest.mark.parametrize("invalidation", ["auto", "ttl"])  # heard, or not
@pytest.mark.parametrize("planted", [b"abc", b"-1000000", b"9223372036854775807", ("other type",)])
async def test_bad_counters_never_raise_and_never_admit_more_than_the_limit(
    lowtide_fresh_server: ValkeyServer, planted: object, invalidation: str
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, invalidation=invalidation) as lt:
        if invalidation != "ttl":
            assert await lt.invalidations.wait_healthy(5)
        await lt.sync_server_clock()
        limiter = lt.rate_limiter("crm", 5, 60.0, fleet_size=1)
        w = window_index(lt.server_time(), 60.0)
        for index in (w, w + 1):  # this window and the next (a test near a window's end)
            rk = build_key("lt", "limiter", "crm", "t1", f"w{index}")  # a window's counter
            if isinstance(planted, tuple):
                server.command("HSET", rk, "f", "1")  # not a string: WRONGTYPE
            else:
                server.command("SET", rk, planted)
        allowed = sum([(await limiter.acquire("t1")).allowed for _ in range(20)])
        assert allowed <= 5
        assert limiter.info()["bad_state"] >= 1


@pytest.mark.parametrize(
    "planted",
    [
        b"zzz",
        b"1e300",
        b"v1;1e300;0",
        b"v1;-1e300;1e300",
        b"v1;5;0;x,1e300,5,1e300;y,5,1e300,1",
        ("hash",),
    ],
)
async def test_bad_token_bucket_state_never_raises_nor_blocks_for_ever(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        limiter = lt.rate_limiter("crm", 5, 60.0, algorithm="token_bucket", fleet_size=1)
        rk = build_key("lt", "limiter", "crm", "t1", "rates")
        if isinstance(planted, tuple):
            server.command("HSET", rk, "n", "1")
        else:
            server.command("SET", rk, planted)
        decisions = [await limiter.acquire("t1") for _ in range(20)]
        assert sum(d.allowed for d in decisions) <= 5
        assert max(d.retry_after for d in decisions) <= 60.0


@pytest.mark.parametrize(
    "planted", [b"garbage", "fixed_window/0/60.0", "fixed_window/1_0/60.0", [1], ("hash",)]
)
async def test_a_bad_stored_limiter_configuration_is_overwritten(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        rk = build_key("lt", "control", "crm.config", None, "config")
        if isinstance(planted, bytes):
            server.command("SET", rk, wrap(planted, 0))
        elif isinstance(planted, tuple):
            server.command("HSET", rk, "n", "1")
        else:
            plant(server, rk, planted)
        limiter = lt.rate_limiter("crm", 5, 60.0)
        assert (await limiter.acquire("t1")).allowed
        info = limiter.info()
        assert (info["enforced_limit"], info["config_conflict"], info["bad_config"]) == (5, None, 1)
        assert unwrap(server.command("GET", rk))[1] == CODEC.encode("fixed_window/5/60.0")


SWITCH = "lt:x:switch::fleet"


@pytest.mark.parametrize(
    "planted",
    [
        b"garbage",
        b"[1]",
        b'"suspended"',
        b"null",
        b'{"state": "active"}',
        b'{"state": ["suspended"]}',
        b"[" * 100_000,
        b'{"state": "suspended", "pad": "' + b"x" * 5000 + b'"}',  # over 4 KiB
        ("hash",),
    ],
    ids=lambda v: repr(v)[:40],
)
async def test_a_switch_value_that_is_no_well_formed_suspension_is_ignored(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        switch = lt.switch
        assert switch is not None
        checks = switch.checks
        if isinstance(planted, tuple):
            server.command("HSET", SWITCH, "state", "suspended")
        else:
            server.command("SET", SWITCH, planted)
        server.command("PUBLISH", "lt:invalidate", SWITCH)  # as lowtide suspend does
        await eventually(lambda: switch.checks > checks)
        await asyncio.sleep(0.1)
        assert lt.mode is Mode.DISTRIBUTED
        assert switch.invalid >= 1
        assert await switch.suspension() is None
        # a hub started now is not suspended by it either
        async with Lowtide(server.url, instance="late") as late:
            assert late.mode is Mode.DISTRIBUTED


async def test_garbage_over_a_suspension_resumes_and_the_reason_cannot_forge_log_lines(
    lowtide_fresh_server: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = lowtide_fresh_server
    changes: list[ModeChange] = []
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        lt.on_mode_change(changes.append)
        reason = "incident 7\n2024-01-01 INFO lowtide: all good\x1b[2J" + "!" * 1000
        with caplog.at_level(logging.INFO, "lowtide"):
            server.command(
                "SET", SWITCH, json.dumps({"state": "suspended", "reason": reason, "at": 1.0})
            )
            await eventually(lambda: lt.mode is Mode.SUSPENDED)
        detail = changes[-1].detail
        assert detail.startswith("incident 7?2024-01-01 INFO")
        assert detail.isprintable()
        assert len(detail) == MAX_REASON
        assert not any("\n" in r.getMessage() for r in caplog.records)
        assert lt.switch is not None
        assert lt.switch.state is not None
        assert lt.switch.state["reason"] == detail
        server.command("SET", SWITCH, b"\x00not json")  # a stray write: read as off
        await eventually(lambda: lt.mode is Mode.DISTRIBUTED)
        assert lt.switch.invalid == 1


@pytest.mark.parametrize("planted", [b"\xff" * 16, b"\x27\x11" * 8, ("hash",)], ids=repr)
async def test_bad_heartbeat_counts_never_become_the_fleet_size(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        fleet = lt.fleet
        # every slot of the ring holds 65,535 or 10,001 (over MAX_FLEET_SIZE), or the key is
        # a hash (WRONGTYPE)
        key = build_key("lt", "fleet", "hb", None, f"ring.{fleet.interval:g}")
        if isinstance(planted, tuple):
            server.command("HSET", key, "n", "1")
        else:
            server.command("SET", key, planted)
        size = await fleet.beat()
        assert size == fleet.size
        assert 1 <= size <= MAX_FLEET_SIZE
        assert fleet.bad_heartbeats >= 1
        assert size <= 2  # at most this hub's own beat (when the planted key was usable)


async def test_a_periodic_job_outlives_any_exception_from_a_tick(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    class Flaky(Periodic):
        def __init__(self, hub: Lowtide) -> None:
            super().__init__(hub, 0.01)
            self.ticks = 0

        async def tick(self) -> None:
            self.ticks += 1
            if self.ticks <= 3:
                raise ValueError("invalid literal for int() with base 10: b'text\\nforged'")

    async with Lowtide(lowtide_fresh_server.url) as lt:
        job = Flaky(lt)
        job.start()
        try:
            await eventually(lambda: job.ticks >= 6)
            assert job.failures == 3
        finally:
            await job.aclose()


async def test_malformed_fleet_snapshots_are_skipped_and_counted(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    bad = [
        b"garbage",
        b"[1]",
        b'{"instance": 5}',
        b'{"instance": "x", "billed_per_day": "lots"}',
        b'{"instance": "x", "billed_per_day": -1}',
        b'{"instance": "x", "by_family": [1]}',
        b'{"instance": "x", "saved": {"cache": "many"}}',
        b"[" * 100_000,
        b'{"instance": "' + b"x" * (2 << 20) + b'"}',
    ]
    for i, raw in enumerate(bad):
        server.command("SET", f"lt:m:snap::evil{i}", raw)
    server.command("HSET", "lt:m:snap::hash", "a", "1")  # MGET answers nil for it
    spoof = {"instance": "spoof", "billed_per_day": 1e6, "extra": {"ignored": True}}
    server.command("SET", "lt:m:snap::spoof", json.dumps(spoof))
    async with (
        Lowtide(server.url, instance="web-1", fleet_view=True) as a,
        Lowtide(server.url, instance="reader") as reader,
    ):
        assert a.publisher is not None
        await a.publisher.publish()
        stats: dict[str, int] = {}
        snaps = await read_fleet(reader, stats=stats)
        assert [s["instance"] for s in snaps] == ["spoof", "web-1"]  # busiest first
        assert "extra" not in snaps[0]
        assert snaps[0]["by_family"] == {}  # missing tables at their zero value
        assert stats == {"snapshots": 2, "malformed": len(bad), "left_out": 0}
