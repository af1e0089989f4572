"""Pure limiter arithmetic, property-tested: grants never exceed the limit or the GCRA bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.limiter.core import fixed_window_grant, gcra_take, next_lease_size, window_index


@given(
    limit=st.integers(1, 10_000),
    requests=st.lists(st.integers(1, 500), min_size=1, max_size=200),
)
def test_fixed_window_grants_never_exceed_the_limit(limit: int, requests: list[int]) -> None:
    counter = 0
    granted = 0
    for r in requests:
        counter += r  # what INCRBY answers, whatever order machines arrive in
        g = fixed_window_grant(counter, r, limit)
        assert 0 <= g <= r
        granted += g
    assert granted == min(limit, sum(requests))  # nothing lost below the limit, nothing above


@settings(max_examples=300)
@given(
    limit=st.integers(1, 1000),
    per=st.floats(0.5, 120),
    steps=st.lists(st.tuples(st.floats(0, 3), st.integers(1, 50)), min_size=1, max_size=150),
)
def test_gcra_grants_obey_burst_plus_rate(
    limit: int, per: float, steps: list[tuple[float, int]]
) -> None:
    interval = per / limit
    burst = float(limit)
    tat, now = 0.0, 1000.0
    grants: list[tuple[float, int]] = []
    for dt, wanted in steps:
        now += dt * interval * 5
        g, tat, retry = gcra_take(tat, now, wanted, interval, burst)
        assert 0 <= g <= wanted
        if g == 0:
            assert retry >= 0
            # after retry_after a token really is there
            assert gcra_take(tat, now + retry + 1e-9, 1, interval, burst)[0] == 1
        grants.append((now, g))
    # every interval [a, b] of grant times: total <= burst + (b - a) / interval
    for i in range(len(grants)):
        total = 0
        for j in range(i, len(grants)):
            total += grants[j][1]
            assert total <= burst + (grants[j][0] - grants[i][0]) / interval + 1e-6


@given(
    previous=st.integers(1, 1000),
    lasted=st.floats(0, 100),
    remaining=st.integers(0, 100_000),
    fleet=st.integers(1, 50),
    cap=st.integers(1, 1000),
)
def test_lease_size_is_bounded(
    previous: int, lasted: float, remaining: int, fleet: int, cap: int
) -> None:
    size = next_lease_size(
        previous, lasted=lasted, horizon=1.0, remaining=remaining, fleet=fleet, cap=cap
    )
    assert 1 <= size <= cap
    assert size <= max(1, remaining // (2 * fleet))  # near the limit: exact mode


def test_lease_grows_with_demand_and_shrinks_when_idle() -> None:
    kw = {"horizon": 1.0, "remaining": 10_000, "fleet": 1, "cap": 1000}
    assert next_lease_size(8, lasted=0.1, **kw) == 16
    assert next_lease_size(8, lasted=2.0, **kw) == 8
    assert next_lease_size(8, lasted=10.0, **kw) == 4


def test_windows_are_aligned_to_the_epoch() -> None:
    assert window_index(59.999, 60) == 0
    assert window_index(60.0, 60) == 1
    assert window_index(-0.5, 60) == -1
