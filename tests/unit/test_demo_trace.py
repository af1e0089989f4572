"""The demo's seeded trace, with no server."""

from __future__ import annotations

from lowtide.demo.bound import lower_bound
from lowtide.demo.trace import DemoConfig, generate


def test_trace_is_calibrated_and_seeded() -> None:
    cfg = DemoConfig(seconds=60, warmup=0)
    a, b = generate(cfg), generate(cfg)
    assert a.events == b.events  # one seeded trace drives every strategy
    kinds = {
        k: sum(1 for e in a.events if e.kind == k) for k in ("read", "write", "webhook", "call")
    }
    cache_ops = kinds["read"] + kinds["write"]
    naive_gets = 2 * cache_ops + kinds["webhook"] + 2 * kinds["call"]
    assert 1300 < naive_gets < 1750  # ~1,525 GETs in one minute: the incident's 2.2M/day
    assert cfg.naive_gets_per_min == 1525
    assert lower_bound(a.events, cfg, "tracking").per_day < naive_gets * 1440


def test_time_compression_divides_every_period_by_one_factor() -> None:
    assert DemoConfig().time_scale == 20
    assert DemoConfig(scale=10).time_scale == 2
    assert DemoConfig(scale=100).time_scale == 1
    assert DemoConfig(speedup=1).time_scale == 1
    cfg = DemoConfig(speedup=20)
    assert cfg.wall(cfg.cache_ttl) == 15.0
    assert cfg.wall(cfg.per) == 0.5
    # the trace itself is in trace time: compression does not change it
    assert (
        generate(DemoConfig(seconds=60, warmup=0, speedup=20)).events
        == generate(DemoConfig(seconds=60, warmup=0, speedup=1)).events
    )


def test_runs_are_the_baselines_then_one_per_invalidation_mode() -> None:
    assert DemoConfig().runs == ("naive", "ttl-fix", "lowtide/tracking", "lowtide/keyspace")
    assert DemoConfig(invalidation=("pubsub",)).runs == ("naive", "ttl-fix", "lowtide/pubsub")
