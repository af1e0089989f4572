"""The demo's seeded trace, with no server."""

from __future__ import annotations

from lowtide.demo.analysis import lower_bound_per_day
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
    assert 1300 < naive_gets < 1750  # ~1,525 GETs in one minute: the seeds' 2.2M/day
    assert cfg.naive_gets_per_min == 1525
    assert lower_bound_per_day(a) < naive_gets * 1440
