"""Renewal: copies capped by ``max_staleness`` are read again in batches, before they lapse.

Without a verified server push (the pub/sub backplane, ``ttl`` mode, or CLIENT TRACKING before
its first keepalive), a copy in process memory may be served for ``max_staleness`` at most:
a write by a program that does not publish is invisible, and that bound is the promise. A
value that lives longer in Redis (``ttl`` above ``max_staleness``) would then be read again,
one ``GET`` per key, per process, per ``max_staleness`` in which it is read: on the demo's
workload in pub/sub mode, about 60 % of that mode's cache GETs.

:class:`Renewal` sends one ``MGET`` instead. Every ``max_staleness / 3`` it looks for the
copies that

* are fresh, hold a value (not "absent") and wait for no echo of this process's own write;
* were read since they were filled (:func:`~lowtide.cache.store.was_read`), or were renewed
  fewer than :data:`IDLE_RENEWALS` times in a row without a read: a copy lives on while it is
  read at least once in about five ``max_staleness`` (the demo's 300 s TTL at the default
  60 s; under CLIENT TRACKING a copy lives until its Redis value expires); one nobody reads is
  then left to lapse, so an idle key stops costing bandwidth;
* lapse before the next look plus half a period, while their Redis value lives on;

and reads them all again in one ``MGET`` (at most :data:`MAX_KEYS` keys and :data:`MAX_BYTES`
of copies per command; keys of every tenant together, charged to no tenant, like heartbeats).
Each reply goes through the same checks as a read's (race guard, envelope, size, codec, purge
markers): a changed value replaces the copy, a removed one drops it, and a copy renewed is
fresh for ``max_staleness`` counted from when the ``MGET`` was sent, so the bound holds
exactly as for a read. Renewed copies are in step, so one ``MGET`` per look carries all of
them.

**Expired copies ride along.** A look that sends an ``MGET`` anyway also asks for the copies
whose Redis value, as this process knows it, ends before the next look or has ended
(:func:`expiring`; checked at most :data:`IDLE_RENEWALS` times in a row after it is gone, and
only while a read may follow), at no extra command. If another process stored the key again,
the reply brings that value and the next read here is answered from memory; if the key is
still empty, the copy is marked gone at the ``MGET``'s send time, and a load before the next
look skips its ``GET`` (:meth:`~lowtide.cache.l1.L1.l2_gone`: without pushes nothing says when
another process fills the key, so the finding holds one look): it stores with ``SET ... NX
GET``, which brings Redis's copy if someone filled it meanwhile (one command either way; only
the loader call is spent).

Costs: at most one ``MGET`` per cache per ``max_staleness / 3`` per process (more only past
:data:`MAX_KEYS` or :data:`MAX_BYTES`), and only while such a copy is due; nothing in tracking
or keyspace mode once verified (copies are not capped there), nothing for a cache whose
``ttl`` is within ``max_staleness``. Not on Redis Cluster: an ``MGET`` there is split per hash
slot, so copies lapse and are read one by one as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from lowtide.cache.freshness import LOOKS_PER_BOUND, fresh_cap
from lowtide.cache.l2 import L2
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import ABSENT, LOADED_NONE, Key, L1Store, was_read
from lowtide.errors import SerializationError
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = [
    "IDLE_RENEWALS",
    "LOOKS_PER_BOUND",
    "MAX_BYTES",
    "MAX_KEYS",
    "Renewal",
    "batches",
    "due",
    "expiring",
]

log = logging.getLogger("lowtide.cache")

#: keys per MGET, and bytes the copies in one MGET held (a larger batch is several MGETs);
#: a value replaced meanwhile is still bounded by ``max_value_bytes`` like any read
MAX_KEYS: Final = 1_000
MAX_BYTES: Final = 1 << 20
#: renewals in a row a copy gets while nobody reads it (each buys two looks, ``2/3`` of
#: ``max_staleness``: with the last copy's own life, five ``max_staleness`` unread)
IDLE_RENEWALS: Final = 6

Accept = Callable[[Key, bytes | None, int | None, float], Any]


def due(store: L1Store, now: float, horizon: float) -> list[Key]:
    """The keys whose copies renewal reads again at ``now``: current epoch, fresh until no
    later than ``horizon``, read since filled or not yet idle too long, a value whose Redis
    copy outlives it, no echo awaited (see module docs)."""
    epoch = store.epoch
    out: list[Key] = []
    for k, e in store.map.items():
        if (
            e.epoch == epoch
            and now < e.fresh_until <= horizon
            and e.l2_until > e.fresh_until
            and (e.idle < IDLE_RENEWALS or was_read(e))
            and e.echo == 0
            and not e.superseded
            and e.value is not ABSENT
            and e.value is not LOADED_NONE
        ):
            out.append(k)
    return out


def expiring(store: L1Store, now: float, horizon: float, skip: list[Key]) -> list[Key]:
    """The keys whose Redis copy, as this process knows it, expires before ``horizon`` (or has
    expired), not in ``skip``: current epoch, a value, not superseded, no echo awaited, and
    checked fewer than :data:`IDLE_RENEWALS` times in a row without a read. They ride along in
    a look's ``MGET`` (see module docs)."""
    epoch = store.epoch
    taken = set(skip)
    out: list[Key] = []
    for k, e in store.map.items():
        if (
            e.epoch == epoch
            and 0 < e.l2_until <= horizon
            and (e.idle < IDLE_RENEWALS or (was_read(e) and not e.gone))
            and e.echo == 0
            and not e.superseded
            and e.value is not ABSENT
            and e.value is not LOADED_NONE
            and k not in taken
        ):
            out.append(k)
    return out


def batches(store: L1Store, keys: list[Key]) -> list[list[Key]]:
    """``keys`` cut into MGETs of at most :data:`MAX_KEYS` keys and :data:`MAX_BYTES` of the
    copies' sizes (a copy larger than that goes alone)."""
    out: list[list[Key]] = []
    batch: list[Key] = []
    size = 0
    for k in keys:
        e = store.map.get(k)
        n = e.size if e is not None else 0
        if batch and (len(batch) >= MAX_KEYS or size + n > MAX_BYTES):
            out.append(batch)
            batch, size = [], 0
        batch.append(k)
        size += n
    if batch:
        out.append(batch)
    return out


class Renewal(Periodic):
    """Renews one cache's capped copies in batches (see module docs)."""

    def __init__(
        self,
        hub: HubView,
        options: CacheOptions,
        store: L1Store,
        l2: L2,
        stats: CacheStats,
        accept: Accept,
        *,
        ready: Callable[[str | None], Any] | None = None,
    ) -> None:
        super().__init__(hub, min(options.ttl, options.max_staleness) / LOOKS_PER_BOUND)
        self._options = options
        self._store = store
        self._l2 = l2
        self._stats = stats
        self._accept = accept
        self._ready = ready
        self._now = hub.clock.monotonic
        #: False when copies never outlive ``max_staleness`` here (``ttl`` within it)
        self.useful = options.max_staleness < options.ttl

    def wanted(self) -> None:
        """A capped copy was filled: start looking (idempotent, cheap)."""
        if self.useful and self._hub.settings.url is not None:
            self.start()

    async def tick(self) -> None:
        """One look: renew every due copy (see module docs)."""
        capped = fresh_cap(self._options, tracking_keepalive=self._l2.tracking_keepalive())
        if capped >= self._options.ttl or not self._l2.open or self._l2.gateway.cluster:
            return
        now = self._now()
        horizon = now + 1.5 * self.interval
        keys = due(self._store, now, horizon)
        if keys:  # expiring copies ride along, never an MGET of their own
            keys += expiring(self._store, now, horizon, keys)
        for batch in batches(self._store, keys):
            await self._renew(batch)

    async def _renew(self, keys: list[Key]) -> None:
        if self._ready is not None:
            for tenant in {k[0] for k in keys}:
                await self._ready(tenant)  # purge markers known before any stamp is judged
        sent = self._now()
        replies, seens = await self._l2.mget(None, [self._l2.key(k) for k in keys])
        self._stats.renewals += 1
        self._stats.renewed += len(keys)
        store = self._store
        for k, raw, seen in zip(keys, replies, seens, strict=True):
            old = store.map.get(k)
            idle = 0 if old is None or was_read(old) else old.idle + 1
            try:
                self._accept(k, raw, seen, sent)
                new = store.map.get(k)
                if new is not None and new is not old:
                    new.idle = idle
                elif new is not None and new.gone:
                    # the expired copy is gone from Redis (kept for fail-safe): a load before
                    # the next look skips its GET (L1.l2_gone); unread, it is checked again
                    # at most IDLE_RENEWALS times
                    new.absent_at = sent if raw is None else 0.0
                    new.idle += 1
            except SerializationError:
                # replaced by something unreadable (counted and logged by the cache's values):
                # the next read meets it as a read would
                self._store.drop(k)
