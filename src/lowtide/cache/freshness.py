"""When an L1 copy may be served, as pure functions: no I/O, no clock (time is an argument).

The rules, all applied by :class:`~lowtide.cache.tiered.Cache`:

* **Fresh** (:func:`is_fresh`): the entry belongs to the store's current epoch (no flush since
  it was filled) and ``fresh_until`` has not passed. ``Cache.get`` writes this test out inline
  (its L1 hit is the hot path); everything else calls the function.
* **Fill deadlines** (:func:`fill_deadlines`): a copy is fresh for ``min(lifetime, cap)``,
  where ``lifetime`` is what is left of the L2 value's own life and ``cap`` is
  :func:`fresh_cap`; it stays available for fail-safe reads ``fail_safe_max`` longer; an eager
  refresh is due once ``eager_refresh`` of its fresh life has passed.
* **Fail-safe** (:func:`has_stale`, :func:`stale_value`): the last good value, while
  ``stale_until`` has not passed; a negative entry (:data:`ABSENT`, :data:`LOADED_NONE`) is
  never one.
* **The echo verdict** (:func:`after_write`): what a writer may keep in L1 once its write was
  acknowledged, given how many invalidations of the key arrived meanwhile. It is returned as
  data (:class:`Fill`, :class:`Demote`, :class:`Drop`) and applied by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from lowtide.cache.options import CacheOptions
from lowtide.cache.store import ABSENT, LOADED_NONE, Entry
from lowtide.modes import InvalidationMode

__all__ = [
    "DEMOTE",
    "DROP",
    "LOOKS_PER_BOUND",
    "Deadlines",
    "Demote",
    "Drop",
    "Fill",
    "Verdict",
    "after_write",
    "answer",
    "fill_deadlines",
    "fresh_cap",
    "has_stale",
    "is_fresh",
    "may_fill",
    "negative_lifetime",
    "refresh_reloads",
    "remaining_life",
    "stale_value",
    "throttled_until",
]

#: renewal's looks per ``max_staleness`` (:mod:`lowtide.cache.renew`): a copy renewed at one
#: look lapses after three more periods, so it is renewed at every second look
LOOKS_PER_BOUND: Final = 3


def is_fresh(entry: Entry, epoch: int, now: float) -> bool:
    """True if ``entry`` may be served as current: no flush since its fill, and not expired."""
    return entry.epoch == epoch and entry.fresh_until > now


def answer(value: Any) -> Any:
    """What a caller is answered for a stored value: None for a negative entry
    (:data:`ABSENT`, :data:`LOADED_NONE`), else the value."""
    return None if value is ABSENT or value is LOADED_NONE else value


# -- filling ----------------------------------------------------------------------------------
def fresh_cap(options: CacheOptions, *, tracking_keepalive: float | None) -> float:
    """How long a copy filled now may be served as fresh.

    ``min(ttl, max_staleness)``, except while CLIENT TRACKING is active and verified
    (``tracking_keepalive`` is then the listener's keepalive period; None otherwise): then any
    write by anyone is pushed, and a lost push means a lost connection, which the keepalive
    detects within three periods and answers by demoting everything. So when three keepalive
    periods fit inside ``max_staleness`` the bound holds without the cap, and copies live as
    long as the L2 value does (no TTL guessing).
    """
    if tracking_keepalive is not None and 3 * tracking_keepalive <= options.max_staleness:
        return options.ttl
    return min(options.ttl, options.max_staleness)


def negative_lifetime(options: CacheOptions) -> float:
    """How long "the loader said there is no value" is remembered (before :func:`fresh_cap`)."""
    return min(options.negative_ttl, fresh_cap(options, tracking_keepalive=None))


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The deadlines of an entry filled now (monotonic seconds)."""

    #: served as fresh until then
    fresh_until: float
    #: served by fail-safe reads (Redis or the loader failing) until then
    stale_until: float
    #: an eager background refresh is due then (``inf``: never)
    refresh_at: float


def fill_deadlines(
    now: float,
    lifetime: float,
    cap: float,
    options: CacheOptions,
    *,
    stale_ok: bool = True,
    demoted: bool = False,
    sent: float | None = None,
) -> Deadlines:
    """The deadlines of a copy filled at ``now``.

    ``sent`` is when the read that brought the value was sent: the copy's freshness is counted
    from then, since a write landing after the server answered and before the reply arrived is
    not seen (``cap`` is a bound on how old a served value may be, not on how long it is kept).

    ``lifetime`` is how long the value itself lives (what is left of the L2 value's life, or
    the TTL it was written with), ``cap`` the :func:`fresh_cap`. ``stale_ok=False`` (negative
    entries) gives no fail-safe life; ``demoted`` copies are known but not provably current:
    never fresh, kept for fail-safe reads only.
    """
    age = now - sent if sent is not None and sent < now else 0.0
    fresh = max(0.0, min(lifetime, cap - age))
    refresh_at = math.inf
    if options.eager_refresh is not None and fresh > 0:
        refresh_at = now + fresh * options.eager_refresh
    grace = options.fail_safe_max if options.fail_safe and stale_ok else 0
    return Deadlines(
        fresh_until=now if demoted else now + fresh,
        stale_until=now + fresh + grace,
        refresh_at=refresh_at,
    )


def may_fill(seen: int | None, distributed: bool) -> bool:
    """True if an L2 reply may fill L1: no invalidation or flush arrived while it was in flight
    (``seen == 0``; see :meth:`~lowtide.invalidation.Invalidations.end`) and Redis is in use."""
    return seen == 0 and distributed


def remaining_life(expires_ms: int, wall_now: float, ttl: float) -> float:
    """Seconds an L2 value has left, from its envelope's expiry (unix ms; 0: unknown, so
    ``ttl``) and the server-aligned wall clock. ``<= 0``: the writer's deadline passed."""
    return expires_ms / 1000 - wall_now if expires_ms else ttl


def refresh_reloads(remaining: float, lifetime: float, *, eager_refresh: float | None) -> bool:
    """True if an eager refresh that found a value in L2 must load anyway: the L2 value itself
    has less than the refresh window (``1 - eager_refresh`` of ``lifetime``) left."""
    return eager_refresh is not None and remaining < lifetime * (1 - eager_refresh)


# -- fail-safe --------------------------------------------------------------------------------
def has_stale(entry: Entry | None, now: float, *, fail_safe: bool) -> bool:
    """True if ``entry`` holds a last good value that fail-safe may still serve at ``now``."""
    return (
        entry is not None
        and fail_safe
        and entry.stale_until > now
        and entry.value is not ABSENT
        and entry.value is not LOADED_NONE
    )


def stale_value(entry: Entry | None, now: float, *, fail_safe: bool) -> Any:
    """The last good value fail-safe may serve at ``now``, or None."""
    if entry is None or not has_stale(entry, now, fail_safe=fail_safe):
        return None
    return entry.value


def throttled_until(entry: Entry, now: float, throttle: float) -> float:
    """After a loader failure answered by fail-safe: serve the stale value as fresh this long
    (``fail_safe_throttle``, never past its fail-safe life) instead of hammering the loader."""
    return min(entry.stale_until, now + throttle)


# -- the echo verdict -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fill:
    """Keep the written value as fresh, swallowing ``echo`` invalidations still to come.

    ``own_echo``: the next invalidation is most likely this write's own (CLIENT TRACKING, none
    arrived yet): it ends the copy's freshness like any other, but does not mark the value as
    replaced by someone else (so a slow read may still answer with it, see
    :attr:`~lowtide.cache.store.Entry.superseded`).
    """

    echo: int = 0
    own_echo: bool = False


@dataclass(frozen=True, slots=True)
class Demote:
    """Keep the written value for fail-safe reads only (not provably current)."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Keep nothing: the next read fetches the value again."""


#: the verdicts without fields
DEMOTE: Final = Demote()
DROP: Final = Drop()
_FILL: Final = Fill(0)
_FILL_EXPECTING_ECHO: Final = Fill(1)
_FILL_OWN_ECHO_DUE: Final = Fill(0, own_echo=True)

Verdict = Fill | Demote | Drop


def after_write(
    seen: int | None,
    mode: InvalidationMode | None,
    *,
    distributed: bool,
    notified: bool = True,
    echo: bool = True,
) -> Verdict:
    """What a writer keeps in L1 once Redis acknowledged its write.

    ``mode`` is the listener's mode, or None when no race guard applies (no listener, or ttl
    mode): then the value is kept as written. ``seen`` is how many invalidations of the key
    arrived between sending the write and its reply (None: a flush, or the listener is not
    healthy).

    * ``seen is None`` or Redis no longer in use: :class:`Drop` (cannot prove the copy current).
    * CLIENT TRACKING, ``echo`` (the server pushes this write back to this process) merges the
      invalidations of one server cycle into one message, so the echo of this write may also
      stand for another writer's: counting echoes could keep a stale copy. The copy is kept
      only until the echo arrives (which demotes it; the next read fetches it, 1 GET, and it
      still serves fail-safe reads meanwhile). If a message already arrived, it may have
      covered a later write too: :class:`Demote` at once.
    * CLIENT TRACKING, not ``echo`` (sent on the writer connection registered with NOLOOP,
      :mod:`lowtide.redis.writer`): the server pushes a key unless its last modifier in the
      cycle was that connection, so no push of this write will come, and one that arrived
      meanwhile is another writer's, which may have landed after ours: :class:`Demote`; none:
      ``Fill(echo=0)`` (a later write by anyone else is pushed, one merged into our cycle
      too when it landed after ours).
    * pub/sub, ``notified`` (the writer published one message for its write): none arrived
      yet: swallow ours when it comes (``Fill(echo=1)``), so any later one demotes the copy.
      One arrived: it is ours (a later write's message will demote the copy) or another
      writer's (then ours is still to come and demotes it): ``Fill(echo=0)`` is safe either
      way. Two or more arrived: ours and another writer's, whose write may have landed after
      ours with no message left to tell: :class:`Demote`.
    * pub/sub, not ``notified`` (the write needed no message, :mod:`lowtide.cache.notify`):
      no echo will come, so any message that arrived meanwhile is another writer's, which may
      have landed after ours: :class:`Demote`; none: ``Fill(echo=0)`` (a later write that
      changes the value is announced, because this copy may exist).
    * keyspace notifications: the server publishes one message per change, ours included, in
      the order it applied them, never merged: as pub/sub with ``notified``. (A write on a key
      whose life is over but which Redis has not removed yet comes after an ``expired``
      message: the old value's removal, never the echo; see :meth:`L1.invalidate`.)
    """
    if mode is None:
        return _FILL
    if seen is None or not distributed:
        return DROP
    if mode is InvalidationMode.KEYSPACE:
        notified = True
    elif mode is not InvalidationMode.PUBSUB:
        if not echo:
            return _FILL if seen == 0 else DEMOTE
        return DEMOTE if seen > 0 else _FILL_OWN_ECHO_DUE
    if not notified:
        return _FILL if seen == 0 else DEMOTE
    if seen >= 2:
        return DEMOTE
    return _FILL_EXPECTING_ECHO if seen == 0 else _FILL
