"""The tiered cache: in-process L1 in front of Redis L2, kept correct by server-pushed invalidation.

Read path (:meth:`Cache.get`): a fresh L1 entry answers with **0 commands**; otherwise one
``GET`` (concurrent misses of one key share it: single-flight), whose reply fills L1 only if no
invalidation or flush for that key arrived while it was in flight (the race guard).

Write path (:meth:`Cache.set`, :mod:`~lowtide.cache.writes`): one ``SET ... PX`` (in pub/sub
mode ``SET ... PX GET``, plus a ``PUBLISH`` only when another process may hold what it
replaces), then L1 keeps what the race guard allows.

Freshness: an L1 entry is fresh for at most ``min(ttl, max_staleness)`` and never beyond the
L2 value's own expiry (carried in the value's envelope, so no PTTL). Any flush (listener lost,
FLUSHALL, mode change) demotes every entry at once: demoted entries are not served as fresh but
stay available for ``fail_safe_max`` seconds, to answer when Redis or the loader fails.

Modes: while the hub is degraded or suspended (or runs with no URL) the cache works on L1 alone:
writes fill L1 only, misses answer ``None`` or run the loader. When Redis comes back everything
written meanwhile is demoted and read again from L2.

This module holds the public API and the load orchestration; the rules live in
:mod:`~lowtide.cache.freshness` (pure), single-flight in :mod:`~lowtide.cache.flight`, reads
and their race guard in :mod:`~lowtide.cache.l2`, writes in :mod:`~lowtide.cache.writes`,
fills, echoes and fail-safe reads in :mod:`~lowtide.cache.l1` (over
:mod:`~lowtide.cache.store`), the codec, the size limit (applied to reads too) and unreadable
values in :mod:`~lowtide.cache.values`.

Names: ``key`` is the caller's key, ``k`` the L1 key ``(tenant, key)``, ``rk`` the Redis key
built from it; ``_now`` is the hub clock's monotonic time (L1 deadlines), ``L2.wall`` the
server-aligned wall time (envelope expiries).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lowtide._listeners import Listeners
from lowtide._validate import seconds
from lowtide.cache.adaptive import CopyPolicy
from lowtide.cache.decorator import Decorating
from lowtide.cache.envelope import copies_allowed
from lowtide.cache.flight import SingleFlight, SoftTimeout
from lowtide.cache.freshness import (
    answer,
    is_fresh,
    may_fill,
    negative_lifetime,
    refresh_reloads,
    remaining_life,
)
from lowtide.cache.l1 import L1
from lowtide.cache.l2 import L2, Guarded
from lowtide.cache.many import Batches
from lowtide.cache.observe import CacheRead, observers, report
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.purge import Purges, Purging, stamped
from lowtide.cache.renew import Renewal
from lowtide.cache.store import ABSENT, LOADED_NONE, Key
from lowtide.cache.values import Values
from lowtide.cache.views import LocalViews
from lowtide.cache.writes import Writes
from lowtide.codec import Codec, JsonCodec
from lowtide.context import _tenant
from lowtide.errors import LowtideError, RedisCommandError, RedisUnavailable, SerializationError
from lowtide.keys import build_key, family
from lowtide.tenancy import resolve_tenant

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["Cache", "CacheOptions", "CacheStats"]

log = logging.getLogger("lowtide.cache")
Loader = Callable[[], Awaitable[Any]]


def _not_a_read(*, would_hit: bool) -> None:
    """Stands for :meth:`CopyPolicy.read` where a reply is not a caller's read."""


class Cache(LocalViews, Batches, Purging, Decorating):
    """A named, tenant-namespaced tiered cache. Create it with :meth:`Lowtide.cache`.

    ``purge``/``purge_tag`` come from :mod:`~lowtide.cache.purge`, ``cached`` from
    :mod:`~lowtide.cache.decorator`, the L1-only views (``peek``, ``info``, ...) from
    :mod:`~lowtide.cache.views`."""

    def __init__(
        self,
        hub: HubView,
        name: str,
        options: CacheOptions,
        *,
        component: str = "cache",
        codec: Codec | None = None,
    ) -> None:
        ns = hub.settings.namespace
        build_key(ns, component, name, None, "")  # validates the name
        self.name = name
        self.options = options
        self.component = component
        self.codec: Codec = codec or JsonCodec()
        self.family = family(ns, component, name)
        self.stats = CacheStats()
        self._hub = hub
        self._what = f"cache {name!r}"
        self._now = hub.clock.monotonic
        self._l2 = L2(hub, component, name, batch=options.batch_reads)
        self._l1 = L1(
            options, self.stats, now=self._now, tracking_keepalive=self._l2.tracking_keepalive
        )
        self._store = self._l1.store
        self._purge = (
            Purges(hub, component, name, options, self._store) if options.purgeable else None
        )
        #: encoding, the size limit both ways, and keys whose L2 value could not be read
        self._values = Values(
            self.codec,
            options,
            hub.settings.max_value_bytes,
            self.stats,
            what=self._what,
            now=self._now,
            epoch=lambda: self._store.epoch,
        )
        #: in pub/sub mode: whether copies pay for the messages they need (cache.adaptive)
        self._policy = CopyPolicy(self.stats, enabled=options.adaptive, what=self._what)
        self._writes = Writes(
            self._l1, self._l2, self._values, self.stats, self._policy, now=self._now
        )
        self._map_get = self._store.map.get
        self._touch = self._store.touch
        self._per_tenant = options.per_tenant
        # concurrent L2 reads, and concurrent loads (with their background refreshes), by key
        self._reads = self._single_flight()
        self._loads = self._single_flight()
        self._watchers: Listeners[Key | None] = Listeners(log, f"{self._what}: watcher")
        #: copies capped by max_staleness, read again in batches before they lapse
        self._renewal = Renewal(
            hub,
            options,
            self._store,
            self._l2,
            self.stats,
            lambda k, raw, seen, sent: self._accept(k, raw, seen, sent, False),
            ready=self._purge.ready if self._purge is not None else None,
        )
        self._l1.on_capped = self._renewal.wanted

    def __repr__(self) -> str:
        return f"<Cache {self.component}:{self.name!r} entries={len(self._store)}>"

    # -- public API ---------------------------------------------------------------------------
    async def get(self, key: str, *, tenant: str | None = None) -> Any:
        """The value of ``key`` for the tenant, or ``None`` when there is none.

        0 commands on an L1 hit; 1 GET on a miss. While Redis is unavailable, the last known
        value (fail-safe) or ``None``.
        """
        if tenant is None and self._per_tenant:
            tenant = _tenant.get()
        # a per-tenant store never holds (None, key) and a shared one only holds those, so a
        # missing or forbidden tenant cannot hit here; the miss path raises for it
        k = (tenant, key)
        # the hot path: freshness.is_fresh written out, and the callables held by the instance
        # read into locals first (CPython 3.11 does not specialise ``self.attr()`` for them)
        map_get, now, store = self._map_get, self._now, self._store
        e = map_get(k)
        if e is not None and e.epoch == store.epoch and e.fresh_until > now():
            if e.seq <= store.old_seq:  # see L1Store.touch
                store.touch(k, e)
            self.stats.hits += 1
            return e.answer  # None for a negative entry
        k = (self._check_tenant(tenant), key)
        found, value, _ = await self._read(k)
        return value if found else None

    async def get_or_load(
        self,
        key: str,
        loader: Loader,
        *,
        ttl: float | None = None,
        tenant: str | None = None,
        tags: Sequence[str] = (),
    ) -> Any:
        """The value of ``key``, loading it with ``await loader()`` on a miss (stored with
        ``tags`` in a purgeable cache).

        Concurrent callers of one key in this process share one L2 read and one loader call.
        A loader returning ``None`` is remembered for ``negative_ttl`` (not written to L2).
        When the loader or Redis fails, the last good value is served for up to
        ``fail_safe_max``; with no such value the loader's exception propagates.
        """
        if tenant is None and self._per_tenant:
            tenant = _tenant.get()
        k = (tenant, key)
        map_get, clock, store = self._map_get, self._now, self._store  # see get
        e, now = map_get(k), clock()
        if e is not None and is_fresh(e, store.epoch, now) and e.value is not ABSENT:
            if e.seq <= store.old_seq:
                store.touch(k, e)
            self.stats.hits += 1
            if e.refresh_at <= now and k not in self._loads:
                e.refresh_at = math.inf
                self.stats.refreshes += 1
                self._loads.in_background(k, lambda: self._load(k, loader, ttl, True, tags))
            return e.answer  # None for LOADED_NONE (ABSENT does not answer here)
        k = (self._check_tenant(tenant), key)
        if not callable(loader):
            raise TypeError("loader must be an async callable taking no arguments")
        self.stats.misses += 1  # not fresh in L1 (hit-ratio dashboards count these)
        try:
            return await self._loads.join(
                k, lambda: self._load(k, loader, ttl, False, tags), soft=True
            )
        except SoftTimeout as slow:
            return slow.value

    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        tenant: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """Store ``value``: 1 SET (+1 PUBLISH in backplane mode), then L1 (``tags``: see
        :meth:`purge_tag`, purgeable caches only).

        Unserializable or oversized values raise (:class:`SerializationError`,
        :class:`ValueTooLarge`) and change nothing. While Redis is unavailable the value is
        kept in L1 only. A write that fails while the hub still uses Redis (every connection
        busy past the queue timeout, a timeout that did not degrade the hub) raises
        :class:`RedisUnavailable` and L1 keeps nothing of ``key``.
        """
        k = (self._check_tenant(tenant), key)
        rk = self._l2.key(k)
        ttl = self._ttl(ttl)
        payload = stamped(self._values, self._purge, k, value, tags, ttl)
        await self._writes.store(k, rk, value, payload, ttl)

    async def delete(self, key: str, *, tenant: str | None = None) -> None:
        """Remove ``key`` from L2 (1 DEL, +1 PUBLISH in backplane mode) and from L1; raises as
        :meth:`set` does. Cancelled by its caller, the DEL still runs to its end."""
        k = (self._check_tenant(tenant), key)
        await self._writes.remove(k, self._l2.key(k))

    async def aclose(self) -> None:
        """Stop this cache's background refreshes (the hub calls it on close)."""
        await self._renewal.aclose()
        await self._loads.aclose()
        await self._reads.aclose()
        await self._l2.aclose()

    # -- called by the registry ------------------------------------------------------------
    def _invalidate(self, k: Key, *, expiry: bool | None = False) -> None:
        self._values.forget(k)
        if self._l1.invalidate(k, expiry=expiry):
            return  # the echo of this process's own write
        if self._watchers:
            self._watchers.emit(k)

    def _demote(self) -> None:
        self._store.demote_all()
        if self._watchers:
            self._watchers.emit(None)

    def _forget_tenant(self, tenant: str) -> None:
        # what this process kept of the tenant while it was local-only (over its quota) may
        # be values Redis never got: drop them, not even fail-safe
        if self._store.drop_tenant(tenant) and self._watchers:
            self._watchers.emit(None)

    # -- reads and loads -----------------------------------------------------------------------
    async def _read(self, k: Key) -> tuple[bool, Any, float]:
        """L2 read of ``k`` (single-flight): ``(found, value, remaining L2 life)``."""
        self.stats.misses += 1
        if not self._l2.open:
            stale = self._l1.stale(k)
            return stale is not None, stale, 0.0
        try:
            found, value, remaining = await self._reads.join(k, lambda: self._fetch(k), soft=True)
        except SoftTimeout as slow:
            return True, slow.value, 0.0
        except RedisUnavailable:
            stale = self._l1.stale(k)
            return stale is not None, stale, 0.0
        return bool(found), value, float(remaining)

    def _observed(self, source: Literal["l2", "load"], started: float) -> None:
        seconds = time.perf_counter() - started
        report(CacheRead(self._hub.ledger, self.component, self.name, source, seconds))

    async def _fetch(self, k: Key) -> tuple[bool, Any, float]:
        refused = self._values.refused(k)
        if refused is not None:  # known unreadable: not downloaded again (see cache.values)
            raise refused
        if self._purge is not None:
            await self._purge.ready(k[0])
        sent = self._now()
        started = time.perf_counter() if observers else 0.0
        raw, seen = await self._l2.get(k[0], self._l2.key(k))
        if started:
            self._observed("l2", started)
        return self._accept(k, raw, seen, sent)

    def _accept(
        self, k: Key, raw: bytes | None, seen: int | None, sent: float, counted: bool = True
    ) -> tuple[bool, Any, float]:
        """Decode an L2 reply sent at ``sent`` and fill L1 if the race guard allows
        (``seen == 0``); the copy's freshness is counted from ``sent``. ``counted=False``
        (a renewal, not a caller's read) leaves the copy policy's read count alone."""
        fill = may_fill(seen, self._hub.distributed)
        publishes = self._l2.publishes
        read = self._policy.read if counted else _not_a_read
        if raw is None:
            if publishes:
                read(would_hit=False)
            self.stats.l2_misses += 1
            if self._l1.expired_in_l2(k):  # expired, not deleted: kept for fail-safe only
                return False, None, 0.0
            self._store.drop(k)  # L2 says there is no value: nothing stale may come back
            if fill:
                self._l1.fill(k, ABSENT, 0, self.options.ttl, echo=0, stale_ok=False, sent=sent)
            return False, None, 0.0
        try:
            expires_ms, stamp, payload = self._values.open(raw)  # refuses an oversized value
            remaining = remaining_life(expires_ms, self._l2.wall(), self.options.ttl)
            if remaining <= 0:  # the writer's deadline passed (Redis has not expired it yet)
                self.stats.l2_misses += 1
                return False, None, 0.0
            if self._purge is not None and self._purge.purged(k, stamp):
                self.stats.l2_misses += 1  # purged: absent, but there to overwrite (-1)
                self._store.drop(k)
                return False, None, -1.0
            value = self._values.decode(payload)
        except SerializationError as exc:
            self._values.refuse(k, exc, remember=fill)
            raise
        self.stats.l2_hits += 1
        if publishes and not copies_allowed(raw):
            # marked "no copies": its replacement will not be announced (cache.notify)
            would = self._l1.would_hit(k, expires_ms, len(payload))
            self.stats.private_reads += 1
            self.stats.would_hits += would
            read(would_hit=would)
            if fill:
                self._l1.keep_private(k, value, len(payload), remaining, expires_ms, sent=sent)
            return True, value, remaining
        if publishes:
            read(would_hit=False)
        if fill:
            self._l1.fill(k, value, len(payload), remaining, echo=0, sent=sent)
        return True, value, remaining

    async def _load(
        self, k: Key, loader: Loader, ttl: float | None, refresh: bool, tags: Sequence[str]
    ) -> Any:
        lifetime = self._ttl(ttl)
        e = self._map_get(k)
        plan = self._l1.refresh_plan(e, lifetime) if refresh and e is not None else None
        if plan is False and e is not None:  # the Redis copy has life enough: not due yet
            return answer(e.value)
        skip_l2 = (
            self._l1.unseen.absent(k)  # no entry, and no push named it for ttl (cache.unseen)
            if e is None
            else plan  # a due refresh of the copy Redis is known to hold: load and overwrite
            or (e.value is ABSENT and is_fresh(e, self._store.epoch, self._now()))
            or self._l1.l2_gone(e)  # its Redis copy expired, and no new one was pushed
        )
        guessed = skip_l2 and not plan and (e is None or e.value is not ABSENT)
        if guessed:
            self.stats.known_absent += 1
        l2_empty = not plan
        rk = self._l2.key(k)
        # did anyone write the key while it was read and loaded? then its value wins over ours
        # (begun before the read: a push handled between the read and the load counts too)
        guard = Guarded(self._l2.guard() if self._l2.open else None, (rk,))
        with guard:
            if not skip_l2 and self._l2.open:
                try:
                    found, value, remaining = await self._reads.join(k, lambda: self._fetch(k))
                except RedisUnavailable:
                    found, value, remaining = False, None, 0.0
                except (SerializationError, RedisCommandError) as exc:
                    # unreadable (another codec, a foreign writer, too large, WRONGTYPE): load
                    # and overwrite (counted and logged, rate-limited, by self._values)
                    log.debug("cache %r: unreadable value in Redis, reloading: %s", self.name, exc)
                    found, value, remaining = False, None, 0.0
                    l2_empty = False
                eager = self.options.eager_refresh
                if found and not (
                    refresh and refresh_reloads(remaining, lifetime, eager_refresh=eager)
                ):
                    return value
                if found or remaining < 0:
                    l2_empty = False
            # a purge while the loader runs makes its value pre-purge: stamped as of now, not
            # kept
            purge, at_ms = self._purge, self._purge.write_time(k, tags) if self._purge else None
            epoch = purge.epoch if purge else 0
            self.stats.loads += 1
            started = time.perf_counter() if observers else 0.0
            try:
                value = await loader()
                if started:
                    self._observed("load", started)
            except Exception:
                self.stats.load_errors += 1
                stale = self._l1.stale_for_failed_load(k)
                if stale is not None:
                    return stale
                raise
        seen = guard.seen[0]
        if value is None:
            if seen == 0:
                self._l1.fill(
                    k, LOADED_NONE, 0, negative_lifetime(self.options), echo=0, stale_ok=False
                )
            return None
        try:
            payload = stamped(self._values, purge, k, value, tags, lifetime, at_ms)
        except (LowtideError, TypeError):
            log.warning("cache %r: loader returned a value that cannot be cached", self.name)
            raise
        if seen != 0 or (purge is not None and purge.epoch != epoch):
            return value  # a concurrent write (or a flush) happened: neither store nor keep
        try:
            found = self._found if guessed else None  # a wrong guess brings Redis's copy
            await self._writes.store(k, rk, value, payload, lifetime, nx=l2_empty, found=found)
        except RedisCommandError:
            log.warning("cache %r: could not store a loaded value", self.name, exc_info=True)
        return value

    def _found(self, k: Key, raw: bytes, seen: int | None, sent: float) -> None:
        # a load's SET NX found a copy in Redis: keep it in L1 as a read would
        with contextlib.suppress(SerializationError):
            self._accept(k, raw, seen, sent)

    def _single_flight(self) -> SingleFlight:
        return SingleFlight(
            self.stats,
            soft_timeout=self.options.soft_timeout,
            lookup=self._map_get,
            has_stale=self._l1.has_last_good,
            log=log,
            what=self._what,
        )

    # -- keys and values ------------------------------------------------------------------------
    def _check_tenant(self, tenant: str | None) -> str | None:
        if tenant is not None and self._per_tenant:
            return tenant  # the common case, answered without the call (same answer)
        return resolve_tenant(tenant, per_tenant=self._per_tenant, what=self._what, strict=True)

    def _ttl(self, ttl: float | None) -> float:
        return self.options.ttl if ttl is None else seconds("ttl", ttl)
