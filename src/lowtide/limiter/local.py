"""Decisions while Redis is unavailable (down, slow past ``op_timeout``, or the hub suspended).

``on_redis_error`` chooses:

* ``local_share`` (default) stays within the limit: in the window under way when Redis went
  away, a hub admits beyond the tokens in hand only what remained at its last reservation in
  that window (the whole limit if it had made none), and only in a fleet of one; in windows
  that begin during the outage, ``limit // fleet size`` each (see
  :func:`~lowtide.limiter.core.fallback_budget`). What a hub admitted locally is charged to the
  fleet counter at its next reservation in the same window (``Lease.unreported``).
* ``allow`` admits everything; ``deny`` refuses everything.
"""

from __future__ import annotations

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
        self, hub: HubView, policy: OnRedisError, per: float, fleet_size: int | None
    ) -> None:
        self._hub = hub
        self.policy = policy
        self._per = per
        self._fleet_size = fleet_size
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
        if self.policy == "allow":
            return Decision(True, 0, 0.0)
        if self.policy == "deny":
            return Decision(False, 0, self._hub.settings.reconnect_min)
        w = window_index(now, self._per)
        if lease.local_window != w:
            lease.local_window, lease.local_used, lease.unreported = w, 0, 0
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
