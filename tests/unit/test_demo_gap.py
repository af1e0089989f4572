"""The protocols ``python -m benchmarks.demo_gap`` replays never beat the demo's lower bound,
and each saving it names is a saving on every key."""

from __future__ import annotations

from collections import defaultdict

from benchmarks.demo_gap import cache_cost

from lowtide.demo import DemoConfig
from lowtide.demo.bound import key_costs
from lowtide.demo.trace import generate


def test_each_cache_protocol_costs_at_least_the_bound_on_every_key() -> None:
    cfg = DemoConfig(seconds=120.0, warmup=120.0)
    start, end = cfg.warmup, cfg.warmup + cfg.seconds
    keys: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for ev in generate(cfg).events:
        if ev.kind in ("read", "write"):
            keys[f"{ev.tenant}/{ev.key}"].append((ev.t, ev.machine, ev.kind))
    assert len(keys) > 100
    for timeline in keys.values():
        timeline.sort(key=lambda e: e[0])
        bound = key_costs(timeline, cfg.cache_ttl, start, end).tracking
        costs = {
            (skip, back): cache_cost(
                timeline, cfg.cache_ttl, start, end, skip_get=skip, read_back=back
            )["total"]
            for skip in (False, True)
            for back in (False, True)
        }
        assert min(costs.values()) >= bound
        assert costs[(True, True)] <= costs[(False, True)]  # the fill's GET only adds
        assert costs[(True, False)] <= costs[(True, True)]  # so does the read-back
