"""The limiter's shared state as read back from Redis: untrusted, checked before use.

Anyone with write access to lowtide's keys chooses these values, so:

* **Penalties** (:class:`Penalties`, a provider's 429 shared with one ``SET PX`` on a tracked
  key): a penalty is honoured only if it is a finite number no further ahead than
  ``max_penalty`` (+ :data:`~lowtide._untrusted.CLOCK_SLACK`); ``penalize()`` itself cuts a
  ``retry_after`` to ``max_penalty``. Anything else (a string, a deadline in a year, a value
  the cache cannot read) is ignored, counted in ``bad_penalties`` and logged at most once a
  minute. So one planted value stops a tenant for at most ``max_penalty``.
* **Counter and bucket replies** (:func:`check_window_reply`, :func:`check_rate_reply`): a
  fixed-window counter below what this reservation itself added (a planted negative count
  would grant tokens beyond the limit), or a token-bucket grant beyond what was asked or a
  lease beyond its period, is :class:`BadState`; so is an error reply (a string or a hash
  where the counter should be). The limiter then decides locally, as when Redis is away, and
  counts it in ``bad_state``: never over the limit, never an exception. The token bucket's
  stored state is checked by its script (:mod:`lowtide.limiter.rates`: unreadable is empty).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lowtide._untrusted import CLOCK_SLACK, Warnings, number, shown, whole
from lowtide.cache.options import pushed_state
from lowtide.cache.store import Key
from lowtide.errors import LowtideError, RedisUnavailable
from lowtide.limiter.rates import Grant

if TYPE_CHECKING:
    from lowtide.cache import Cache, CacheHub

__all__ = [
    "BadState",
    "Penalties",
    "check_rate_reply",
    "check_window_reply",
    "default_max_penalty",
    "found_counter",
    "unpushed_bound",
]

log = logging.getLogger("lowtide.limiter")


class BadState(LowtideError):
    """A reply about shared limiter state that a lowtide writer could not have produced."""


def check_window_reply(counter: object, charged: int) -> int:
    """The counter ``INCRBY key charged`` answered, if it can be one: an int of at least
    ``charged`` (the counter held ``counter - charged >= 0`` before); else BadState."""
    value = whole(counter, lo=charged, hi=2**63 - 1)
    if value is None:
        raise BadState(f"fixed-window counter answered {shown(counter)} for +{charged}")
    return value


def found_counter(reply: object, charged: int) -> int | None:
    """The counter a ``SET ... NX GET`` found, if it can be one: ASCII digits that an
    ``INCRBY key charged`` could still add to (else None: the reservation then sends that
    ``INCRBY``, whose reply or error is checked as always, so a planted counter is counted
    in ``bad_state`` whichever way it is found)."""
    if isinstance(reply, bytes) and 0 < len(reply) <= 19 and reply.isdigit():
        value = int(reply)
        if value <= 2**63 - 1 - charged:
            return value
    return None


def check_rate_reply(
    reply: object, *, now: float, want: int, fair_rate: float, cap: float, lease_for: float
) -> Grant:
    """The :class:`~lowtide.limiter.rates.Grant` the rate-lease script answered, if it can be
    one: a rate of at most ``fair_rate``, a burst and a count left of at most ``cap``, a lease
    ending within ``lease_for`` of ``now``, a fill (or -1) and an addition of at most the
    burst, at most ``want`` tokens granted and a wait of at most ``lease_for``; else
    BadState."""
    if isinstance(reply, list | tuple) and len(reply) == 8:
        rate = _float(reply[0], fair_rate * (1 + 1e-6) + 1e-9)
        burst = _int(reply[1])
        until = _float(reply[2], now + lease_for + 1.0)
        fill = _int(reply[3], lo=-1)
        added = _int(reply[4])
        granted = _int(reply[5])
        retry = _float(reply[6], lease_for + 1e-3)
        left = _int(reply[7])
        if (
            rate is not None
            and burst is not None
            and burst <= cap
            and until is not None
            and until >= now - 1.0
            and fill is not None
            and fill <= burst
            and added is not None
            and added <= burst
            and granted is not None
            and granted <= want
            and retry is not None
            and left is not None
            and left <= cap
        ):
            return Grant(rate, burst, until, fill, added, granted, retry, left)
    raise BadState(f"token bucket answered {shown(reply)}")


def _int(value: object, lo: int = 0) -> int | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        try:
            value = int(value) if len(value) <= 20 else None
        except ValueError:
            return None
    return whole(value, lo=lo, hi=2**63 - 1)


def _float(value: object, hi: float) -> float | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        try:
            value = float(value) if len(value) <= 40 else None
        except ValueError:
            return None
    return number(value, lo=0.0, hi=hi)


class Penalties:
    """The shared penalties of one limiter (see module docs)."""

    def __init__(
        self,
        hub: CacheHub,
        name: str,
        *,
        per_tenant: bool,
        max_penalty: float,
        on_change: Callable[[Key | None], None],
    ) -> None:
        self.name = name
        #: the longest penalty written or honoured (seconds)
        self.max_penalty = max_penalty
        #: penalties read back and ignored (not a number, too far ahead, unreadable)
        self.bad = 0
        self._warnings = Warnings(log)
        self.cache: Cache = hub.caches.cache(
            f"{name}.penalty",
            pushed_state(
                # penalties change only through penalize(), whose writes are pushed: L1 may
                # keep the answer "no penalty" long (except with no push at all)
                max_staleness=unpushed_bound(hub),
                entry_bytes=300,
                fail_safe=False,
                max_value_bytes=64,
                per_tenant=per_tenant,
            ),
            component="control",
            codec=None,
        )
        self.cache.watch(on_change)

    async def read(self, kw: dict[str, Any], now: float) -> float | None:
        """The tenant's penalty deadline if one is in force and well-formed (at most 1 GET);
        None otherwise (also when Redis cannot tell)."""
        try:
            value = await self.cache.get("until", **kw)
        except RedisUnavailable:
            return None
        except LowtideError as exc:  # unreadable, WRONGTYPE: no penalty
            value = exc
        if value is None:
            return None
        until = number(value, lo=0.0, hi=now + self.max_penalty + CLOCK_SLACK)
        if until is None:
            self.bad += 1
            self._warnings.warn(
                "penalty",
                "rate limiter %r: ignoring a penalty that is not a deadline within "
                "max_penalty (%gs): %s",
                self.name,
                self.max_penalty,
                shown(value),
            )
            return None
        return until if until > now else None

    async def write(self, kw: dict[str, Any], until: float, retry_after: float) -> None:
        """Share a penalty until ``until`` (1 SET PX ``retry_after``)."""
        await self.cache.set("until", round(until, 3), ttl=retry_after, **kw)


def unpushed_bound(hub: CacheHub) -> float:
    """How long pushed control state may stay in L1: long with push, the bound without."""
    return hub.settings.max_staleness if hub.settings.invalidation == "ttl" else 3600.0


def default_max_penalty(per: float) -> float:
    """``max_penalty`` when none is given: an hour, or ten windows if that is longer."""
    return max(3600.0, 10 * per) if math.isfinite(per) else 3600.0
