"""The Prometheus collector over a local hub's ledger: bounded tenants, series never decrease,
names by the conventions, the default registry and private ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lowtide import ConfigError, Lowtide
from lowtide.context import Attribution
from lowtide.integrations.prometheus import LowtideCollector, _Mirror, collectors
from lowtide.integrations.readout import NO_TENANT, OTHER, Family
from lowtide.ledger import OTHER_TENANT


def command_series(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for family in registry.collect():
        if family.name == "lowtide_redis_commands":
            for s in family.samples:
                out[s.labels["tenant"]] = s.value
    return out


def test_collector_bounds_tenants_and_never_decreases() -> None:
    lt = Lowtide(None, instance="c")
    registry = CollectorRegistry()
    LowtideCollector(lt, top_tenants=3).register(registry)

    def record(tenant: str | None, n: int) -> None:
        lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", tenant))] * n)

    for i in range(10):
        record(f"t{i}", 10 + i)
    record(None, 4)
    first = command_series(registry)
    assert set(first) == {"t9", "t8", "t7", OTHER, NO_TENANT}  # the heaviest three, the rest
    assert first[OTHER] == sum(10 + i for i in range(10))  # members start from zero
    assert first[NO_TENANT] == 4
    record("t0", 1000)  # a new heavy hitter cannot push a member out...
    record("t9", 5)
    second = command_series(registry)
    assert set(second) == {"t9", "t8", "t7", OTHER, NO_TENANT}
    assert second["t9"] == 5
    assert all(second[k] >= first[k] for k in first)  # ...and no series ever goes down
    assert sum(second.values()) == lt.ledger.total


def test_the_ledgers_overflow_row_is_never_a_member() -> None:
    lt = Lowtide(None)
    registry = CollectorRegistry()
    LowtideCollector(lt, top_tenants=5).register(registry)
    # the ledger counts tenants past its row bound under "~other": not a tenant of its own
    lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", OTHER_TENANT))] * 50)
    lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", "t1"))] * 2)
    series = command_series(registry)
    assert set(series) == {"t1", OTHER}
    assert series[OTHER] == 52


def test_names_follow_the_conventions() -> None:
    lt = Lowtide(None, instance="web-1")
    registry = CollectorRegistry()
    LowtideCollector(lt).register(registry)
    lt.ledger.record([("set", Attribution("cache", "lt:c:p:*", "t1"))])
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["lowtide_build_info"].samples[0].value == 1
    assert families["lowtide_redis_commands"].type == "counter"
    assert families["lowtide_redis_billed_commands"].type == "counter"
    assert families["lowtide_cache_size_bytes"].type == "gauge"
    assert families["lowtide_redis_command_duration_seconds"].type == "histogram"
    for f in families.values():
        assert f.name.startswith("lowtide_")
        for s in f.samples:
            assert "instance" not in s.labels  # the target label is Prometheus's
            assert "web-1" not in s.labels.values()
    # projections are left to PromQL (docs/observability.md)
    assert "per_day" not in text
    assert "usd" not in text


async def test_the_default_registry_works_and_aclose_unregisters() -> None:
    lt = Lowtide(None)
    collector = LowtideCollector(lt).register()  # prometheus_client.REGISTRY
    try:
        lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", None))] * 3)
        text = generate_latest(REGISTRY).decode()
        assert 'lowtide_redis_commands_total{command="get",component="cache"' in text
        assert "python_gc_objects_collected_total" in text  # the registry's own collectors
        assert collectors(lt) == [collector]
    finally:
        await collector.aclose()
    assert b"lowtide_" not in generate_latest(REGISTRY)
    assert collectors(lt) == []


def mirrored(metric: Any) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for fam in metric.collect()
        for s in fam.samples
        if not s.name.endswith("_created")
    }


def test_multiprocess_mirror_only_adds_increases() -> None:
    """Multiprocess mode writes counters by their increase since the last push: a ledger reset
    (a smaller value) starts over from there, never subtracts."""
    mirror = _Mirror()

    def push(n: float, mode: float) -> None:
        fams = [
            Family("redis_commands", "counter", "h", ("command",), samples=[(("get",), n)]),
            Family("mode", "gauge", "h", ("mode",), samples=[(("local",), mode)]),
        ]
        mirror.push(fams)

    push(3, 1)
    push(5, 1)
    assert mirrored(mirror._metrics["redis_commands"]) == {("get",): 5}
    push(1, 0)  # the ledger was reset
    push(3, 0)
    assert mirrored(mirror._metrics["redis_commands"]) == {("get",): 7}
    assert mirrored(mirror._metrics["mode"]) == {("local",): 0}


async def test_multiprocess_mode_allows_one_collector_per_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    lt = Lowtide(None)
    collector = LowtideCollector(lt)
    with pytest.raises(ConfigError, match="one LowtideCollector per hub"):
        LowtideCollector(lt)
    assert list(collector.collect()) == []  # the multiprocess collector reads the files
    await collector.aclose()
    LowtideCollector(Lowtide(None))  # another hub: fine


async def test_every_limiter_and_breaker_of_the_hub_is_exported_even_made_later() -> None:
    lt = Lowtide(None)
    registry = CollectorRegistry()
    collector = LowtideCollector(lt).register(registry)
    try:
        search = lt.rate_limiter("search", limit=5, per=60)
        crm = lt.circuit_breaker("crm")
        assert lt.limiters == (search,)
        assert lt.breakers == (crm,)
        await search.acquire("t1")
        text = generate_latest(registry).decode()
        assert 'limiter="search"' in text
        assert "lowtide_limiter_reserved_tokens_total" in text
        assert 'breaker="crm"' in text
        other = Lowtide(None).rate_limiter("elsewhere", limit=1, per=1)
        collector.watch(other, search)  # another hub's limiter joins; search stays once
        text = generate_latest(registry).decode()
        assert 'limiter="elsewhere"' in text
        assert text.count('lowtide_limiter_limit{limiter="search"') == 1
    finally:
        await collector.aclose()
