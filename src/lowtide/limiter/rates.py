"""The token bucket's rate leases, as pure arithmetic (the Lua script ``rate_lease`` mirrors it).

A fleet-wide token bucket (``rate`` tokens per second, holding at most ``cap``) is split between
the hubs that use it and a shared remainder:

* a hub holds a **rate lease**: ``rate`` tokens per second into a local bucket of at most
  ``burst`` tokens, until ``until`` (server time). It spends its local bucket with no command at
  all, and renews the lease (one script call) about twice per lease period;
* the **shared bucket** holds the rest: it refills at the bucket's rate minus the leased rates,
  and holds at most ``cap`` minus the leased bursts. A hub whose local bucket is empty takes
  tokens from it (spent within the lease horizon, as before rate leases existed).

Why the fleet never exceeds ``cap + rate x elapsed``: every admission spends one token of some
bucket; the tokens held in all buckets together never exceed ``cap`` (a lease's burst is carved
out of the shared capacity, a new lease's first tokens are moved from the shared bucket, a
renewal keeps the hub's own tokens, capped by the new burst, and a larger burst is filled
from the shared bucket's tokens); and together they refill at most
at the bucket's rate (a leased rate is taken out of the shared refill for the whole lease, and
the hub refills its local bucket only while it holds the lease, stopping a slack before
``until``). :func:`take` is property-tested against that bound
(``tests/unit/test_limiter_rates.py``).

Times are server seconds; the state is untrusted when read back (:func:`parse_state`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Grant", "RateLease", "SharedState", "advance", "parse_state", "take"]

#: hubs whose leases one state may hold (more are dropped when read: under-use only)
MAX_HUBS = 256


@dataclass(slots=True)
class RateLease:
    """One hub's share: ``rate`` tokens/s into at most ``burst`` tokens, until ``until``."""

    rate: float
    burst: int
    until: float


@dataclass(slots=True)
class SharedState:
    """The shared bucket at time ``at`` and the leases in force."""

    tokens: float
    at: float
    leases: dict[str, RateLease] = field(default_factory=dict)

    def leased_rate(self) -> float:
        """Sum of the leased rates."""
        return sum(lease.rate for lease in self.leases.values())

    def leased_burst(self) -> int:
        """Sum of the leased bursts."""
        return sum(lease.burst for lease in self.leases.values())


@dataclass(frozen=True, slots=True)
class Grant:
    """What one :func:`take` gave a hub."""

    #: the hub's lease: ``rate`` tokens/s into at most ``burst`` tokens, until ``until``
    rate: float
    burst: int
    until: float
    #: tokens the hub's local bucket starts with (a new lease), or -1 (a renewal: the hub
    #: keeps its own, plus ``added``, capped by ``burst``)
    fill: int
    #: a renewal with a larger burst: tokens moved from the shared bucket to the hub's
    added: int
    #: tokens taken from the shared bucket (spent within the lease horizon)
    granted: int
    #: seconds until the shared bucket has a token again (0 if ``granted``)
    retry: float
    #: tokens left in the shared bucket
    left: int


def advance(state: SharedState, now: float, rate: float, cap: float) -> None:
    """Refill the shared bucket up to ``now``, returning expired leases to it as they end."""
    t = state.at
    for hub, lease in sorted(state.leases.items(), key=lambda kv: kv[1].until):
        if lease.until > now:
            break
        _refill(state, t, lease.until, rate, cap)
        t = max(t, lease.until)
        del state.leases[hub]
    _refill(state, t, now, rate, cap)
    state.at = max(state.at, now)


def _refill(state: SharedState, t0: float, t1: float, rate: float, cap: float) -> None:
    if t1 > t0:
        room = max(0.0, rate - state.leased_rate())
        state.tokens += room * (t1 - t0)
    state.tokens = max(0.0, min(state.tokens, cap - state.leased_burst()))


def take(
    state: SharedState,
    now: float,
    hub: str,
    *,
    want_rate: float,
    want_burst: int,
    lease_for: float,
    want: int,
    fair_rate: float,
    rate: float,
    cap: float,
) -> Grant:
    """Renew (or start) ``hub``'s lease and take up to ``want`` shared tokens, at ``now``.

    The lease gets ``min(want_rate, fair_rate)`` of what the other leases leave of ``rate``,
    and at most ``want_burst`` of what they leave of ``cap``; ``want_rate = 0`` gives it up.
    """
    advance(state, now, rate, cap)
    old = state.leases.pop(hub, None)
    others_rate = state.leased_rate()
    others_burst = state.leased_burst()
    lease_rate = max(0.0, min(want_rate, fair_rate, rate - others_rate))
    burst = max(0, min(want_burst, math.floor(cap) - others_burst)) if lease_rate > 0 else 0
    until = now + lease_for if lease_rate > 0 else now
    if lease_rate > 0:
        state.leases[hub] = RateLease(lease_rate, burst, until)
    added = 0
    if old is not None and lease_rate > 0 and burst > old.burst:  # moved, not lost to the cap
        added = min(burst - old.burst, math.floor(state.tokens + 1e-9))
        state.tokens -= added
    state.tokens = max(0.0, min(state.tokens, cap - state.leased_burst()))
    fill = -1
    if old is None or lease_rate == 0:
        fill = min(burst, math.floor(state.tokens + 1e-9))
        state.tokens -= fill
    granted = min(max(0, want), math.floor(state.tokens + 1e-9))
    state.tokens -= granted
    retry = 0.0
    if granted < want:
        room = rate - state.leased_rate()
        if room > 0:
            retry = (1 - state.tokens) / room
        else:  # every token is leased: until the first lease ends
            retry = min([lease_for] + [x.until - now for x in state.leases.values()])
    retry = max(0.0, min(retry, lease_for))
    left = math.floor(state.tokens + 1e-9)
    return Grant(lease_rate, burst, until, fill, added, granted, retry, left)


def parse_state(
    raw: str | None, now: float, *, cap: float, rate: float, lease_for: float
) -> SharedState:
    """The state stored as ``raw`` (``v1;tokens;at;hub,rate,burst,until;...``), checked: a
    missing state is a full bucket; one that cannot be read, or whose time is further ahead of
    ``now`` than two lease periods (no hub's clock is that far off: planted), is an empty bucket
    with no lease (nothing is admitted from it until it refills); a lease that cannot be one
    is dropped. A time ahead of ``now`` by less is kept: the stored time never moves
    backwards, so a hub whose clock is behind gets no refill until its clock passes it (it
    would otherwise refill the same interval again: over-admission)."""
    if raw is None:
        return SharedState(cap, now)
    parts = [p for p in raw.split(";") if p]
    tokens, at = _number(parts[1:2]), _number(parts[2:3])
    if not parts or parts[0] != "v1" or tokens is None or at is None or at > now + 2 * lease_for:
        return SharedState(0.0, now)
    # a time ahead of ``now`` is kept (another hub's clock is ahead): no refill until then
    state = SharedState(max(0.0, min(tokens, cap)), at)
    for entry in parts[3 : 3 + MAX_HUBS]:
        bits = entry.split(",")
        if len(bits) != 4 or not bits[0]:
            continue
        r, b, u = _number(bits[1:2]), _number(bits[2:3]), _number(bits[3:4])
        if r is None or b is None or u is None or b != math.floor(b):
            continue
        if 0 < r <= rate and 0 <= b <= cap and u <= now + 2 * lease_for:
            state.leases[bits[0]] = RateLease(r, int(b), u)
    return state


def _number(text: list[str]) -> float | None:
    if not text or len(text[0]) > 40:
        return None
    try:
        value = float(text[0].replace("_", "x"))  # as Lua's tonumber: no digit separators
    except ValueError:
        return None
    return value if math.isfinite(value) else None
