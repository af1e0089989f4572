"""The limiter's local budget while Redis is away: never over the limit in any window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lowtide.limiter.core import fallback_budget, fixed_window_grant


@given(
    limit=st.integers(1, 1000),
    fleet=st.integers(1, 20),
    grants=st.lists(st.integers(1, 200), max_size=30),
    owner=st.lists(st.integers(0, 19), max_size=30),
)
def test_a_window_under_way_when_redis_went_away_stays_within_the_limit(
    limit: int, fleet: int, grants: list[int], owner: list[int]
) -> None:
    # before the outage, hubs reserve from the counter; each remembers what remained at its
    # own last reservation; then every hub falls back for the rest of the window
    counter = 0
    admitted = 0
    remaining: dict[int, int | None] = dict.fromkeys(range(fleet))
    for want, who in zip(grants, owner, strict=False):
        hub = who % fleet
        counter += want
        got = fixed_window_grant(counter, want, limit)
        admitted += got
        remaining[hub] = max(0, limit - counter)
    for hub in range(fleet):
        left = remaining[hub]
        admitted += fallback_budget(
            limit=limit,
            fleet=fleet,
            window=7,
            outage_window=7,
            reserved_window=7 if left is not None else 6,
            remaining=left or 0,
        )
    assert admitted <= limit


@given(limit=st.integers(1, 1000), fleet=st.integers(1, 50))
def test_a_window_that_began_during_the_outage_is_shared(limit: int, fleet: int) -> None:
    each = fallback_budget(
        limit=limit, fleet=fleet, window=9, outage_window=7, reserved_window=6, remaining=0
    )
    assert each == limit // fleet
    assert each * fleet <= limit


def test_a_fleet_of_one_keeps_what_remained_at_its_last_reservation() -> None:
    # the blip from the incident report: 18 of 20 used, then Redis blinks
    assert (
        fallback_budget(
            limit=20, fleet=1, window=5, outage_window=5, reserved_window=5, remaining=2
        )
        == 2
    )
    assert (
        fallback_budget(
            limit=20, fleet=1, window=5, outage_window=5, reserved_window=4, remaining=0
        )
        == 20
    )
