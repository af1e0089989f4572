"""The Redis side of a reservation: one command for a fixed window, one script for a bucket.

* **Fixed window**: one key per window, ``<ns>:r:<name>:<tenant>:w<window>``, living until one
  window after its own ends. A hub that knows the key exists (it reserved in this window, or
  heard a change of it: :mod:`lowtide.limiter.pushes`) sends ``INCRBY``; else ``SET NX PX``,
  which creates it with this reservation and its life in one command (found existing: then
  ``INCRBY``, a second command: when two hubs' first reservations in a window cross within a
  push's delivery time, and for every first reservation after another hub's where nothing is
  pushed, ``pubsub`` and ``ttl`` invalidation: there a hub whose first reservations mostly
  found the key, a cell busy on several hubs, sends ``INCRBY`` first, + ``PEXPIRE`` when that
  created the key after all; :data:`JOIN_GUESS`). The ``SET`` carries ``GET``: one that finds
  the counter already at the limit (other hubs spent the window) is the refusal itself, and
  nothing is added (Redis 7.0+; older servers get a plain ``SET NX``). The reply is the
  fleet's counter for the window. Where the server pushes changes, every hub hears every
  reservation, which tells it when the window is spent. One layout whatever the invalidation
  setting, so processes with different settings still share one counter.
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

from lowtide.context import Attribution
from lowtide.errors import LowtideError, RedisCommandError
from lowtide.keys import build_key
from lowtide.limiter.core import (
    fixed_window_grant,
    next_lease_size,
    window_end,
    window_index,
    window_lease_size,
)
from lowtide.limiter.lease import Lease
from lowtide.limiter.pushes import WindowPushes, pushed
from lowtide.limiter.state import check_rate_reply, check_window_reply, found_counter
from lowtide.redis.scripts import Script
from lowtide.tenancy import Attributions

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["DEMAND_PERIOD", "JOIN_GUESS", "JOIN_WEIGHT", "LEASE_FOR", "RATES", "Reserver"]

RATES = Script.from_package("rate_lease")
#: how long a token bucket's rate lease lasts (renewed when a third of it is left); a hub that
#: stops holds its share at most this long
LEASE_FOR = 60.0
#: a hub stops using its lease this long before it ends (hubs' clocks differ a little)
LEASE_SLACK = 1.0
#: the token bucket counts its demand (asks) over periods of at most this many seconds
DEMAND_PERIOD = 10.0


#: where nothing is heard (``pubsub``, ``ttl``), a hub whose first reservations found the
#: window's key below the limit more often than this (weighted; created: 0, found below the
#: limit: 1, found spent: no change, 1 command either way) sends ``INCRBY`` first: 1 command
#: when the key exists, 2 (+ ``PEXPIRE``) when it did not, against ``SET NX`` + ``INCRBY``
#: and 1. Above a half it pays on average; a margin above that keeps cells that two hubs use
#: now and then (where a run of finds is luck, not a busy cell) on ``SET NX``. Measured with
#: the demo's pub/sub run: 0.65 at a weight of 0.2 left its sparse cells' cost unchanged and
#: cut a dense cell's (4 hubs, limits of 10,000 per 10 s) limiter commands by a third
JOIN_GUESS = 0.65
#: weight of the latest window in :attr:`Lease.joined`
JOIN_WEIGHT = 0.2


def _learn(rate: float, found: bool) -> float:
    return rate + JOIN_WEIGHT * (float(found) - rate)


def _retrieved(task: asyncio.Future[object]) -> None:
    # a shielded command whose caller went away: its failure is not worth a warning
    if not task.cancelled():
        task.exception()


class Reserver:
    """Sends one limiter's reservations (see module docs)."""

    def __init__(self, hub: HubView, name: str, per: float, family: str, *, windows: bool) -> None:
        self._hub = hub
        #: this limiter's name for its rate leases (unique per process and limiter)
        self._hub_id = secrets.token_hex(8)
        self._ns = hub.settings.namespace
        self._name = name
        self._per = per
        self._att = Attributions("limiter", family)
        #: changes of this limiter's window keys heard (fixed window, invalidation setting
        #: ``auto``, ``tracking`` or ``keyspace``), else None
        self.pushes = WindowPushes(hub, name, per) if windows and pushed(hub) else None
        #: the server answers ``SET ... NX GET`` (Redis 7.0+, Valkey)
        self._nx_get = True

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
        # nothing owed: a window found spent by the first reservation's SET is not charged
        counter = await self._increment(
            tenant, lease, window, now, charge, limit=limit if owed == 0 else None
        )
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
        self,
        tenant: str | None,
        lease: Lease,
        window: int,
        now: float,
        n: int,
        *,
        limit: int | None,
    ) -> int:
        key = build_key(self._ns, "limiter", self._name, tenant, f"w{window}")
        gw = self._hub.gateway
        att = self._att(tenant)
        if lease.key_seen != window and not self._heard(tenant, window):
            # one turn of the loop: a push the listener has already read from its socket is
            # dispatched (another hub may have just created the key; a crossed SET NX costs a
            # second command). A push still unread on the socket may take longer.
            await asyncio.sleep(0)
        joining = False
        if lease.key_seen != window and not self._heard(tenant, window):
            # nobody is known to have reserved in this window
            joining = self.pushes is None and lease.joined > JOIN_GUESS
            if not joining:
                # create its counter with this reservation and a life of one window after
                # its end (1 command)
                found = await self._create(att, key, n, self._life_ms(window, now))
                lease.key_seen = window
                if found is None:
                    lease.joined = _learn(lease.joined, False)
                    return n
                held = found_counter(found, n)
                if limit is not None and held is not None and held >= limit:
                    # another hub's reservations spent the window before this one: refused
                    # without adding to the counter (as if the INCRBY had been sent and refused)
                    return held + n
                lease.joined = _learn(lease.joined, True)
        lease.key_seen = window
        counter = check_window_reply(await gw.call(att, "INCRBY", key, n), n)
        if joining and (counter == n or limit is None or counter - n < limit):
            lease.joined = _learn(lease.joined, counter != n)  # found spent: no change
        if counter == n:  # created by this INCRBY (a wrong guess, or the key vanished
            # meanwhile: evicted, deleted): give it a life
            # sent even if the caller gives up meanwhile (a key without a life stays forever)
            ttl_ms = self._life_ms(window, now)
            life = asyncio.ensure_future(gw.call(att, "PEXPIRE", key, ttl_ms))
            life.add_done_callback(_retrieved)
            with contextlib.suppress(LowtideError):
                await asyncio.shield(life)
        return counter

    async def _create(self, att: Attribution, key: str, n: int, ttl_ms: int) -> object:
        """``SET key n NX PX ttl_ms GET``: None if it created the counter, else what it found
        (``b""`` if the server refuses ``NX`` with ``GET``, before Redis 7.0: then a plain
        ``SET NX`` from now on)."""
        gw = self._hub.gateway
        if self._nx_get:
            try:
                return await gw.call(att, "SET", key, str(n), "NX", "PX", ttl_ms, "GET")
            except RedisCommandError as exc:
                if exc.code not in ("ERR", "NOPERM"):
                    raise
                self._nx_get = False
        created = await gw.call(att, "SET", key, str(n), "NX", "PX", ttl_ms)
        return None if created is not None else b""

    def _life_ms(self, window: int, now: float) -> int:
        """A window key's life from ``now``: until one window after the window's end (ms)."""
        return math.ceil((window_end(window, self._per) - now + self._per) * 1000)

    def _heard(self, tenant: str | None, window: int) -> int:
        return 0 if self.pushes is None else self.pushes.heard(tenant, window)

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
