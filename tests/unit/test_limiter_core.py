"""Pure limiter arithmetic, property-tested: grants never exceed the limit; leases stay within
the fair share."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from lowtide.limiter.core import (
    fixed_window_grant,
    next_lease_size,
    roll_demand,
    window_index,
    window_lease_size,
    worth_telling,
)


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


def test_windows_are_aligned_to_the_epoch() -> None:
    assert window_index(59.999, 60) == 0
    assert window_index(60.0, 60) == 1
    assert window_index(-0.5, 60) == -1


@given(
    demand=st.floats(0, 10_000),
    asked=st.integers(0, 10_000),
    into=st.floats(0, 60),
    per=st.floats(0.1, 60),
    previous=st.integers(1, 1000),
    lasted=st.floats(0, 100),
    waiting=st.integers(0, 1000),
    cap=st.integers(1, 1000),
)
def test_window_lease_is_between_one_and_the_fair_share(
    demand: float,
    asked: int,
    into: float,
    per: float,
    previous: int,
    lasted: float,
    waiting: int,
    cap: int,
) -> None:
    into = min(into, per)
    size = window_lease_size(
        demand=demand,
        asked=asked,
        into=into,
        left=per - into,
        per=per,
        previous=previous,
        lasted=lasted,
        horizon=0.1,
        waiting=waiting,
        cap=cap,
    )
    assert 1 <= size <= cap
    assert size >= min(cap, waiting + 1)  # callers already waiting are served


def test_window_lease_covers_the_expected_demand_until_the_window_ends() -> None:
    kw = {"per": 10.0, "previous": 1, "lasted": 5.0, "horizon": 1.0, "waiting": 0}
    # 40 asks per window, at the start of a window: 40 + 2 standard deviations + 1
    assert window_lease_size(demand=40, asked=0, into=0.0, left=10.0, cap=1000, **kw) == 54
    # ... at most the fair share (tokens held and not spent are lost to the others)
    assert window_lease_size(demand=40, asked=0, into=0.0, left=10.0, cap=50, **kw) == 50
    # half way through, half of it
    assert window_lease_size(demand=40, asked=0, into=5.0, left=5.0, cap=1000, **kw) == 30
    # this window runs faster than the estimate: its own pace counts
    assert window_lease_size(demand=0, asked=30, into=5.0, left=5.0, cap=1000, **kw) == 42
    # no demand known yet: one token
    assert window_lease_size(demand=0, asked=0, into=0.0, left=10.0, cap=1000, **kw) == 1


def test_demand_follows_rises_fast_and_falls_slowly() -> None:
    assert roll_demand(None, 12, 1) == 12  # the first window counts as it is
    assert roll_demand(10.0, 20, 1) == 15.0  # up: half way
    assert roll_demand(10.0, 2, 1) == 8.0  # down: a quarter of the way
    assert roll_demand(10.0, 10, 3) == 10.0 * 0.75**2  # two idle windows in between


def test_telling_the_fleet_is_worth_it_only_near_the_fair_share() -> None:
    assert worth_telling(50.0, 50, others=3, left=0.5)
    assert worth_telling(45.0, 50, others=3, left=0.5)
    assert not worth_telling(40.0, 50, others=3, left=0.5)


def test_telling_the_fleet_is_worth_it_only_when_others_are_expected_to_ask() -> None:
    # a share of 1 (limit 2, 4 processes), one ask per window each: the others are expected
    # to ask 3 * (1 - e^-left) times in what is left of the window
    assert worth_telling(1.0, 1, others=3, left=0.9)  # 1.77 refused asks spared, costs 1
    assert not worth_telling(1.0, 1, others=3, left=0.3)  # 0.78: telling costs more
    assert not worth_telling(1.0, 1, others=3, left=0.9, cost=2)  # +1 PUBLISH: 1.77 < 2
    assert worth_telling(3.0, 1, others=3, left=0.9, cost=2)  # 2.80
    assert not worth_telling(50.0, 1, others=1, left=1.0)  # one other: it asks once at most
    assert not worth_telling(50.0, 1, others=0, left=1.0)  # alone
    assert not worth_telling(50.0, 1, others=3, left=0.0)  # the window is over


def test_telling_while_the_fleet_size_is_not_known_follows_demand_alone() -> None:
    # a hub that just started has not counted the fleet yet: the others may be many
    assert worth_telling(1.0, 1, others=None, left=0.1)
    assert worth_telling(50.0, 50, others=None, left=0.0, cost=2)
    assert not worth_telling(0.5, 1, others=None, left=1.0)  # its own demand is low


@given(
    demand=st.floats(0, 1000),
    share=st.integers(1, 1000),
    others=st.integers(0, 100),
    left=st.floats(0, 1),
)
def test_telling_never_costs_more_than_it_is_expected_to_spare(
    demand: float, share: int, others: int, left: float
) -> None:
    if worth_telling(demand, share, others=others, left=left):
        assert demand >= 0.9 * share
        assert others * (1 - math.exp(-demand * left)) > 1


@given(
    previous=st.integers(1, 1000),
    lasted=st.floats(0, 100),
    remaining=st.integers(0, 100_000),
    fleet=st.integers(1, 50),
    cap=st.integers(1, 1000),
)
def test_shared_takes_are_bounded(
    previous: int, lasted: float, remaining: int, fleet: int, cap: int
) -> None:
    size = next_lease_size(
        previous, lasted=lasted, horizon=1.0, remaining=remaining, fleet=fleet, cap=cap
    )
    assert 1 <= size <= cap
    assert size <= max(1, remaining // (2 * fleet))  # near the limit: exact mode


def test_shared_takes_grow_with_bursts_and_shrink_when_idle() -> None:
    kw = {"horizon": 1.0, "remaining": 10_000, "fleet": 1, "cap": 1000}
    assert next_lease_size(8, lasted=0.1, **kw) == 16
    assert next_lease_size(8, lasted=2.0, **kw) == 8
    assert next_lease_size(8, lasted=10.0, **kw) == 4
