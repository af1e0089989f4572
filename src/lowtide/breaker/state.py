"""The fleet's state of one breaker for one tenant, as stored in Redis, and the check of what is
read back (untrusted: anyone with write access to the key chooses it).

Stored values (JSON, through the tiered cache):

* automatic open state: ``{"until": <server unix seconds>, "gen": <int>, "opens": <int>}``;
* forced state (:meth:`CircuitBreaker.open` / :meth:`CircuitBreaker.close`):
  ``{"forced": "open" | "closed", "gen": <int>}``, plus ``"until"`` when it was forced for a
  number of seconds.

:func:`parse_state` accepts only those shapes: a dict whose ``until`` is a finite number no
further ahead than the longest open period (``max_open``) plus
:data:`~lowtide._untrusted.CLOCK_SLACK` (for a forced state: absent, or a finite number at
most :data:`~lowtide._validate.MAX_SECONDS` ahead), whose ``gen`` is an int in ``[0, 2**63)``
and whose ``opens`` is an int >= 0 (read as at most :data:`MAX_OPENS`; both default to 0 when
missing). Anything else is read as "no fleet state": the hub decides locally, so one planted
automatic state cannot hold a tenant's breaker open for longer than ``max_open`` plus a minute.
A forced state is an operator's decision and has no such bound (see docs/security.md).
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple

from lowtide._untrusted import CLOCK_SLACK, number, whole
from lowtide._validate import MAX_SECONDS

__all__ = ["FORCED", "MAX_GEN", "MAX_OPENS", "FleetState", "parse_state"]

#: largest open generation accepted (generations are server milliseconds)
MAX_GEN: Final = 2**63 - 1
#: re-openings counted at most (the open period stops doubling after 20 anyway; a tenant whose
#: dependency stays down for weeks may legitimately exceed any small bound)
MAX_OPENS: Final = 1000
#: the values of ``"forced"``
FORCED: Final = ("open", "closed")


class FleetState(NamedTuple):
    """A checked fleet state."""

    #: server wall time (seconds) until which the breaker is open (half-open afterwards), or
    #: until which a forced state holds (``inf``: until someone calls ``automatic()``)
    until: float
    #: the generation (server milliseconds at the trip or the forcing): one probe lease per
    #: generation
    gen: int
    #: failed probes so far (each doubles the open period, up to ``max_open``)
    opens: int
    #: ``"open"`` or ``"closed"`` for a forced state, else None
    forced: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        if self.forced is None:
            return {"until": self.until, "gen": self.gen, "opens": self.opens}
        out: dict[str, Any] = {"forced": self.forced, "gen": self.gen}
        if math.isfinite(self.until):
            out["until"] = self.until
        return out


def parse_state(value: object, *, now: float, max_open: float) -> FleetState | None:
    """The state ``value`` holds if it is a well-formed one (see module docs), else None."""
    if not isinstance(value, dict):
        return None
    gen = whole(value.get("gen", 0), lo=0, hi=MAX_GEN)
    forced = value.get("forced")
    if forced is not None:
        if forced not in FORCED or gen is None:
            return None
        raw = value.get("until")
        until = math.inf if raw is None else number(raw, lo=0.0, hi=now + MAX_SECONDS)
        return None if until is None else FleetState(until, gen, 0, forced)
    until = number(value.get("until"), lo=0.0, hi=now + max_open + CLOCK_SLACK)
    opens = whole(value.get("opens", 0), lo=0, hi=MAX_GEN)
    if until is None or gen is None or opens is None:
        return None
    return FleetState(until, gen, min(opens, MAX_OPENS))
