"""Pure state machine of one circuit breaker for one tenant on one machine. No I/O, no clock.

* :class:`SlidingWindow`: calls and failures over the last ``window`` seconds, in ten buckets;
* :class:`BreakerCore`: closed -> open when, over the window, at least ``min_calls`` calls were
  made and the failure share (slow calls count as failures) reached ``failure_rate``; open ->
  half-open after ``open_for``; one probe; success closes, failure re-opens for twice as long
  (capped at ``max_open``). A forced state (:meth:`BreakerCore.force`) overrides all of it
  until :meth:`BreakerCore.unforce` or its deadline: forced open rejects every call, forced
  closed admits every call and learns nothing from it.

The fleet layer (:mod:`lowtide.breaker.breaker`) shares the open state and the probe through
Redis; this module only decides.
"""

from __future__ import annotations

import math
from collections import deque
from enum import StrEnum

__all__ = ["BreakerCore", "SlidingWindow", "State"]


class State(StrEnum):
    """Breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class SlidingWindow:
    """Calls and failures over the last ``window`` seconds (ten buckets)."""

    __slots__ = ("_buckets", "_end", "_last", "_width", "calls", "failures")

    def __init__(self, window: float) -> None:
        self._width = window / 10
        self._buckets: deque[list[float]] = deque()  # [start, calls, failures]
        #: the newest bucket and where it ends (-inf: no bucket)
        self._last: list[float] = []
        self._end = -math.inf
        self.calls = 0
        self.failures = 0

    def _expire(self, now: float) -> None:
        horizon = now - 10 * self._width
        b = self._buckets
        while b and b[0][0] + self._width <= horizon:
            _, c, f = b.popleft()
            self.calls -= int(c)
            self.failures -= int(f)
        if not b:
            self._end = -math.inf

    def record(self, now: float, failed: bool) -> None:
        """Count one finished call."""
        if now >= self._end:
            # old buckets leave when a new one starts (and when totals are read): a call that
            # falls in the newest bucket only adds to it
            self._expire(now)
            start = now - (now % self._width)
            self._last = [start, 0, 0]
            self._buckets.append(self._last)
            self._end = start + self._width
        last = self._last
        last[1] += 1
        self.calls += 1
        if failed:
            last[2] += 1
            self.failures += 1

    def totals(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` in the window ending at ``now``."""
        self._expire(now)
        return self.calls, self.failures

    def clear(self) -> None:
        """Forget every call."""
        self._buckets.clear()
        self._end = -math.inf
        self.calls = self.failures = 0


class BreakerCore:
    """One tenant's breaker on one machine (see module docs). Times are wall seconds."""

    __slots__ = (
        "failure_rate",
        "forced",
        "forced_until",
        "max_open",
        "min_calls",
        "open_for",
        "open_until",
        "probing",
        "reopens",
        "state",
        "window",
    )

    def __init__(
        self,
        *,
        failure_rate: float,
        min_calls: int,
        window: float,
        open_for: float,
        max_open: float,
    ) -> None:
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.open_for = open_for
        self.max_open = max_open
        self.window = SlidingWindow(window)
        self.state = State.CLOSED
        self.open_until = 0.0
        self.reopens = 0
        self.probing = False
        #: ``State.OPEN`` or ``State.CLOSED`` while forced (see :meth:`force`), else None
        self.forced: State | None = None
        #: when the forced state ends (``inf``: only :meth:`unforce` ends it)
        self.forced_until = math.inf

    def current(self, now: float) -> State:
        """The state at ``now`` (an expired open period reads as half-open; a forced state
        reads as itself until it ends)."""
        if self.forced is not None and now < self.forced_until:
            return self.forced
        if self.state is State.OPEN and now >= self.open_until:
            return State.HALF_OPEN
        return self.state

    def is_forced(self, now: float) -> bool:
        """True while a forced state holds at ``now``."""
        return self.forced is not None and now < self.forced_until

    def force(self, state: State, until: float = math.inf) -> None:
        """Hold ``state`` (OPEN or CLOSED) until ``until`` or :meth:`unforce`. The automatic
        state restarts closed, with an empty window, whenever the forced one ends."""
        if state is State.HALF_OPEN:
            raise ValueError("only OPEN or CLOSED can be forced")
        self.close()
        self.forced = state
        self.forced_until = until

    def unforce(self) -> None:
        """Back to automatic: closed, with an empty window."""
        self.forced = None
        self.forced_until = math.inf
        self.close()

    def record(self, now: float, failed: bool) -> bool:
        """Count a call made while closed; True if it tripped the breaker open."""
        self.window.record(now, failed)
        if not failed or self.state is not State.CLOSED:
            return False
        calls, failures = self.window.totals(now)
        if calls >= self.min_calls and failures >= self.failure_rate * calls:
            self.trip(now)
            return True
        return False

    def trip(self, now: float, until: float | None = None) -> None:
        """Open until ``until`` (default: now + the current open period)."""
        self.state = State.OPEN
        self.open_until = until if until is not None else now + self.open_period()
        self.probing = False

    def open_period(self) -> float:
        """How long the next open period lasts: doubles per failed probe, capped."""
        return float(min(self.max_open, self.open_for * (2 ** min(self.reopens, 20))))

    def probe_result(self, now: float, ok: bool) -> None:
        """Close after a successful probe; re-open for longer after a failed one."""
        self.probing = False
        if ok:
            self.close()
        else:
            self.reopens += 1
            self.trip(now)

    def abandon_probe(self) -> None:
        """The probe ended with no outcome (cancelled): nothing is learned, the state stays,
        and another probe may be taken."""
        self.probing = False

    def close(self) -> None:
        """Back to closed with an empty window."""
        self.state = State.CLOSED
        self.reopens = 0
        self.probing = False
        self.window.clear()
