"""Reconnection delays: capped exponential backoff with jitter, never below a floor."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Capped exponential backoff with jitter.

    Attempt ``n`` waits a random delay in ``[max(floor, d/2), d]`` where
    ``d = min(cap, floor * 2**(n+1))``.

    The floor keeps a process at no more than one reconnection attempt per ``floor`` seconds
    (a retry loop without backoff was the incident team's first suspect for their flat
    command line).
    """

    def __init__(self, floor: float = 1.0, cap: float = 4.0, rng: random.Random | None = None):
        self.floor = max(floor, 0.0)
        self.cap = max(cap, self.floor)
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        d = min(self.cap, self.floor * (2 ** min(self.attempts + 1, 30)))
        self.attempts += 1
        return self._rng.uniform(max(self.floor, d / 2), d)

    def reset(self) -> None:
        """Start again from the floor (after a success)."""
        self.attempts = 0
