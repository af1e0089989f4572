"""The fleet's open state of one breaker for one tenant, as stored in Redis, and the check of what
is read back (untrusted: anyone with write access to the key chooses it).

Stored value (JSON, through the tiered cache): ``{"until": <server unix seconds>, "gen": <int>,
"opens": <int>}``. :func:`parse_state` accepts only that shape: a dict whose ``until`` is a
finite number no further ahead than the longest open period (``max_open``) plus
:data:`~lowtide._untrusted.CLOCK_SLACK`, whose ``gen`` is an int in ``[0, 2**63)`` and whose
``opens`` is an int >= 0 (read as at most :data:`MAX_OPENS`; both default to 0 when missing).
Anything else is read as "no fleet state": the hub decides locally, so one planted value
cannot hold a tenant's breaker open for longer than ``max_open`` plus a minute.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from lowtide._untrusted import CLOCK_SLACK, number, whole

__all__ = ["MAX_GEN", "MAX_OPENS", "FleetState", "parse_state"]

#: largest open generation accepted (generations are server milliseconds)
MAX_GEN: Final = 2**63 - 1
#: re-openings counted at most (the open period stops doubling after 20 anyway; a tenant whose
#: dependency stays down for weeks may legitimately exceed any small bound)
MAX_OPENS: Final = 1000


class FleetState(NamedTuple):
    """A checked fleet state."""

    #: server wall time (seconds) until which the breaker is open; half-open afterwards
    until: float
    #: the open generation (server milliseconds at the trip): one probe lease per generation
    gen: int
    #: failed probes so far (each doubles the open period, up to ``max_open``)
    opens: int

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"until": self.until, "gen": self.gen, "opens": self.opens}


def parse_state(value: object, *, now: float, max_open: float) -> FleetState | None:
    """The state ``value`` holds if it is a well-formed one (see module docs), else None."""
    if not isinstance(value, dict):
        return None
    until = number(value.get("until"), lo=0.0, hi=now + max_open + CLOCK_SLACK)
    gen = whole(value.get("gen", 0), lo=0, hi=MAX_GEN)
    opens = whole(value.get("opens", 0), lo=0, hi=MAX_GEN)
    if until is None or gen is None or opens is None:
        return None
    return FleetState(until, gen, min(opens, MAX_OPENS))
