"""The Redis side of a reservation: one command for a fixed window, one script for a bucket.

* **Fixed window**, where the server pushes changes (invalidation ``auto``, ``tracking`` or
  ``keyspace``): one key per window, ``<ns>:r:<name>:<tenant>:w<window>``, living until one
  window after its own ends. A hub that knows the key exists (it reserved in this window, or
  heard a change of it: :mod:`lowtide.limiter.pushes`) sends ``INCRBY``; else ``SET NX PX``,
  which creates it with this reservation and its life in one command (found existing: then
  ``INCRBY``, a second command; only when two hubs' first reservations in a window cross
  within a push's delivery time, or the listener is down). Every hub hears every
  reservation, which tells it when the window is spent.
* **Fixed window**, without pushes (``pubsub``, ``ttl``): ``HINCRBY
  <ns>:r:<name>:<tenant>:h<k> <window> <n>`` where the hash ``h<k>``
  holds the counters of a span of consecutive windows (about an hour, 100 to 500 windows:
  :func:`~lowtide.limiter.core.windows_per_key`), one field each; each tenant's spans begin at
  their own window (:func:`~lowtide.limiter.core.key_phase`), so hashes do not all begin at
  once. The hash needs an expiry, set by
  ``PEXPIRE`` only when this hub's increment created its window's field and this hub has not
  yet seen that hash exist; so a window's first reservation costs one command, and the expiry
  about one more per hub per span in which it reserves (a hash lives until its last window
  ends, plus one window).

  Either way the reply is the fleet's counter for the window. The layout follows the
  invalidation setting, which every hub of a fleet shares.
* **Token bucket**: one script (``GET`` + ``SET PX`` inside, 3 billed units) renews this hub's
  rate lease and takes shared tokens (see :mod:`lowtide.limiter.rates`): a hub at steady
  demand calls it about once per 40 s.

Replies are checked (:mod:`lowtide.limiter.state`) before they grant anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from typing import TYPE_CHECKING

from lowtide.errors import LowtideError
from lowtide.keys import build_key
from lowtide.limiter.core import (
    counter_key_end,
    counter_key_index,
    fixed_window_grant,
    key_phase,
    next_lease_size,
    window_end,
    window_index,
    window_lease_size,
    windows_per_key,
)
from lowtide.limiter.lease import Lease
from lowtide.limiter.pushes import WindowPushes, windowed
from lowtide.limiter.state import check_rate_reply, check_window_reply
from lowtide.redis.scripts import Script
from lowtide.tenancy import Attributions

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["DEMAND_PERIOD", "LEASE_FOR", "RATES", "Reserver"]

RATES = Script.from_package("rate_lease")
#: how long a token bucket's rate lease lasts (renewed when a third of it is left); a hub that
#: stops holds its share at most this long
LEASE_FOR = 60.0
#: a hub stops using its lease this long before it ends (hubs' clocks differ a little)
LEASE_SLACK = 1.0
#: the token bucket counts its demand (asks) over periods of at most this many seconds
DEMAND_PERIOD = 10.0


class Reserver:
    """Sends one limiter's reservations (see module docs)."""

    def __init__(self, hub: HubView, name: str, per: float, family: str, *, windows: bool) -> None:
        self._hub = hub
        #: this limiter's name for its rate leases (unique per process and limiter)
        self._hub_id = secrets.token_hex(8)
        self._ns = hub.settings.namespace
        self._name = name
        self._per = per
        self._span = windows_per_key(per)
        self._att = Attributions("limiter", family)
        #: changes of this limiter's window keys heard (fixed windows counted in one key per
        #: window), or None (span hashes, or a token bucket)
        self.pushes = WindowPushes(hub, name, per) if windows and windowed(hub) else None

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
        if self.pushes is not None:
            return await self._increment_window(tenant, lease, window, now, n, self.pushes)
        span = self._span
        phase = key_phase(self._name, tenant, span)
        index = counter_key_index(window, span, phase)
        key = build_key(self._ns, "limiter", self._name, tenant, f"h{index}")
        gw = self._hub.gateway
        att = self._att(tenant)
        counter = check_window_reply(await gw.call(att, "HINCRBY", key, str(window), n), n)
        if counter == n and lease.key_seen != index:
            # this increment created the window's field, and perhaps the hash: give it a life
            end = counter_key_end(index, self._per, span, phase)
            ttl_ms = math.ceil((end - now + self._per) * 1000)
            try:
                await gw.call(att, "PEXPIRE", key, ttl_ms)
            except LowtideError:
                return counter  # the next field this hub creates in it tries again
        lease.key_seen = index
        return counter

    async def _increment_window(
        self,
        tenant: str | None,
        lease: Lease,
        window: int,
        now: float,
        n: int,
        pushes: WindowPushes,
    ) -> int:
        key = build_key(self._ns, "limiter", self._name, tenant, f"w{window}")
        gw = self._hub.gateway
        att = self._att(tenant)
        if lease.key_seen != window and not pushes.heard(tenant, window):
            # let the listener read a push already on its socket: another hub may have just
            # created the key (a crossed SET NX costs a second command)
            await asyncio.sleep(0)
        if lease.key_seen != window and not pushes.heard(tenant, window):
            # nobody is known to have reserved in this window: create its counter with this
            # reservation and a life of one window after its end (1 command)
            ttl_ms = math.ceil((window_end(window, self._per) - now + self._per) * 1000)
            created = await gw.call(att, "SET", key, str(n), "NX", "PX", ttl_ms)
            lease.key_seen = window
            if created is not None:
                return n
        lease.key_seen = window
        counter = check_window_reply(await gw.call(att, "INCRBY", key, n), n)
        if counter == n:  # the key vanished meanwhile (evicted, deleted): give it a life again
            ttl_ms = math.ceil((window_end(window, self._per) - now + self._per) * 1000)
            with contextlib.suppress(LowtideError):
                await gw.call(att, "PEXPIRE", key, ttl_ms)
        return counter

    async def bucket(
        self,
        tenant: str | None,
        lease: Lease,
        *,
        now: float,
        mono: float,
        want: int,
        fleet: int,
        share: int,
        limit: int,
        cap: float,
        horizon: float,
    ) -> None:
        """Renew (or start) this hub's rate lease on the tenant's bucket, sized to its demand,
        and take shared tokens (spent within ``horizon``): at least ``want`` if any, doubling
        while they are used up within ``horizon``, at most ``share``; see
        :mod:`lowtide.limiter.rates`. Raises as :meth:`window` does."""
        period = min(self._per, DEMAND_PERIOD)
        rate = limit / self._per
        fair_rate = rate / max(1, fleet)
        if want > 0:  # a burst beyond the local bucket: shared takes double while used up fast
            remaining = lease.fleet_remaining if lease.reserved_window >= 0 else limit
            size = next_lease_size(
                lease.size,
                lasted=now - lease.granted_at,
                horizon=horizon,
                remaining=remaining,
                fleet=fleet,
                cap=share,
            )
            want = min(share, max(want, size))
        into = now - lease.counted_window * period
        pace = lease.asked() / max(into, period / 10) * period
        expected = max(lease.demand or 0.0, pace)  # asks per period
        want_rate = (expected + 2 * math.sqrt(expected) + 1) / period
        want_burst = math.ceil(2 * math.sqrt(expected)) + 2
        # the local bucket stops refilling at the old rate now: the script starts the new one
        # from `now` (if this call fails, it stays stopped until the next renewal)
        lease.refill(mono)
        lease.rate = 0.0
        key = build_key(self._ns, "limiter", self._name, tenant, "rates")
        reply = await self._hub.gateway.run_script(
            self._att(tenant),
            RATES,
            [key],
            [
                f"{now:.6f}",
                self._hub_id,
                f"{want_rate:.9g}",
                want_burst,
                f"{LEASE_FOR:.6f}",
                want,
                f"{fair_rate:.9g}",
                f"{rate:.9g}",
                f"{cap:.6f}",
            ],
        )
        g = check_rate_reply(
            reply, now=now, want=want, fair_rate=fair_rate, cap=cap, lease_for=LEASE_FOR
        )
        lease.rate, lease.burst, lease.local_at = g.rate, g.burst, mono
        lease.local = min(float(g.burst), g.fill if g.fill >= 0 else lease.local + g.added)
        span = g.until - now
        if g.rate > 0:  # stop a slack before the lease ends (clocks differ a little)
            lease.rate_until = mono + span - min(LEASE_SLACK, span / 10)
            lease.renew_at = mono + span * 2 / 3
        else:  # every token is leased to others: ask again when one may be free
            lease.end_rate_lease()
            lease.renew_at = mono + max(period / 10, min(g.retry, period))
        lease.grant(g.granted, mono + horizon)  # horizon after the request was sent
        lease.fleet_remaining = g.left
        lease.shared_after = now + min(g.retry, period) if g.granted < want else 0.0
        if want > 0:
            lease.size, lease.granted_at = want, now
        lease.reserved_window = window_index(now, self._per)
