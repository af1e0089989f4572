"""The Prometheus collector over a local hub's ledger: bounded tenants, series never decrease."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.integrations.prometheus import LowtideCollector


def test_collector_bounds_tenants_and_never_decreases() -> None:
    lt = Lowtide(None, instance="c")
    collector = LowtideCollector(lt, top_tenants=3)
    registry = CollectorRegistry()
    registry.register(collector)

    def record(tenant: str, n: int) -> None:
        lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", tenant))] * n)

    def series() -> dict[str, float]:
        out = {}
        for family in registry.collect():
            if family.name == "lowtide_redis_commands":
                for s in family.samples:
                    out[s.labels["tenant"]] = s.value
        return out

    for i in range(10):
        record(f"t{i}", 10 + i)
    first = series()
    assert set(first) == {"t9", "t8", "t7", "other"}  # the heaviest three, the rest summed
    assert first["other"] == sum(10 + i for i in range(10))  # members start from zero
    record("t0", 1000)  # a new heavy hitter cannot push a member out...
    record("t9", 5)
    second = series()
    assert set(second) == {"t9", "t8", "t7", "other"}
    assert second["t9"] == 5
    assert all(second[k] >= first[k] for k in first)  # ...and no series ever goes down
    assert sum(second.values()) == lt.ledger.total
    assert b"lowtide_redis_usd_per_month" in generate_latest(registry)
