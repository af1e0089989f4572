"""The gateway's send observer (what the round-trip histogram and lowtide's own spans are made
from), on a real server: one event per round trip with its attribution, errors included; a
failing observer never reaches the caller; unsubscribing stops it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from lowtide import Lowtide, RedisCommandError
from lowtide.context import Attribution
from lowtide.integrations.prometheus import LowtideCollector
from lowtide.redis.gateway import Sent, observe_sends
from lowtide.testing import ledger_commands

CACHE = Attribution("cache", "lt:c:x:*", "t1")


async def test_every_round_trip_is_observed_once(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt, Lowtide(lowtide_url) as other:
        seen: list[Sent] = []
        stop = observe_sends(lambda s: seen.append(s) if s.ledger is lt.ledger else None)
        try:
            await lt.gateway.call(CACHE, "SET", "lt:c:x:t1:k", "v")
            assert await lt.gateway.call(CACHE, "GET", "lt:c:x:t1:k") == b"v"
            await lt.gateway.pipeline(CACHE, [("GET", "a"), ("GET", "b")])
            with pytest.raises(RedisCommandError):
                await lt.gateway.call(CACHE, "LPUSH", "lt:c:x:t1:k", "x")  # WRONGTYPE
            await other.gateway.call(CACHE, "GET", "k")  # another hub: its own ledger
        finally:
            stop()
        await lt.gateway.call(CACHE, "GET", "lt:c:x:t1:k")  # unsubscribed: not seen
    assert [s.command for s in seen] == ["set", "get", "pipeline", "lpush"]
    assert all(s.attribution == CACHE for s in seen)
    assert all(0 < s.seconds < 5 and s.start_ns > 0 for s in seen)
    assert [type(s.error).__name__ for s in seen] == ["NoneType"] * 3 + ["RedisCommandError"]


async def test_a_failing_observer_never_reaches_the_caller(
    lowtide_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(sent: Sent) -> None:
        raise RuntimeError("observer bug")

    async with Lowtide(lowtide_url) as lt:
        stop = observe_sends(boom)
        try:
            assert await lt.gateway.call(CACHE, "PING") is True
        finally:
            stop()
    assert "send observer failed" in caplog.text


async def test_the_histogram_counts_each_round_trip(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        registry = CollectorRegistry()
        collector = LowtideCollector(lt, buckets=(0.5, 5.0)).register(registry)
        for _ in range(7):
            await lt.gateway.call(CACHE, "GET", "lt:c:x:t1:k")
        count = registry.get_sample_value(
            "lowtide_redis_command_duration_seconds_count",
            {"component": "cache", "command": "get"},
        )
        inf = registry.get_sample_value(
            "lowtide_redis_command_duration_seconds_bucket",
            {"component": "cache", "command": "get", "le": "+Inf"},
        )
        assert count == inf == 7
        await collector.aclose()
        await lt.gateway.call(CACHE, "GET", "lt:c:x:t1:k")  # closed: no longer observed
        (hist,) = [
            m for m in collector.collect() if m.name == "lowtide_redis_command_duration_seconds"
        ]
        # (only the cache's GETs: on a loaded machine the hub's own background commands, a
        # listener reconnecting and its kill-switch read, may be observed meanwhile)
        counts = [
            s.value
            for s in hist.samples
            if s.name.endswith("_count") and s.labels == {"component": "cache", "command": "get"}
        ]
        assert counts == [7]


async def test_cache_reads_past_memory_are_timed_by_source_and_hits_are_not(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url) as lt:
        registry = CollectorRegistry()
        collector = LowtideCollector(lt, buckets=(0.5, 5.0)).register(registry)
        cache = lt.cache("timed")
        other = Lowtide(None).cache("elsewhere")  # another hub: not this collector's
        await other.get("k", tenant="t1")

        async def load() -> int:
            return 1

        for i in range(3):
            await cache.get_or_load(f"k{i}", load, tenant="t1")  # a miss: L2 read, then load
        for _ in range(50):
            await cache.get_or_load("k0", load, tenant="t1")  # hits: counted, not timed
        await cache.get("absent", tenant="t1")  # one more L2 read

        def count(source: str) -> float | None:
            return registry.get_sample_value(
                "lowtide_cache_read_duration_seconds_count",
                {"component": "cache", "cache": "timed", "source": source},
            )

        assert count("load") == 3
        # one observation per GET the cache sent (the ledger counts them; with CLIENT TRACKING
        # the load's own write comes back once and k0 is read again)
        gets = ledger_commands(lt, component="cache").get("get", 0)
        assert count("l2") == gets >= 4
        assert cache.stats.hits >= 49
        assert (
            registry.get_sample_value(
                "lowtide_cache_read_duration_seconds_count",
                {"component": "cache", "cache": "elsewhere", "source": "l2"},
            )
            is None
        )
        await collector.aclose()
