"""Reconnection backoff: capped, jittered, never below the floor."""

from __future__ import annotations

import random

from lowtide.backoff import Backoff


def test_backoff_is_capped_jittered_and_never_below_the_floor() -> None:
    b = Backoff(1.0, 4.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(20)]
    assert all(1.0 <= d <= 4.0 for d in delays)
    assert delays[0] <= 2.0
    assert min(delays[5:]) >= 2.0
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not a fixed beat
    b.reset()
    assert b.next_delay() <= 2.0
