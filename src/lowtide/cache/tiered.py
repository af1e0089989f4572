"""The tiered cache: in-process L1 in front of Redis L2, kept correct by server-pushed invalidation.

Read path (:meth:`Cache.get`): a fresh L1 entry answers with **0 commands**; otherwise one
``GET`` (concurrent misses of one key share it: single-flight), whose reply fills L1 only if no
invalidation or flush for that key arrived while it was in flight (the race guard).

Write path (:meth:`Cache.set`): one ``SET ... PX`` (plus one ``PUBLISH`` in pub/sub backplane
mode), then L1. The process's own write comes back as an invalidation; the writer counts the
echoes it has already seen and swallows the one still to come, so its fresh copy survives while
any later write by anyone still drops it.

Freshness: an L1 entry is fresh for at most ``min(ttl, max_staleness)`` and never beyond the
L2 value's own expiry (carried in the value's envelope, so no PTTL). Any flush (listener lost,
FLUSHALL, mode change) demotes every entry at once: demoted entries are not served as fresh but
stay available for ``fail_safe_max`` seconds, to answer when Redis or the loader fails.

Modes: while the hub is degraded or suspended (or runs with no URL) the cache works on L1 alone:
writes fill L1 only, misses answer ``None`` or run the loader. When Redis comes back everything
written meanwhile is demoted and read again from L2.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, assert_never

from lowtide._listeners import Listeners
from lowtide._validate import seconds
from lowtide.cache.envelope import unwrap, wrap
from lowtide.cache.flight import SingleFlight, SoftTimeout
from lowtide.cache.freshness import (
    Demote,
    Drop,
    Fill,
    Verdict,
    after_write,
    answer,
    fill_deadlines,
    fresh_cap,
    has_stale,
    is_fresh,
    may_fill,
    negative_lifetime,
    refresh_reloads,
    remaining_life,
    throttled_until,
)
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import ABSENT, ENTRY_OVERHEAD, LOADED_NONE, Entry, Key, L1Store
from lowtide.codec import Codec, JsonCodec
from lowtide.context import _tenant
from lowtide.errors import (
    LowtideError,
    RedisCommandError,
    RedisUnavailable,
    SerializationError,
    ValueTooLarge,
)
from lowtide.keys import build_key, family
from lowtide.modes import InvalidationMode
from lowtide.tenancy import Attributions, resolve_tenant

if TYPE_CHECKING:
    from lowtide.runtime import HubView, InvalidationFeed

__all__ = ["Cache", "CacheOptions", "CacheStats"]

log = logging.getLogger("lowtide.cache")
Loader = Callable[[], Awaitable[Any]]


class Cache:
    """A named, tenant-namespaced tiered cache. Create it with :meth:`Lowtide.cache`."""

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
        self._ns = ns
        self._now = hub.clock.monotonic
        # envelope expiries are compared on the server-aligned clock (set once a hub has read
        # the server's TIME, as limiters do), so machines with skewed clocks agree
        self._wall = hub.server_time
        share = options.max_tenant_share if options.per_tenant else 1.0
        self._store = L1Store(
            max_entries=options.max_entries,
            max_bytes=options.max_bytes,
            tenant_entries=max(1, int(options.max_entries * share)),
            tenant_bytes=max(1, int(options.max_bytes * share)),
        )
        self._map_get = self._store.map.get
        self._touch = self._store.touch
        self._fresh_cap = fresh_cap(options, tracking_keepalive=None)
        self._per_tenant = options.per_tenant
        self._what = f"cache {name!r}"
        # concurrent L2 reads, and concurrent loads (with their background refreshes), by key
        self._reads = self._single_flight()
        self._loads = self._single_flight()
        #: the ledger label of each tenant's commands
        self._att = Attributions(component, self.family)
        self._watchers: Listeners[Key | None] = Listeners(log, f"{self._what}: watcher")

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
        e = self._map_get(k)
        # freshness.is_fresh, written out: this is the hot path
        if e is not None and e.epoch == self._store.epoch and e.fresh_until > self._now():
            self._touch(k)
            self.stats.hits += 1
            value = e.value
            return None if value is ABSENT or value is LOADED_NONE else value
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
    ) -> Any:
        """The value of ``key``, loading it with ``await loader()`` on a miss.

        Concurrent callers of one key in this process share one L2 read and one loader call.
        A loader returning ``None`` is remembered for ``negative_ttl`` (not written to L2).
        When the loader or Redis fails, the last good value is served for up to
        ``fail_safe_max``; with no such value the loader's exception propagates.
        """
        if tenant is None and self._per_tenant:
            tenant = _tenant.get()
        k = (tenant, key)
        e = self._map_get(k)
        now = self._now()
        if e is not None and is_fresh(e, self._store.epoch, now) and e.value is not ABSENT:
            self._touch(k)
            self.stats.hits += 1
            if e.refresh_at <= now and k not in self._loads:
                e.refresh_at = math.inf
                self.stats.refreshes += 1
                self._loads.in_background(k, lambda: self._load(k, loader, ttl, refresh=True))
            value = e.value
            return None if value is LOADED_NONE else value
        k = (self._check_tenant(tenant), key)
        if not callable(loader):
            raise TypeError("loader must be an async callable taking no arguments")
        try:
            return await self._loads.join(
                k, lambda: self._load(k, loader, ttl, refresh=False), soft=True
            )
        except SoftTimeout as slow:
            return slow.value

    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tenant: str | None = None
    ) -> None:
        """Store ``value``: 1 SET (+1 PUBLISH in backplane mode), then L1.

        Unserializable or oversized values raise (:class:`SerializationError`,
        :class:`ValueTooLarge`) and change nothing. While Redis is unavailable the value is
        kept in L1 only.
        """
        k = (self._check_tenant(tenant), key)
        rk = self._rkey(k)
        ttl = self._ttl(ttl)
        payload = self._encode(value)
        await self._write(k, rk, value, payload, ttl)

    async def delete(self, key: str, *, tenant: str | None = None) -> None:
        """Remove ``key`` from L2 (1 DEL, +1 PUBLISH in backplane mode) and from L1."""
        k = (self._check_tenant(tenant), key)
        rk = self._rkey(k)
        self._store.drop(k)
        inv = self._inv()
        if not self._gateway_open():
            return
        cmds: list[tuple[Any, ...]] = [("DEL", rk)]
        if inv is not None and inv.publishes:
            cmds.append(("PUBLISH", inv.channel, rk))
        try:
            await self._send(k[0], cmds)
        except RedisUnavailable:
            return
        self._store.drop(k)  # a fill that raced with the delete

    async def get_many(self, keys: Iterable[str], *, tenant: str | None = None) -> dict[str, Any]:
        """``{key: value or None}`` for every key: L1 first, then one MGET for the rest."""
        t = self._check_tenant(tenant)
        out: dict[str, Any] = {}
        missing: list[str] = []
        now = self._now()
        epoch = self._store.epoch
        for key in keys:
            e = self._map_get((t, key))
            if e is not None and is_fresh(e, epoch, now):
                self._touch((t, key))
                self.stats.hits += 1
                out[key] = answer(e.value)
            else:
                out[key] = None
                missing.append(key)
        if not missing:
            return out
        self.stats.misses += len(missing)
        rks = [self._rkey((t, key)) for key in missing]
        if not self._gateway_open():
            for key in missing:
                out[key] = self._stale((t, key))
            return out
        inv = self._guard()
        tokens = [inv.begin(rk) for rk in rks] if inv is not None else []
        try:
            replies = await self._hub.gateway.call(self._att(t), "MGET", *rks)
        except RedisUnavailable:
            self._end_all(inv, rks, tokens)
            for key in missing:
                out[key] = self._stale((t, key))
            return out
        except BaseException:
            self._end_all(inv, rks, tokens)
            raise
        # end every token before decoding: a bad value below must not leave guards behind
        seens: list[int | None] = (
            [inv.end(rk, tok) for rk, tok in zip(rks, tokens, strict=True)]
            if inv is not None
            else [0] * len(rks)
        )
        for key, raw, seen in zip(missing, replies, seens, strict=True):
            found, value, _ = self._accept((t, key), raw, seen)
            out[key] = value if found else None
        return out

    async def set_many(
        self, items: Mapping[str, Any], *, ttl: float | None = None, tenant: str | None = None
    ) -> None:
        """Store several values in one round trip (1 SET each, +1 PUBLISH in backplane mode).

        Every value is encoded first: if one cannot be, nothing is written.
        """
        t = self._check_tenant(tenant)
        ttl = self._ttl(ttl)
        prepared = [
            ((t, key), self._rkey((t, key)), value, self._encode(value))
            for key, value in items.items()
        ]
        if not prepared:
            return
        inv = self._guard()
        expires_ms = self._expires_ms(ttl)
        cmds: list[tuple[Any, ...]] = [
            ("SET", rk, wrap(payload, expires_ms), "PX", max(1, int(ttl * 1000)))
            for _, rk, _, payload in prepared
        ]
        if inv is not None and inv.publishes:
            cmds.append(("PUBLISH", inv.channel, "\n".join(rk for _, rk, _, _ in prepared)))
        if not self._gateway_open():
            for k, _, value, payload in prepared:
                self._fill(k, value, len(payload), ttl, echo=0)
            return
        tokens = [inv.begin(rk) for _, rk, _, _ in prepared] if inv is not None else []
        try:
            await self._send(t, cmds)
        except RedisUnavailable:
            self._end_all(inv, [rk for _, rk, _, _ in prepared], tokens)
            for k, _, value, payload in prepared:
                self._fill(k, value, len(payload), ttl, echo=0)
            return
        except BaseException:
            self._end_all(inv, [rk for _, rk, _, _ in prepared], tokens)
            raise
        self.stats.writes += len(prepared)
        for i, (k, rk, value, payload) in enumerate(prepared):
            self._after_write(k, rk, value, len(payload), ttl, inv, tokens[i] if tokens else None)

    def peek(self, key: str, *, tenant: str | None = None) -> Any:
        """The fresh L1 value of ``key``, or None: never sends a command."""
        e = self._map_get((self._check_tenant(tenant), key))
        if e is None or not is_fresh(e, self._store.epoch, self._now()):
            return None
        return answer(e.value)

    def local_delete(self, key: str, *, tenant: str | None = None) -> bool:
        """Drop ``key`` from this process's L1 only (0 commands); True if it was there."""
        return self._store.drop((self._check_tenant(tenant), key))

    def clear_local(self) -> None:
        """Drop every L1 entry of this cache in this process (0 commands)."""
        self._store.clear()

    def info(self) -> dict[str, Any]:
        """Size, bounds and counters of this cache (for health and metrics)."""
        return {
            "name": self.name,
            "component": self.component,
            "entries": len(self._store),
            "bytes": self._store.bytes,
            "tenants": self._store.tenants,
            "evictions": self._store.evictions,
            "max_entries": self.options.max_entries,
            "max_bytes": self.options.max_bytes,
            **self.stats.to_dict(),
        }

    def tenant_usage(self, tenant: str | None) -> tuple[int, int]:
        """``(entries, bytes)`` this process holds in L1 for ``tenant``."""
        return self._store.tenant_usage(tenant)

    def watch(self, callback: Callable[[Key | None], None]) -> Callable[[], None]:
        """Call ``callback((tenant, key))`` when a push says another writer changed a key, and
        ``callback(None)`` when every entry was demoted (listener lost, flush, mode change).

        Pushes for keys this process does not hold are reported too (tracking is by prefix);
        the echo of this process's own write is not. Returns an unsubscribe function.
        """
        return self._watchers.add(callback)

    # -- called by the registry ------------------------------------------------------------
    def _invalidate(self, k: Key) -> None:
        e = self._map_get(k)
        if e is not None and e.echo > 0:
            e.echo -= 1
            self.stats.echoes += 1
            return
        if e is not None:
            # another writer changed it: never fresh again, but kept as the last known value
            # for fail-safe reads (a read while Redis answers replaces or drops it)
            e.fresh_until = 0.0
            e.refresh_at = math.inf
            self.stats.invalidations += 1
        if self._watchers:
            self._watchers.emit(k)

    def _demote(self) -> None:
        self._store.demote_all()
        if self._watchers:
            self._watchers.emit(None)

    async def aclose(self) -> None:
        """Stop this cache's background refreshes (the hub calls it on close)."""
        await self._loads.aclose()
        await self._reads.aclose()

    # -- internals -------------------------------------------------------------------------
    def _check_tenant(self, tenant: str | None) -> str | None:
        return resolve_tenant(tenant, per_tenant=self._per_tenant, what=self._what, strict=True)

    def _rkey(self, k: Key) -> str:
        return build_key(self._ns, self.component, self.name, k[0], k[1])

    def _ttl(self, ttl: float | None) -> float:
        return self.options.ttl if ttl is None else seconds("ttl", ttl)

    def _encode(self, value: Any) -> bytes:
        if value is None:
            raise TypeError("None cannot be cached (it means 'no value'); use delete()")
        payload = self.codec.encode(value)
        limit = min(self.options.max_value_bytes, self._hub.settings.max_value_bytes)
        if len(payload) > limit:
            raise ValueTooLarge(
                f"value for cache {self.name!r} is {len(payload)} bytes encoded; "
                f"the limit is {limit}",
                size=len(payload),
                limit=limit,
            )
        return payload

    def _expires_ms(self, ttl: float) -> int:
        return int((self._wall() + ttl) * 1000)

    def _inv(self) -> InvalidationFeed | None:
        if self._hub.settings.url is None:
            return None
        return self._hub.invalidations

    def _guard(self) -> InvalidationFeed | None:
        """The listener whose race guard fills must pass, or None when no guard applies."""
        inv = self._inv()
        if inv is None or inv.mode is InvalidationMode.TTL:
            return None
        return inv

    def _gateway_open(self) -> bool:
        return self._hub.distributed

    @staticmethod
    def _end_all(
        inv: InvalidationFeed | None, rks: list[str], tokens: list[tuple[int, int]]
    ) -> None:
        if inv is not None:
            for rk, token in zip(rks, tokens, strict=False):
                inv.end(rk, token)

    async def _send(self, tenant: str | None, cmds: list[tuple[Any, ...]]) -> list[Any]:
        gw = self._hub.gateway
        att = self._att(tenant)
        if len(cmds) == 1:
            return [await gw.call(att, *cmds[0])]
        replies = await gw.pipeline(att, cmds)
        for reply in replies:
            if isinstance(reply, RedisCommandError):
                raise reply
        return replies

    def _fill(
        self,
        k: Key,
        value: Any,
        size: int,
        lifetime: float,
        *,
        echo: int,
        stale_ok: bool = True,
        demoted: bool = False,
    ) -> None:
        if size + ENTRY_OVERHEAD > self._store.tenant_bytes:
            self._store.drop(k)  # would evict a whole tenant's share: serve it from L2 instead
            return
        now = self._now()
        d = fill_deadlines(
            now, lifetime, self._cap(), self.options, stale_ok=stale_ok, demoted=demoted
        )
        self._store.put(
            k,
            Entry(
                value,
                size=size + ENTRY_OVERHEAD,
                epoch=self._store.epoch,
                filled=now,
                fresh_until=d.fresh_until,
                stale_until=d.stale_until,
                refresh_at=d.refresh_at,
                echo=echo,
            ),
        )

    def _cap(self) -> float:
        """:func:`~lowtide.cache.freshness.fresh_cap` for a copy filled now."""
        if self._hub.distributed:
            inv = self._inv()
            if inv is not None and inv.healthy and inv.mode is InvalidationMode.TRACKING:
                return fresh_cap(self.options, tracking_keepalive=inv.keepalive)
        return self._fresh_cap

    def _stale(self, k: Key) -> Any:
        """Fail-safe: the last good value of ``k`` if still allowed, else None."""
        e = self._map_get(k)
        if e is None or not has_stale(e, self._now(), fail_safe=self.options.fail_safe):
            return None
        self.stats.stale_served += 1
        return e.value

    def _has_stale(self, k: Key) -> bool:
        return has_stale(self._map_get(k), self._now(), fail_safe=self.options.fail_safe)

    def _single_flight(self) -> SingleFlight:
        return SingleFlight(
            self.stats,
            soft_timeout=self.options.soft_timeout,
            lookup=self._map_get,
            has_stale=self._has_stale,
            log=log,
            what=self._what,
        )

    async def _read(self, k: Key) -> tuple[bool, Any, float]:
        """L2 read of ``k`` (single-flight): ``(found, value, remaining L2 life)``."""
        self.stats.misses += 1
        if not self._gateway_open():
            stale = self._stale(k)
            return stale is not None, stale, 0.0
        try:
            found, value, remaining = await self._reads.join(k, lambda: self._fetch(k), soft=True)
        except SoftTimeout as slow:
            return True, slow.value, 0.0
        except RedisUnavailable:
            stale = self._stale(k)
            return stale is not None, stale, 0.0
        return bool(found), value, float(remaining)

    async def _fetch(self, k: Key) -> tuple[bool, Any, float]:
        rk = self._rkey(k)
        inv = self._guard()
        token = inv.begin(rk) if inv is not None else None
        try:
            raw = await self._hub.gateway.call(self._att(k[0]), "GET", rk)
        except BaseException:
            if inv is not None and token is not None:
                inv.end(rk, token)
            raise
        seen = inv.end(rk, token) if inv is not None and token is not None else 0
        return self._accept(k, raw, seen)

    def _accept(self, k: Key, raw: bytes | None, seen: int | None) -> tuple[bool, Any, float]:
        """Decode an L2 reply and fill L1 if the race guard allows (``seen == 0``)."""
        fill = may_fill(seen, self._hub.distributed)
        if raw is None:
            self.stats.l2_misses += 1
            self._store.drop(k)  # L2 says there is no value: nothing stale may come back
            if fill:
                self._fill(k, ABSENT, 0, self.options.ttl, echo=0, stale_ok=False)
            return False, None, 0.0
        expires_ms, payload = unwrap(raw)
        remaining = remaining_life(expires_ms, self._wall(), self.options.ttl)
        if remaining <= 0:  # the writer's deadline passed (Redis has not expired it yet)
            self.stats.l2_misses += 1
            return False, None, 0.0
        value = self.codec.decode(payload)
        self.stats.l2_hits += 1
        if fill:
            self._fill(k, value, len(payload), remaining, echo=0)
        return True, value, remaining

    async def _write(
        self,
        k: Key,
        rk: str,
        value: Any,
        payload: bytes,
        ttl: float,
        *,
        only_if_absent: bool = False,
    ) -> None:
        if not self._gateway_open():
            self._fill(k, value, len(payload), ttl, echo=0)
            return
        inv = self._guard()
        set_cmd: tuple[Any, ...] = (
            "SET",
            rk,
            wrap(payload, self._expires_ms(ttl)),
            "PX",
            max(1, int(ttl * 1000)),
        )
        if only_if_absent:
            # a loaded value must not overwrite a write that landed since L2 was found empty
            set_cmd = (*set_cmd, "NX")
        cmds: list[tuple[Any, ...]] = [set_cmd]
        if inv is not None and inv.publishes:
            cmds.append(("PUBLISH", inv.channel, rk))
        token = inv.begin(rk) if inv is not None else None
        try:
            replies = await self._send(k[0], cmds)
        except RedisUnavailable:
            if inv is not None and token is not None:
                inv.end(rk, token)
            self._fill(k, value, len(payload), ttl, echo=0)  # Redis is down: local state
            return
        except BaseException:
            if inv is not None and token is not None:
                inv.end(rk, token)
            raise
        if only_if_absent and replies[0] is None:  # NX lost: someone else's value is there
            if inv is not None and token is not None:
                inv.end(rk, token)
            self._store.drop(k)
            return
        self.stats.writes += 1
        self._after_write(k, rk, value, len(payload), ttl, inv, token)

    def _after_write(
        self,
        k: Key,
        rk: str,
        value: Any,
        size: int,
        ttl: float,
        inv: InvalidationFeed | None,
        token: tuple[int, int] | None,
    ) -> None:
        if inv is None or token is None:
            seen: int | None = 0
            mode = None  # no race guard applies: kept as written
        else:
            seen = inv.end(rk, token)
            mode = inv.mode
        self._keep(k, value, size, ttl, after_write(seen, mode, distributed=self._hub.distributed))

    def _keep(self, k: Key, value: Any, size: int, ttl: float, verdict: Verdict) -> None:
        """Apply the :func:`~lowtide.cache.freshness.after_write` verdict of a write."""
        match verdict:
            case Fill(echo=echo):
                self._fill(k, value, size, ttl, echo=echo)
            case Demote():
                self._fill(k, value, size, ttl, echo=0, demoted=True)
            case Drop():
                self._store.drop(k)  # cannot prove the copy current: read it again next time
            case _:
                assert_never(verdict)

    async def _load(self, k: Key, loader: Loader, ttl: float | None, *, refresh: bool) -> Any:
        lifetime = self._ttl(ttl)
        e = self._map_get(k)
        skip_l2 = (
            e is not None and e.value is ABSENT and is_fresh(e, self._store.epoch, self._now())
        )
        l2_empty = True
        if not skip_l2 and self._gateway_open():
            try:
                found, value, remaining = await self._reads.join(k, lambda: self._fetch(k))
            except RedisUnavailable:
                found, value, remaining = False, None, 0.0
            except (SerializationError, RedisCommandError) as exc:
                # unreadable (another codec, a foreign writer, WRONGTYPE): load and overwrite
                log.warning("cache %r: unreadable value in Redis, reloading: %s", self.name, exc)
                found, value, remaining = False, None, 0.0
                l2_empty = False
            if found and not (
                refresh
                and refresh_reloads(remaining, lifetime, eager_refresh=self.options.eager_refresh)
            ):
                return value
            if found:
                l2_empty = False
        rk = self._rkey(k)
        inv = self._guard() if self._gateway_open() else None
        token = inv.begin(rk) if inv is not None else None
        self.stats.loads += 1
        try:
            value = await loader()
        except Exception:
            if inv is not None and token is not None:
                inv.end(rk, token)
            self.stats.load_errors += 1
            stale = self._stale_for_failed_load(k)
            if stale is not None:
                return stale
            raise
        # did anyone write the key while the loader ran? then its value wins over ours
        seen = inv.end(rk, token) if inv is not None and token is not None else 0
        if value is None:
            if seen == 0:
                self._fill(
                    k, LOADED_NONE, 0, negative_lifetime(self.options), echo=0, stale_ok=False
                )
            return None
        try:
            payload = self._encode(value)
        except (LowtideError, TypeError):
            log.warning("cache %r: loader returned a value that cannot be cached", self.name)
            raise
        if seen != 0:
            return value  # a concurrent write (or a flush) happened: neither store nor keep
        try:
            await self._write(k, rk, value, payload, lifetime, only_if_absent=l2_empty)
        except RedisCommandError:
            log.warning("cache %r: could not store a loaded value", self.name, exc_info=True)
        return value

    def _stale_for_failed_load(self, k: Key) -> Any:
        e = self._map_get(k)
        stale = self._stale(k)
        if stale is not None and e is not None:
            # throttle: answer with the stale value for a while instead of hammering the loader
            e.epoch = self._store.epoch
            e.fresh_until = throttled_until(e, self._now(), self.options.fail_safe_throttle)
            e.refresh_at = math.inf
        return stale
