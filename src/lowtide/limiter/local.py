"""Decisions while Redis is unavailable (down, slow past ``op_timeout``, or the hub suspended).

``on_redis_error`` chooses:

* ``local_share`` (default): in the window under way when Redis went away, a hub admits
  beyond the tokens in hand only what remained at its last reservation in that window (the
  whole limit if it had made none), and only in a fleet of one; in windows that begin during
  the outage, ``limit // fleet size`` each (see :func:`~lowtide.limiter.core.fallback_budget`).
  What a hub admitted locally is charged to the fleet counter at its next reservation in the
  same window (``Lease.unreported``). With the fleet size right, that stays within the limit
  when *every* hub has lost Redis. When only ``k`` hubs are away while the others still reach
  Redis, the connected hubs can spend the whole counter, which does not see the local
  admissions yet: a window that begins meanwhile can admit up to
  ``limit + k * (limit // fleet)``.
* ``allow`` admits everything; ``deny`` refuses everything.

A tenant's lease evicted at ``max_tenants`` must not hand the tenant a fresh local budget:
:meth:`LocalDecisions.keep` keeps a lease whose local admissions of the window under way are
not yet charged, and :meth:`LocalDecisions.forget` remembers what an evicted lease knew of its
latest window, so a lease that knows nothing of that window starts from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from lowtide.limiter.core import Decision, fallback_budget, window_end, window_index
from lowtide.limiter.lease import Lease
from lowtide.modes import Mode, ModeChange

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["LocalDecisions", "OnRedisError"]

OnRedisError = Literal["local_share", "allow", "deny"]


class LocalDecisions:
    """One limiter's decisions while Redis is unavailable (see module docs)."""

    def __init__(
        self,
        hub: HubView,
        policy: OnRedisError,
        per: float,
        fleet_size: int | None,
        limit: Callable[[], int],
    ) -> None:
        self._hub = hub
        self.policy = policy
        self._per = per
        self._fleet_size = fleet_size
        self._limit = limit
        #: local admissions are charged to the fleet counter later (Redis is configured)
        self._charged = hub.settings.url is not None
        #: the latest window an evicted lease knew anything of, and the most any of them knew
        #: was used of it (see :meth:`forget`)
        self.forgot_window = -1
        self.forgot_used = 0
        #: server time at which Redis became unavailable (None while distributed): the window
        #: under way then may already be in use by other hubs (see fallback_budget)
        self.outage_began: float | None = None if hub.distributed else hub.server_time()

    def on_mode(self, change: ModeChange) -> None:
        """Note when an outage began (and that it ended)."""
        if change.new is Mode.DISTRIBUTED:
            self.outage_began = None
        elif self.outage_began is None:
            self.outage_began = self._hub.server_time()

    def decide(self, lease: Lease, now: float, limit: int) -> Decision:
        """One decision without Redis, for a limit of ``limit`` per window."""
        lease.asked_other += 1
        if lease.blocked_until > now:  # set while its reservation was in flight (a penalty)
            return Decision(False, 0, lease.blocked_until - now)
        if self.policy == "allow":
            return Decision(True, 0, 0.0)
        if self.policy == "deny":
            return Decision(False, 0, self._hub.settings.reconnect_min)
        w = window_index(now, self._per)
        if lease.local_window != w:
            # a lease that knows nothing of this window may be an evicted one re-created: it
            # starts with what the evicted leases knew was used of it (under-use, at worst)
            forgot = w == self.forgot_window and lease.reserved_window != w
            lease.local_window, lease.local_used = w, self.forgot_used if forgot else 0
            lease.unreported = 0
        began = self.outage_began if self.outage_began is not None else now
        budget = fallback_budget(
            limit=limit,
            fleet=self._fleet_size or self._hub.fleet.size,
            window=w,
            outage_window=window_index(began, self._per),
            reserved_window=lease.reserved_window,
            remaining=lease.fleet_remaining,
        )
        if lease.local_used < budget:
            lease.local_used += 1
            lease.unreported += 1
            return Decision(True, budget - lease.local_used, 0.0)
        return Decision(False, 0, window_end(w, self._per) - now)

    def keep(self, lease: Lease) -> bool:
        """Whether ``lease`` must not be evicted at ``max_tenants``: a reservation is in flight
        for it, or it holds local admissions of the window under way not yet charged to the
        fleet counter (charged at its next reservation in that window; kept only that long,
        so memory stays bounded)."""
        if lease.pending is not None:
            return True
        if not self._charged or lease.unreported <= 0:
            return False
        return lease.local_window >= window_index(self._hub.server_time(), self._per)

    def forget(self, _tenant: str | None, lease: Lease) -> None:
        """``lease`` was evicted: remember, for this whole limiter, the latest window it knew
        anything of (it reserved in it, or admitted locally in it) and what it knew was used
        of it: the fleet counter at its last reservation, plus its own local admissions. A
        lease that knows nothing of that window (a tenant's lease re-created, or any other)
        starts its local budget there with the most any evicted lease knew was used."""
        window = lease.reserved_window
        if lease.local_used > 0:
            window = max(window, lease.local_window)
        if window < 0:
            return
        used = 0
        if lease.reserved_window == window:
            used += max(0, self._limit() - lease.fleet_remaining)
        if lease.local_window == window:
            used += lease.local_used
        if window > self.forgot_window:
            self.forgot_window, self.forgot_used = window, used
        elif window == self.forgot_window:
            self.forgot_used = max(self.forgot_used, used)
