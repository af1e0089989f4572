"""The breaker's pure state machine and sliding window, with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide.breaker.core import BreakerCore, SlidingWindow, State


def core(**kw: float) -> BreakerCore:
    opts = {"failure_rate": 0.5, "min_calls": 10, "window": 10.0, "open_for": 5.0, "max_open": 40.0}
    opts.update(kw)
    return BreakerCore(**opts)  # type: ignore[arg-type]


@given(events=st.lists(st.tuples(st.floats(0, 3), st.booleans()), min_size=1, max_size=300))
def test_window_counts_what_happened_in_the_window(events: list[tuple[float, bool]]) -> None:
    w = SlidingWindow(10.0)
    now = 0.0
    log: list[tuple[float, bool]] = []
    for dt, failed in events:
        now += dt
        w.record(now, failed)
        log.append((now, failed))
        calls, failures = w.totals(now)
        # ten buckets: everything from the last 9 s is in, nothing older than 11 s is
        assert (
            sum(1 for t, _ in log if t > now - 9) <= calls <= sum(1 for t, _ in log if t > now - 11)
        )
        assert sum(1 for t, f in log if f and t > now - 9) <= failures
        assert failures <= sum(1 for t, f in log if f and t > now - 11)


@given(events=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200))
def test_never_trips_below_min_calls_or_rate(events: list[tuple[float, bool]]) -> None:
    c = core()
    now = 0.0
    for dt, failed in events:
        now += dt
        if c.state is not State.CLOSED:
            break
        if c.record(now, failed):
            calls, failures = c.window.totals(now)
            assert calls >= 10
            assert failures >= 0.5 * calls


def test_trip_half_open_probe_and_backoff() -> None:
    c = core()
    for i in range(9):
        assert not c.record(float(i) / 10, failed=True)  # below min_calls
    assert c.record(0.95, failed=True)
    assert c.current(1.0) is State.OPEN
    assert c.current(6.0) is State.HALF_OPEN
    c.probe_result(6.0, ok=False)
    assert c.open_until == 6.0 + 10.0  # doubled
    c.probe_result(16.0, ok=False)
    assert c.open_until == 16.0 + 20.0
    for _ in range(5):
        c.probe_result(100.0, ok=False)
    assert c.open_until == 140.0  # capped at max_open
    c.probe_result(200.0, ok=True)
    assert c.current(200.0) is State.CLOSED
    assert c.window.totals(200.0) == (0, 0)
    assert c.open_period() == 5.0


def test_successes_keep_it_closed() -> None:
    c = core()
    for i in range(100):
        assert not c.record(i * 0.05, failed=i % 3 == 0)  # a third fail: below 50%
    assert c.state is State.CLOSED


class ReferenceWindow:
    """The window as it was before its fast path (expire on every record): the new one must
    count exactly like it."""

    def __init__(self, window: float) -> None:
        self.width = window / 10
        self.buckets: list[list[float]] = []
        self.calls = self.failures = 0

    def expire(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] + self.width <= now - 10 * self.width:
            _, c, f = self.buckets.pop(0)
            self.calls -= int(c)
            self.failures -= int(f)

    def record(self, now: float, failed: bool) -> None:
        self.expire(now)
        if not self.buckets or now >= self.buckets[-1][0] + self.width:
            self.buckets.append([now - (now % self.width), 0, 0])
        self.buckets[-1][1] += 1
        self.calls += 1
        if failed:
            self.buckets[-1][2] += 1
            self.failures += 1

    def totals(self, now: float) -> tuple[int, int]:
        self.expire(now)
        return self.calls, self.failures


@given(
    events=st.lists(
        # time steps (some backwards, as a wall clock may step), outcomes, and when the totals
        # are read after the call (None: not read), possibly far after it
        st.tuples(st.floats(-15, 8), st.booleans(), st.none() | st.floats(0, 200)),
        min_size=1,
        max_size=300,
    )
)
def test_window_counts_exactly_like_the_reference(
    events: list[tuple[float, bool, float | None]],
) -> None:
    w, ref = SlidingWindow(10.0), ReferenceWindow(10.0)
    now = 1000.0
    for dt, failed, read in events:
        now += dt
        w.record(now, failed)
        ref.record(now, failed)
        if read is not None:
            assert w.totals(now + read) == ref.totals(now + read)
    assert w.totals(now) == ref.totals(now)
    assert w.totals(now + 1000) == ref.totals(now + 1000) == (0, 0)


def test_a_forced_state_overrides_the_automatic_one_until_it_ends() -> None:
    c = core()
    for i in range(10):
        c.record(i / 10, failed=True)
    assert c.current(1.0) is State.OPEN
    c.force(State.CLOSED, until=50.0)
    assert c.current(1.0) is State.CLOSED
    assert c.is_forced(49.9)
    assert c.window.totals(1.0) == (0, 0)  # forcing starts from an empty window
    assert not c.is_forced(50.0)
    assert c.current(50.0) is State.CLOSED  # automatic again, closed
    c.force(State.OPEN)
    assert c.current(1e12) is State.OPEN  # no deadline: until unforce()
    c.unforce()
    assert c.current(1e12) is State.CLOSED
    assert c.forced is None
    with pytest.raises(ValueError, match="OPEN or CLOSED"):
        c.force(State.HALF_OPEN)
