"""Pure arithmetic of the rate limiter: windows, grants, lease sizing, local budgets. No I/O,
no clock.

Everything here takes time as an argument, so it is property-tested with hypothesis
(``tests/unit/test_limiter_core.py``); the token bucket's rate leases are in
:mod:`lowtide.limiter.rates`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = [
    "DEMAND_FALL",
    "DEMAND_RISE",
    "Decision",
    "fallback_budget",
    "fixed_window_grant",
    "next_lease_size",
    "roll_demand",
    "window_end",
    "window_index",
    "window_lease_size",
    "worth_telling",
]

#: weight of a window that just ended in the demand estimate (asks per window): demand that
#: rises is followed fast (leases too small cost reservations), demand that falls slowly
DEMAND_RISE = 0.5
DEMAND_FALL = 0.25


class Decision(NamedTuple):
    """The answer to one ``acquire()``.

    ``remaining`` is this process's view (tokens in hand plus what the fleet had left at the last
    reservation); ``retry_after`` is in seconds (0 when allowed).
    """

    allowed: bool
    remaining: int
    retry_after: float

    def __bool__(self) -> bool:
        return self.allowed


def window_index(now: float, per: float) -> int:
    """The fixed window containing wall time ``now`` (windows are aligned to the epoch)."""
    return math.floor(now / per)


def window_end(index: int, per: float) -> float:
    """Wall time at which window ``index`` ends."""
    return (index + 1) * per


def fixed_window_grant(counter_after: int, charged: int, limit: int) -> int:
    """Tokens granted by ``INCRBY key charged`` that answered ``counter_after``.

    The counter held ``counter_after - charged`` before: whatever was left below ``limit``
    (at most ``charged``) is ours. The counter itself may exceed the limit by the unused part of
    refused reservations; that only makes later reservations refuse, never over-admit.
    """
    before = counter_after - charged
    return max(0, min(charged, limit - before))


def next_lease_size(
    previous: int,
    *,
    lasted: float,
    horizon: float,
    remaining: int,
    fleet: int,
    cap: int,
) -> int:
    """Size of the next take from a token bucket's shared remainder: grows with bursts,
    shrinks near the limit.

    ``previous`` tokens lasted ``lasted`` seconds: if they went in under ``horizon`` the next
    lease doubles, if they took more than four horizons it halves. It never exceeds ``cap``, nor
    a fair share of what the fleet has left (``remaining / (2 * fleet)``), so near the limit
    leases shrink to 1 and few tokens are stranded in idle processes.
    """
    size = previous
    if lasted < horizon:
        size = previous * 2
    elif lasted > 4 * horizon:
        size = previous // 2
    fair = remaining // (2 * max(1, fleet))
    return max(1, min(size, cap, fair if fair > 0 else 1))


def roll_demand(demand: float | None, asked: int, gap: int) -> float:
    """The demand estimate (asks per window, an exponentially weighted mean; ``None`` before
    the first window ended) once a window with ``asked`` asks has ended and ``gap - 1``
    windows with no ask at all followed it."""
    if demand is None:
        demand = float(asked)
    else:
        demand += (DEMAND_RISE if asked > demand else DEMAND_FALL) * (asked - demand)
    return demand * (1 - DEMAND_FALL) ** max(0, gap - 1)


def window_lease_size(
    *,
    demand: float,
    asked: int,
    into: float,
    left: float,
    per: float,
    previous: int,
    lasted: float,
    horizon: float,
    waiting: int,
    cap: int,
) -> int:
    """Tokens to reserve in a fixed window: what this process should need until it ends.

    The rate is the demand estimate (``demand`` asks per window) or, if higher, this window's
    own pace so far (``asked`` asks in its first ``into`` seconds, counted from a tenth of a
    window so one early ask is not a flood). The lease covers the expected asks in the ``left``
    seconds plus two standard deviations of a Poisson count and one, so one reservation per
    window usually suffices; it doubles if the ``previous`` lease went in under ``horizon``
    (a burst), covers the callers ``waiting`` for it, and never exceeds ``cap`` (the fair
    share: ``limit // fleet size``, at most ``max_lease``): tokens reserved and not spent are
    lost to the others until the window ends.
    """
    rate = demand / per
    if asked > 0:
        rate = max(rate, asked / max(into, per / 10))
    expected = rate * max(0.0, left)
    size = math.ceil(expected + 2 * math.sqrt(expected)) + 1
    if lasted < horizon:
        size = max(size, 2 * previous)
    size = max(size, waiting + 1)
    return max(1, min(size, cap))


def worth_telling(
    demand: float, share: int, *, others: int | None, left: float, cost: int = 1
) -> bool:
    """Whether a process that took a window's last token should tell the fleet (``cost``
    commands: one write every hub hears as a push, +1 PUBLISH in pub/sub mode).

    Telling pays when it spares more than it costs: each of the ``others`` processes that
    asks again before the window ends would be refused once (one reservation each) and then
    know. Two conditions: this process's own demand (asks per window) is near or over its
    fair ``share``, so the others are likely to run out of tokens too; and, the others asking
    at about the same pace, the expected number of them asking in the ``left`` fraction of the
    window still to run, ``others * (1 - exp(-demand * left))``, exceeds ``cost``.
    ``others`` None: the fleet size is not known yet (a hub that just started has not seen a
    whole heartbeat interval); then the first condition alone decides.
    """
    if demand < 0.9 * share:
        return False
    if others is None:
        return True
    if others <= 0 or left <= 0:
        return False
    return others * -math.expm1(-demand * left) > cost


def fallback_budget(
    *,
    limit: int,
    fleet: int,
    window: int,
    outage_window: int,
    reserved_window: int,
    remaining: int,
) -> int:
    """Calls one hub may admit on its own in ``window`` while Redis is unavailable, beyond
    the tokens it already holds (those were counted by the fleet counter when reserved).

    * A window that began during the outage (``window > outage_window``): nobody could reserve
      in it, so each of the ``fleet`` hubs takes ``limit // fleet``.
    * The window the outage began in was already in use, and only a fleet of one knows how
      much: what remained at its last reservation in this window (``remaining``), or the whole
      ``limit`` if it had not reserved. In a larger fleet this hub cannot know what the others
      took, so it admits nothing more until the window ends: never a fresh share, never over
      the limit.
    """
    fleet = max(1, fleet)
    if window > outage_window:
        return limit // fleet
    if fleet > 1:
        return 0
    if reserved_window == window:
        return max(0, min(limit, remaining))
    return limit
