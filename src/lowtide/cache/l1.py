"""L1 of one cache: its :class:`~lowtide.cache.store.L1Store`, with the rules of
:mod:`lowtide.cache.freshness` applied to it.

:class:`L1` fills entries with their deadlines, applies the echo verdict of a write, swallows
the echo of this process's own write when a push arrives, and answers fail-safe reads. It sends
no command; :class:`~lowtide.cache.tiered.Cache` decides when each of these happens. The hit
paths of ``Cache.get`` and ``Cache.get_or_load`` read :attr:`L1.store` directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, assert_never

from lowtide.cache.freshness import (
    LOOKS_PER_BOUND,
    Demote,
    Drop,
    Fill,
    Verdict,
    fill_deadlines,
    fresh_cap,
    has_stale,
    throttled_until,
)
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import ABSENT, ENTRY_OVERHEAD, LOADED_NONE, Entry, Key, L1Store
from lowtide.cache.unseen import Unseen

__all__ = ["L1"]


class L1:
    """The in-process side of one cache (see module docs)."""

    __slots__ = (
        "_now",
        "_tracking_keepalive",
        "look_period",
        "on_capped",
        "options",
        "stats",
        "store",
        "unseen",
    )

    def __init__(
        self,
        options: CacheOptions,
        stats: CacheStats,
        *,
        now: Callable[[], float],
        tracking_keepalive: Callable[[], float | None],
    ) -> None:
        self.options = options
        self.stats = stats
        #: monotonic seconds (every L1 deadline is on this clock)
        self._now = now
        #: see :func:`~lowtide.cache.freshness.fresh_cap`
        self._tracking_keepalive = tracking_keepalive
        share = options.max_tenant_share if options.per_tenant else 1.0
        self.store = L1Store(
            max_entries=options.max_entries,
            max_bytes=options.max_bytes,
            tenant_entries=max(1, int(options.max_entries * share)),
            tenant_bytes=max(1, int(options.max_bytes * share)),
        )
        #: pushes and removals of keys with no entry (what a load may skip the GET on)
        self.unseen = Unseen(
            options.ttl, options.max_entries, self.store, now=now, keepalive=tracking_keepalive
        )
        self.store.on_remove = self.unseen.heard
        #: called when a copy is filled that lapses before its Redis value does
        self.on_capped: Callable[[], None] | None = None
        #: how long a renewal's finding that a Redis copy expired holds (one look)
        self.look_period = min(options.ttl, options.max_staleness) / LOOKS_PER_BOUND

    def fill(
        self,
        k: Key,
        value: Any,
        size: int,
        lifetime: float,
        *,
        echo: int,
        stale_ok: bool = True,
        demoted: bool = False,
        sent: float | None = None,
    ) -> None:
        """Keep ``value`` (``size`` encoded bytes, alive for ``lifetime`` seconds) for ``k``
        (see :func:`~lowtide.cache.freshness.fill_deadlines`), expecting ``echo`` pushes of
        this process's own write."""
        store = self.store
        if size + ENTRY_OVERHEAD > store.tenant_bytes:
            store.drop(k)  # would evict a whole tenant's share: serve it from L2 instead
            self.unseen.heard(k)  # maybe this process's own write: not known absent
            return
        now = self._now()
        cap = fresh_cap(self.options, tracking_keepalive=self._tracking_keepalive())
        d = fill_deadlines(
            now, lifetime, cap, self.options, stale_ok=stale_ok, demoted=demoted, sent=sent
        )
        e = Entry(
            value,
            size=size + ENTRY_OVERHEAD,
            epoch=store.epoch,
            fresh_until=d.fresh_until,
            stale_until=d.stale_until,
            refresh_at=d.refresh_at,
            echo=echo,
        )
        if stale_ok:  # a Redis copy that lives `lifetime` more (at least: see l2_gone)
            e.l2_until = now + lifetime
        store.put(k, e)
        if cap < lifetime and self.on_capped is not None:
            self.on_capped()  # the copy lapses before its Redis value (cache.renew)

    def keep(
        self,
        k: Key,
        value: Any,
        size: int,
        ttl: float,
        verdict: Verdict,
        *,
        sent: float | None = None,
    ) -> None:
        """Apply the :func:`~lowtide.cache.freshness.after_write` verdict of a write sent at
        ``sent`` (its copy is fresh from then: never past the Redis copy's expiry)."""
        if sent is not None:
            ttl -= max(0.0, self._now() - sent)  # the Redis copy's life began when it was sent
        match verdict:
            case Fill(echo=echo, own_echo=own_echo):
                self.fill(k, value, size, ttl, echo=echo, sent=sent)
                e = self.store.map.get(k)
                if own_echo and e is not None:
                    e.own_echo = True
            case Demote():
                self.fill(k, value, size, ttl, echo=0, demoted=True)
            case Drop():
                self.store.drop(k)  # cannot prove the copy current: read it again next time
            case _:
                assert_never(verdict)

    def keep_private(
        self,
        k: Key,
        value: Any,
        size: int,
        lifetime: float,
        ident: int,
        *,
        sent: float | None,
        echo: int = 0,
    ) -> None:
        """Keep a value marked "no copies" for fail-safe reads only, remembering its envelope
        expiry (``ident``) and until when a copy would have been fresh (:meth:`would_hit`);
        ``echo``: the message of this process's own write is still to come (swallowed)."""
        store = self.store
        if size + ENTRY_OVERHEAD > store.tenant_bytes:
            store.drop(k)
            self.unseen.heard(k)
            return
        now = self._now()
        cap = fresh_cap(self.options, tracking_keepalive=self._tracking_keepalive())
        d = fill_deadlines(now, lifetime, cap, self.options, sent=sent)
        e = Entry(
            value,
            size=size + ENTRY_OVERHEAD,
            epoch=store.epoch,
            fresh_until=now,
            stale_until=d.stale_until,
        )
        e.ident = ident
        e.shadow_until = d.fresh_until
        e.echo = echo
        store.put(k, e)

    def would_hit(self, k: Key, ident: int, size: int) -> bool:
        """True if a read of ``k`` that found the value with envelope expiry ``ident`` (and
        ``size`` encoded bytes) would have been answered by a copy, had copies been kept."""
        e = self.store.map.get(k)
        return (
            e is not None
            and e.ident == ident
            and e.size == size + ENTRY_OVERHEAD
            and e.shadow_until > self._now()
        )

    def invalidate(self, k: Key, *, expiry: bool | None = False) -> bool:
        """A push named ``k``: swallow it if it is the echo of this process's own write (True),
        else make the entry never fresh again (kept for fail-safe reads) and return False.

        ``expiry``: the message says Redis removed an expired value (keyspace notifications'
        ``expired``). It is never the echo a writer waits for, and while one is awaited it says
        nothing about the written value: it is the removal of the value the write replaced
        (:class:`lowtide.redis.keyspace.Expired`), so the entry is kept as it is (True). None:
        the push does not say whether it is a write or an expiry (CLIENT TRACKING)."""
        e = self.store.map.get(k)
        if e is None:
            self.unseen.heard(k, gone=expiry)
            return False
        if e.echo > 0:
            if expiry:
                return True
            e.echo -= 1
            self.stats.echoes += 1
            return True
        if not e.own_echo:  # this process's own write coming back says nothing new
            self._heard_of(e)
        # another writer changed it (or, with own_echo, most likely this process's write came
        # back): never fresh again, but kept as the last known value for fail-safe reads (a
        # read while Redis answers replaces or drops it)
        e.fresh_until = 0.0
        e.shadow_until = 0.0
        e.refresh_at = math.inf
        if e.own_echo:
            e.own_echo = False
        else:
            e.superseded = True
        self.stats.invalidations += 1
        return False

    def _heard_of(self, e: Entry) -> None:
        # what a push says about the Redis copy: before the copy's known expiry, a write
        # replaced it (the new copy lives about `ttl` from now: a late estimate, so the cache
        # never guesses it gone early); after it, the first push is the expiry's own removal
        # and a second one a new copy
        if not e.l2_until:
            return
        now = self._now()
        if now < e.l2_until or e.gone:
            e.l2_until, e.gone = now + self.options.ttl, False
        else:
            e.gone = True

    def l2_gone(self, e: Entry) -> bool:
        """True if Redis is known to hold no copy of ``e``'s key: the copy this process last
        heard of has expired (its removal was pushed, or a margin for clocks has passed), and
        with CLIENT TRACKING active since that was learned (same epoch) no push told of a new
        one; without verified pushes, a renewal look found it gone less than a look ago
        (:mod:`lowtide.cache.renew`). A loader may then store
        what it loads (``SET NX``) without reading Redis first; if the guess is wrong, the
        ``NX`` keeps the copy Redis holds."""
        if not e.l2_until or e.epoch != self.store.epoch:
            return False
        if self._tracking_keepalive() is None:
            # no push tells of a new copy: only a renewal's MGET that found the expired copy
            # gone, less than a look ago (cache.renew; a fill since is caught by the NX)
            return e.gone and not e.superseded and self._now() - e.absent_at < self.look_period
        if e.gone:  # a push came after the expiry: its removal
            return True
        return self._now() >= e.l2_until + min(1.0, 0.02 * self.options.ttl)

    def expired_in_l2(self, k: Key) -> bool:
        """Redis answered that ``k`` has no value: True if that is the expiry of the copy this
        process knew of (its known life is over), in which case the entry stays as the last
        good value for fail-safe (never fresh, its Redis copy gone); False otherwise (a delete,
        or nothing known: the caller drops it)."""
        e = self.store.map.get(k)
        if e is None or not e.l2_until or e.value is ABSENT or e.value is LOADED_NONE:
            return False
        if self._now() < e.l2_until - min(1.0, 0.02 * self.options.ttl):
            return False
        e.fresh_until = 0.0
        e.shadow_until = 0.0
        e.refresh_at = math.inf
        e.gone = True
        return True

    def refresh_plan(self, e: Entry, lifetime: float) -> bool | None:
        """An eager refresh of ``e`` (a copy of ``lifetime``) without reading Redis first:
        with CLIENT TRACKING and ``e`` still fresh, Redis holds this very copy (any write
        would have been pushed) until ``e.l2_until``. True: its last ``1 - eager_refresh`` of
        life has begun, load and overwrite it; False: not yet (the refresh is re-armed for
        then); None: not known here (read Redis as usual)."""
        eager, now = self.options.eager_refresh, self._now()
        if eager is None or not e.l2_until or e.epoch != self.store.epoch:
            return None
        if e.fresh_until <= now or self._tracking_keepalive() is None:
            return None
        due = e.l2_until - lifetime * (1 - eager)
        if now < due:
            e.refresh_at = due
            return False
        return True

    def has_stale(self, k: Key) -> bool:
        """True if fail-safe could answer for ``k`` now."""
        return has_stale(self.store.map.get(k), self._now(), fail_safe=self.options.fail_safe)

    def has_last_good(self, k: Key) -> bool:
        """True if a slow read of ``k`` may be answered from L1 (soft timeout): a fail-safe
        value that no push has superseded."""
        e = self.store.map.get(k)
        return e is not None and not e.superseded and self.has_stale(k)

    def stale(self, k: Key) -> Any:
        """Fail-safe: the last good value of ``k`` if still allowed (counted), else None."""
        e = self.store.map.get(k)
        if e is None or not has_stale(e, self._now(), fail_safe=self.options.fail_safe):
            return None
        self.stats.stale_served += 1
        return e.value

    def stale_for_failed_load(self, k: Key) -> Any:
        """:meth:`stale` after a loader failed; a value served is then fresh again for
        ``fail_safe_throttle`` so the loader is not hammered."""
        e = self.store.map.get(k)
        stale = self.stale(k)
        if stale is not None and e is not None:
            # throttle: answer with the stale value for a while instead of hammering the loader
            e.epoch = self.store.epoch
            e.fresh_until = throttled_until(e, self._now(), self.options.fail_safe_throttle)
            e.refresh_at = math.inf
        return stale
