"""The Redis side of a reservation: one command for a fixed window, one script for a bucket.

* **Fixed window**: ``HINCRBY <ns>:r:<name>:<tenant>:h<k> <window> <n>`` where the hash ``h<k>``
  holds the counters of :data:`~lowtide.limiter.core.WINDOWS_PER_KEY` consecutive windows, one
  field each. The reply is the fleet's counter for the window. The hash needs an expiry, set by
  ``PEXPIRE`` only when this hub's increment created its window's field and this hub has not
  yet seen that hash exist; so a window's first reservation costs one command, and the expiry
  about one more per hub per ``WINDOWS_PER_KEY`` windows in which it reserves (a hash lives
  until its last window ends, plus one window).
* **Token bucket**: one GCRA script (``GET`` + ``SET PX`` inside, 3 billed units) takes up to
  ``n`` tokens (see :func:`~lowtide.limiter.core.gcra_take`).

Replies are checked (:mod:`lowtide.limiter.state`) before they grant anything.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lowtide._untrusted import CLOCK_SLACK
from lowtide.errors import LowtideError
from lowtide.keys import build_key
from lowtide.limiter.core import (
    counter_key_end,
    counter_key_index,
    fixed_window_grant,
    next_lease_size,
    window_end,
    window_index,
    window_lease_size,
)
from lowtide.limiter.lease import Lease
from lowtide.limiter.state import check_bucket_reply, check_window_reply
from lowtide.redis.scripts import Script
from lowtide.tenancy import Attributions

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["GCRA", "Reserver"]

GCRA = Script.from_package("gcra_take")


class Reserver:
    """Sends one limiter's reservations (see module docs)."""

    def __init__(self, hub: HubView, name: str, per: float, family: str) -> None:
        self._hub = hub
        self._ns = hub.settings.namespace
        self._name = name
        self._per = per
        self._att = Attributions("limiter", family)

    async def window(
        self,
        tenant: str | None,
        lease: Lease,
        *,
        now: float,
        mono: float,
        share: int,
        limit: int,
        horizon: float,
    ) -> bool:
        """Reserve tokens of the window under way (server time ``now``, monotonic ``mono``) for
        ``lease``: what it should need until the window ends, at most ``share``
        (:func:`~lowtide.limiter.core.window_lease_size`), plus what it admitted locally in
        this window. True if the reply shows the window spent (then nothing more is asked in
        it: ``blocked_until`` its end).

        Raises BadState for a counter no lowtide writer could cause, RedisCommandError for
        an error reply, RedisUnavailable when Redis is away.
        """
        per = self._per
        window = window_index(now, per)
        lease.count_window(window)
        size = window_lease_size(
            demand=lease.demand or 0.0,
            asked=lease.asked(),
            into=now - window * per,
            left=window_end(window, per) - now,
            per=per,
            previous=lease.size,
            lasted=now - lease.granted_at,
            horizon=horizon,
            waiting=lease.waiting,
            cap=share,
        )
        # what this hub admitted on its own share while Redis was away, in this same window,
        # is charged now so the fleet counter stays an upper bound of admissions
        owed = lease.unreported if lease.local_window == window else 0
        charge = size + owed
        counter = await self._increment(tenant, lease, window, now, charge)
        lease.unreported = 0
        granted = max(0, fixed_window_grant(counter, charge, limit) - owed)
        lease.fleet_remaining = max(0, limit - counter)
        lease.window = window
        # usable until the window ends (a reply that arrives later is already too late)
        end = window_end(window, per)
        lease.grant(granted, mono + (end - now))
        lease.size, lease.granted_at, lease.reserved_window = size, now, window
        if counter < limit:
            return False
        lease.blocked_until = max(lease.blocked_until, end)
        return True

    async def _increment(
        self, tenant: str | None, lease: Lease, window: int, now: float, n: int
    ) -> int:
        index = counter_key_index(window)
        key = build_key(self._ns, "limiter", self._name, tenant, f"h{index}")
        gw = self._hub.gateway
        att = self._att(tenant)
        counter = check_window_reply(await gw.call(att, "HINCRBY", key, str(window), n), n)
        if counter == n and lease.key_seen != index:
            # this increment created the window's field, and perhaps the hash: give it a life
            ttl_ms = math.ceil((counter_key_end(index, self._per) - now + self._per) * 1000)
            try:
                await gw.call(att, "PEXPIRE", key, ttl_ms)
            except LowtideError:
                return counter  # the next field this hub creates in it tries again
        lease.key_seen = index
        return counter

    async def bucket(
        self,
        tenant: str | None,
        lease: Lease,
        *,
        now: float,
        mono: float,
        fleet: int,
        share: int,
        limit: int,
        interval: float,
        burst: float,
        horizon: float,
    ) -> None:
        """Take tokens from the tenant's GCRA bucket for ``lease``: a lease that doubles while
        used up within ``horizon`` (:func:`~lowtide.limiter.core.next_lease_size`), at most
        ``share``; they expire ``horizon`` after the request was sent (raises as
        :meth:`window` does)."""
        remaining = lease.fleet_remaining if lease.reserved_window >= 0 else limit
        size = next_lease_size(
            lease.size,
            lasted=now - lease.granted_at,
            horizon=horizon,
            remaining=remaining,
            fleet=fleet,
            cap=share,
        )
        # callers already queued behind this reservation are demand we can see
        size = max(size, min(lease.waiting + 1, share, max(1, remaining // (2 * fleet))))
        key = build_key(self._ns, "limiter", self._name, tenant, "tat")
        reply = await self._hub.gateway.run_script(
            self._att(tenant),
            GCRA,
            [key],
            [f"{now * 1000:.3f}", f"{interval * 1000:.6f}", f"{burst:.6f}", size],
        )
        max_wait_ms = (interval + horizon + CLOCK_SLACK) * 1000
        granted, retry_ms, left = check_bucket_reply(reply, max_wait_ms)
        lease.grant(granted, mono + horizon)
        lease.size, lease.granted_at = size, now
        lease.reserved_window = window_index(now, self._per)
        lease.fleet_remaining = left
        if granted == 0:
            lease.blocked_until = now + retry_ms / 1000
