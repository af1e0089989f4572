"""The demo's lower bound: its counting rules, on hand-made timelines and traces (no server)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.demo.bound import KeyCosts, key_costs, limiter_windows, lower_bound
from lowtide.demo.trace import DemoConfig, Event, generate

TTL = 300.0


def costs(timeline: list[tuple[float, int, str]], start: float = 0, end: float = 1e9) -> KeyCosts:
    return key_costs(timeline, TTL, start, end)


def test_a_machine_fetches_once_per_ttl_period_it_reads() -> None:
    c = costs([(0, 0, "read"), (10, 0, "read"), (299, 0, "read"), (300, 0, "read")])
    assert (c.reads, c.fetches) == (4, 2)  # the copy fetched at 0 lives until 300


def test_every_machine_pays_for_its_own_copy() -> None:
    c = costs([(0, 0, "read"), (1, 1, "read"), (2, 2, "read"), (3, 1, "read")])
    assert c.fetches == 3


def test_a_write_costs_one_and_invalidates_every_other_copy_but_the_writers() -> None:
    c = costs([(0, 0, "read"), (1, 1, "read"), (10, 0, "write"), (11, 0, "read"), (12, 1, "read")])
    assert c.writes == 1
    assert c.fetches == 3  # machine 1 again after the write; machine 0 holds what it wrote
    assert c.tracking == 4


def test_a_new_version_or_period_starts_after_a_write_for_the_writer_too() -> None:
    c = costs([(0, 0, "write"), (299, 0, "read"), (301, 0, "read")])
    assert c.fetches == 1  # the written copy expires at 300


def test_only_the_measured_window_is_counted_but_history_holds_copies() -> None:
    timeline = [(0, 0, "read"), (50, 0, "read"), (60, 1, "read"), (70, 1, "write")]
    c = costs(timeline, start=55, end=65)
    assert (c.reads, c.fetches, c.writes) == (1, 1, 0)  # machine 0's read at 50 needed nothing


def test_pubsub_notifies_a_write_only_where_a_copy_would_be_read_again() -> None:
    read_again = [(0, 1, "read"), (10, 0, "write"), (20, 1, "read")]
    assert costs(read_again).notifications == 1
    never_again = [(0, 1, "read"), (10, 0, "write")]
    assert costs(never_again).notifications == 0
    expired_first = [(0, 1, "read"), (10, 0, "write"), (305, 1, "read")]
    assert costs(expired_first).notifications == 0  # its copy ended at 300: it fetches anyway
    writer_only = [(0, 0, "read"), (10, 0, "write"), (20, 0, "read")]
    assert costs(writer_only).notifications == 0


def test_pubsub_counts_cache_aside_where_that_is_cheaper() -> None:
    # one machine's rare reads between another's frequent writes: notifying costs more
    timeline: list[tuple[float, int, str]] = []
    for i in range(10):
        timeline += [(i * 20.0, 1, "read"), (i * 20.0 + 5, 0, "write"), (i * 20.0 + 6, 0, "write")]
        timeline += [(i * 20.0 + 7, 1, "read")]
    c = costs(timeline)
    assert c.writes + c.fetches + c.notifications > c.writes + c.reads
    assert c.pubsub == c.writes + c.reads
    # a read-mostly key: copies plus notifications are cheaper
    mostly = [(float(t), t % 2, "read") for t in range(100)] + [(100.5, 0, "write")]
    mostly += [(101.0 + t, t % 2, "read") for t in range(50)]
    c = costs(sorted(mostly))
    assert c.pubsub == c.writes + c.fetches + c.notifications < c.writes + c.reads


CFG = DemoConfig(seconds=100, warmup=0, limit=2, per=10)


def call(t: float, machine: int, tenant: str = "t", connector: str = "slack") -> Event:
    return Event(t, machine, "call", tenant, connector)


def windows(events: list[Event], cfg: DemoConfig = CFG, phase: float = 0.0) -> int:
    return limiter_windows(
        events, cfg, lambda t: math.floor((t + phase) / cfg.per), cfg.warmup, cfg.total_seconds
    )


def test_limiter_counts_machine_windows_with_admissions_only() -> None:
    # window 0: machine 0 twice (both admitted), machine 1 third (refused): 1 (machine, window)
    assert windows([call(1, 0), call(2, 0), call(3, 1)]) == 1
    # machine 1 first: both machines admit once each
    assert windows([call(1, 1), call(2, 0), call(3, 0)]) == 2
    # separate windows and separate cells count separately
    assert windows([call(1, 0), call(11, 0), call(12, 0, tenant="u")]) == 3


def test_limiter_windows_follow_the_runs_alignment() -> None:
    events = [call(8, 0), call(9, 0), call(12, 1)]
    assert windows(events) == 2  # windows [0, 10) and [10, 20)
    assert windows(events, phase=5.0) == 1  # all three in [5, 15): machine 1 is refused


def test_limiter_leaves_out_the_failing_connector_during_its_outage() -> None:
    cfg = DemoConfig(seconds=100, warmup=0, failing_from=0.3, failing_to=0.6)
    assert windows([call(35, 0, connector="salesforce")], cfg) == 0
    assert windows([call(35, 0, connector="slack")], cfg) == 1
    assert windows([call(65, 0, connector="salesforce")], cfg) == 1


def test_the_bound_of_a_trace_counts_only_its_measured_window() -> None:
    cfg = DemoConfig(seconds=120, warmup=120)
    trace = generate(cfg)
    tracking = lower_bound(trace.events, cfg, "tracking")
    pubsub = lower_bound(trace.events, cfg, "pubsub")
    assert 0 < tracking.total <= pubsub.total
    assert tracking.notifications == 0
    assert pubsub.per_day == pubsub.total / 120 * 86_400
    measured = [e for e in trace.events if e.t >= cfg.warmup]
    writes = sum(1 for e in measured if e.kind == "write")
    assert tracking.writes == writes
    calls = sum(1 for e in measured if e.kind == "call")
    assert 0 < tracking.limiter <= calls
    # with no warm-up the same window pays for every first fetch: never less
    cold = lower_bound(trace.events, DemoConfig(seconds=120, warmup=0), "tracking")
    assert cold.cache_fetches > 0


def _protocol_cost(timeline: list[tuple[float, int, str]]) -> int:
    """What a concrete correct protocol sends for one key: copies live until the Redis value
    they came from expires; a read without a copy GETs a live value or loads it and SETs it."""
    redis_until = -math.inf
    copies: dict[int, float] = {}
    sent = 0
    for t, m, kind in timeline:
        if kind == "write":
            sent += 1
            redis_until = t + TTL
            copies = {m: redis_until}
        elif copies.get(m, -math.inf) <= t:
            sent += 1  # a GET of the live value, or the SET of a fresh load
            if redis_until <= t:
                redis_until = t + TTL
            copies[m] = redis_until
    return sent


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 2000, allow_nan=False),
            st.integers(0, 3),
            st.sampled_from(["read", "write"]),
        ),
        max_size=60,
    )
)
def test_no_correct_protocol_beats_the_bound(events: list[tuple[float, int, str]]) -> None:
    timeline = sorted(events, key=lambda e: e[0])
    c = costs(timeline)
    assert c.tracking <= _protocol_cost(timeline)
    assert c.pubsub <= c.tracking + c.notifications
