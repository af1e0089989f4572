"""Purges and tags of a purgeable cache: drop every entry of a tenant, of a tag, or of the
whole cache, on every hub, in O(1) commands.

A purge writes one **marker**, the time it happened (server-aligned unix ms, plus a margin of
:data:`MARGIN_MS` for clock error), under a tracked control key; each value a purgeable cache
stores carries a stamp with its write time and tags (:mod:`lowtide.cache.stamps`). A value is
purged when it was written at or before a marker that applies to it:

* ``all``: a string key per cache (``purge()``);
* ``tags``: a hash per cache, one field per purged tag (``purge_tag(tag)``; fields older than
  the keep window are pruned by the next tag purge);
* ``tenant``: a string key per tenant (``purge(tenant=...)``), and ``tenants``, a flag that
  some tenant was purged within the keep window (until it expires, readers look up the
  tenant's marker; outside it they need not).

Markers are held in process memory like any tracked value: read once (the first L2 read of
the cache in a process costs 1 MGET and 1 HGETALL in one round trip; the first L2 read of a
tenant after a tenant purge, 1 GET), kept until a push names them (or, while no push can be
trusted, for ``min(ttl, max_staleness)``), then read again when needed. **An L1 hit checks
nothing and costs nothing**: a purge's push drops the affected L1 entries on every hub (the
whole cache, the tenant's entries, or the entries carrying a tag), and every L2 read checks the
value's stamp against the markers before it fills L1 or answers.

Markers live ``keep`` seconds (``max(ttl, 1 day)``): long enough that every value written
before the purge has expired from Redis; per-call ttls above ``keep`` are refused.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import lowtide.cache.stamps as stamps
from lowtide._untrusted import Warnings
from lowtide.cache.options import CacheOptions
from lowtide.cache.stamps import Stamp
from lowtide.cache.store import Key, L1Store
from lowtide.cache.values import Values
from lowtide.errors import ConfigError, RedisCommandError
from lowtide.keys import build_key, family, parse_key
from lowtide.modes import InvalidationMode
from lowtide.redis.tracking import publish_batches
from lowtide.tenancy import Attributions

if TYPE_CHECKING:
    from lowtide.runtime import HubView, InvalidationFeed

__all__ = ["KEEP_MIN", "MARGIN_MS", "Purges", "Purging", "stamped"]

log = logging.getLogger("lowtide.cache")

#: added to a purge's time: values stamped up to this much later (clock error between
#: machines) count as written before it
MARGIN_MS: Final = 1000
#: shortest life of a marker (seconds)
KEEP_MIN: Final = 86_400.0
#: tagged L1 keys remembered per cache (past it, a tag purge drops every L1 entry)
_TAGGED_MAX: Final = 100_000
#: tenant markers held per cache
_TENANTS_MAX: Final = 100_000
#: most tag markers read from one hash (a planted huge hash costs bounded work)
_TAG_FIELDS_MAX: Final = 10_000
_UNKNOWN: Final = -1


class Purges:
    """The purge markers of one purgeable cache (see module docs)."""

    def __init__(
        self, hub: HubView, component: str, name: str, options: CacheOptions, store: L1Store
    ) -> None:
        ns = hub.settings.namespace
        self._hub = hub
        self._store = store
        self._per_tenant = options.per_tenant
        self._now = hub.clock.monotonic
        #: how long a marker read without a trusted push channel is held
        self._cap = min(options.ttl, options.max_staleness)
        #: seconds a marker lives in Redis (and the longest per-call ttl accepted)
        self.keep = max(options.ttl, KEEP_MIN)
        marker = f"purge.{component}.{name}"
        self._marker = marker
        self._ns = ns
        self._all = build_key(ns, "control", marker, None, "all")
        self._tags = build_key(ns, "control", marker, None, "tags")
        self._flag = build_key(ns, "control", marker, None, "tenants")
        self._prefix = build_key(ns, "control", marker, None, "")[:-1]
        self._att = Attributions(component, family(ns, "control", marker))
        # held markers: (ms, held until); ms 0 = none in Redis
        self._w: tuple[int, float] | None = None
        self._h: tuple[int, float] | None = None
        self._g: tuple[dict[str, int], float] | None = None
        self._t: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._tagged: dict[str, set[Key]] = {}
        self._tagged_n = 0
        self._tagged_overflow = False
        #: bumped by every purge this process makes or hears of
        self.epoch = 0
        #: markers read from Redis that were not a plausible time (ignored)
        self.invalid = 0
        self._warnings = Warnings(log)
        hub.on_mode_change(lambda _: self._forget())
        if hub.settings.url is not None:
            hub.invalidations.subscribe(self._on_keys)

    def tenant_key(self, tenant: str) -> str:
        """The Redis key of ``tenant``'s marker."""
        return build_key(self._ns, "control", self._marker, tenant, "tenant")

    def now_ms(self) -> int:
        """Now on the server-aligned clock, in ms (what stamps and markers hold)."""
        return int(self._hub.server_time() * 1000)

    # -- writing values -----------------------------------------------------------------------
    def write_time(self, k: Key, tags: Sequence[str]) -> int:
        """The write time to stamp on a value of ``k`` made now: now, or just after the latest
        purge marker this process holds for it if that is later (a value made once this
        process knows of a purge comes after it, whatever the margin: no reload storm after a
        purge)."""
        floor = self._held(self._w) or 0
        if tags:
            g = self._held(self._g)
            if g:
                floor = max(floor, *(g.get(t, 0) for t in tags))
        if k[0] is not None and self._per_tenant:
            t = self._tenant_marker(k[0])
            floor = max(floor, t)
        return max(self.now_ms(), floor + 1)

    def stamp(self, k: Key, tags: tuple[str, ...], ttl: float, at_ms: int | None = None) -> bytes:
        """The stamp of a value of ``k`` with ``tags`` written at ``at_ms`` (default:
        :meth:`write_time`)."""
        if ttl > self.keep:
            raise ConfigError(
                f"ttl={ttl:g}s is longer than this purgeable cache keeps purge markers "
                f"({self.keep:g}s); use a shorter ttl"
            )
        if tags:
            self._index(k, tags)
        return stamps.make(self.write_time(k, tags) if at_ms is None else at_ms, tags)

    def _index(self, k: Key, tags: tuple[str, ...]) -> None:
        if self._tagged_overflow:
            return
        for tag in tags:
            keys = self._tagged.setdefault(tag, set())
            if k not in keys:
                keys.add(k)
                self._tagged_n += 1
        if self._tagged_n > _TAGGED_MAX:
            self._tagged.clear()
            self._tagged_n = 0
            self._tagged_overflow = True

    # -- reading values -----------------------------------------------------------------------
    def _held(self, marker: tuple[Any, float] | None) -> Any:
        if marker is None or marker[1] <= self._now():
            return None
        return marker[0]

    def _tenant_marker(self, tenant: str) -> int:
        held = self._t.get(tenant)
        if held is None or held[1] <= self._now():
            return _UNKNOWN
        return held[0]

    def purged(self, k: Key, stamp: Stamp) -> bool:
        """True if the value of ``k`` stamped ``stamp`` must not be answered: a marker that
        applies to it is later than its write time, or one it needs is not held (possible
        only when a push or a flush raced with the read: the value is then read again)."""
        s = stamp.written_ms
        w = self._held(self._w)
        if w is None or (w and s <= w):
            return True
        if stamp.tags:
            g = self._held(self._g)
            if g is None or any(s <= g.get(tag, 0) for tag in stamp.tags):
                return True
            self._index(k, stamp.tags)
        tenant = k[0]
        if self._per_tenant and tenant is not None:
            h = self._held(self._h)
            if h is None:
                return True
            if h:
                t = self._tenant_marker(tenant)
                if t == _UNKNOWN or (t and s <= t):
                    return True
        return False

    def _missing(self, tenant: str | None) -> list[str]:
        """The markers a read of ``tenant``'s values needs and this process does not hold."""
        need = []
        if self._held(self._w) is None:
            need.append(self._all)
        if self._held(self._g) is None:
            need.append(self._tags)
        if self._per_tenant and tenant is not None:
            h = self._held(self._h)
            if h is None:
                need.append(self._flag)
            if (h is None or h) and self._tenant_marker(tenant) == _UNKNOWN:
                need.append(self.tenant_key(tenant))
        return need

    async def ready(self, tenant: str | None) -> None:
        """Hold every marker a read of ``tenant``'s values needs (0 commands when held)."""
        for _ in range(3):
            need = self._missing(tenant)
            if not need:
                return
            await self._fetch(tenant, need)

    def _feed(self) -> InvalidationFeed | None:
        if self._hub.settings.url is None:
            return None
        feed = self._hub.invalidations
        return None if feed.mode is InvalidationMode.TTL else feed

    async def _fetch(self, tenant: str | None, need: list[str]) -> None:
        strings = [k for k in need if k != self._tags]
        cmds: list[tuple[Any, ...]] = []
        if strings:
            cmds.append(("MGET", *strings))
        if self._tags in need:
            cmds.append(("HGETALL", self._tags))
        feed = self._feed()
        tokens = [feed.begin(k) for k in need] if feed is not None else []
        gw = self._hub.gateway
        att = self._att(tenant)
        seen: list[int | None] = [0] * len(need)
        try:
            if len(cmds) == 1:
                try:
                    replies: list[Any] = [await gw.call(att, *cmds[0])]
                except RedisCommandError as exc:
                    replies = [exc]
            else:
                replies = await gw.pipeline(att, cmds)
        finally:
            if feed is not None:
                seen = [feed.end(k, t) for k, t in zip(need, tokens, strict=True)]
        now = self._now()
        until = math.inf if feed is not None and feed.healthy else now + self._cap
        values: dict[str, Any] = {}
        if strings:
            got = replies[0]
            got = (
                got if isinstance(got, list) and len(got) == len(strings) else [None] * len(strings)
            )
            if isinstance(replies[0], RedisCommandError):
                self.invalid += 1
            values.update(zip(strings, got, strict=True))
        if self._tags in need:
            values[self._tags] = replies[-1]
        for key, n in zip(need, seen, strict=True):
            if n is not None and n > 0:
                continue  # a push named it while it was read: read it again
            held_until = until if n == 0 else now + self._cap
            self._keep(key, values.get(key), held_until)

    def _keep(self, key: str, raw: Any, until: float) -> None:
        if key == self._tags:
            self._g = (self._parse_tags(raw), until)
        elif key == self._all:
            self._w = (self._parse_ms(raw), until)
        elif key == self._flag:
            self._h = (self._parse_ms(raw), until)
        else:
            tenant = parse_key(key).tenant
            if tenant is None:
                return
            self._t[tenant] = (self._parse_ms(raw), until)
            self._t.move_to_end(tenant)
            while len(self._t) > _TENANTS_MAX:
                self._t.popitem(last=False)

    def _parse_ms(self, raw: Any) -> int:
        if raw is None:
            return 0
        try:
            text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
            ms = int(text) if len(text) <= 20 else -1
        except (UnicodeDecodeError, ValueError):
            ms = -1
        if not 0 < ms < 2**53:
            self.invalid += 1
            self._warnings.warn(
                "marker", "purge marker of %r holds no valid time: ignored", self._marker
            )
            return 0
        return ms

    def _parse_tags(self, raw: Any) -> dict[str, int]:
        if not isinstance(raw, dict):
            if raw is not None and raw != []:
                self.invalid += 1
            return {}
        out: dict[str, int] = {}
        for i, (field, value) in enumerate(raw.items()):
            if i >= _TAG_FIELDS_MAX:
                self.invalid += 1
                break
            try:
                tag = field.decode("utf-8") if isinstance(field, bytes) else str(field)
            except UnicodeDecodeError:
                self.invalid += 1
                continue
            ms = self._parse_ms(value)
            if ms:
                out[tag] = ms
        return out

    # -- purging ------------------------------------------------------------------------------
    async def purge(self, tenant: str | None) -> None:
        """Purge ``tenant``'s entries (every entry with None) on every hub."""
        when = self.now_ms() + MARGIN_MS
        keep_ms = int(self.keep * 1000)
        if tenant is None:
            keys = [self._all]
            cmds: list[tuple[Any, ...]] = [("SET", self._all, when, "PX", keep_ms)]
        else:
            keys = [self.tenant_key(tenant), self._flag]
            cmds = [("SET", k, when, "PX", keep_ms) for k in keys]
        self._drop_scope(tenant, everything=tenant is None)
        await self._send(tenant, cmds, keys)
        until = self._now() + self._cap
        if tenant is None:
            self._w = (when, until)
        else:
            self._t[tenant] = (when, until)
            self._h = (when, until)
        self._drop_scope(tenant, everything=tenant is None)

    async def purge_tag(self, tag: str) -> None:
        """Purge every entry stored with ``tag`` (any tenant) on every hub."""
        (tag,) = stamps.check_tags((tag,))
        when = self.now_ms() + MARGIN_MS
        cmds: list[tuple[Any, ...]] = [("HSET", self._tags, tag, when)]
        held = self._held(self._g) or {}
        expired = [t for t, ms in held.items() if ms + self.keep * 1000 < when and t != tag]
        if expired:
            cmds.append(("HDEL", self._tags, *expired[:1000]))
        self._drop_tag(tag)
        await self._send(None, cmds, [self._tags])
        if self._g is not None:
            fresh = dict(self._g[0])
            fresh[tag] = when
            self._g = (fresh, self._g[1])
        self._drop_tag(tag)

    async def _send(self, tenant: str | None, cmds: list[tuple[Any, ...]], keys: list[str]) -> None:
        feed = self._feed()
        if feed is not None and feed.publishes:
            cmds = cmds + [("PUBLISH", feed.channel, p) for p in publish_batches(keys)]
        att = self._att(tenant)
        gw = self._hub.gateway
        if len(cmds) == 1:
            await gw.call(att, *cmds[0])
            return
        for reply in await gw.pipeline(att, cmds):
            if isinstance(reply, RedisCommandError):
                raise reply

    def _drop_scope(self, tenant: str | None, *, everything: bool) -> None:
        self.epoch += 1
        if everything:
            self._store.clear()
        elif tenant is not None:
            self._store.drop_tenant(tenant)

    def _drop_tag(self, tag: str | None) -> None:
        """Drop the L1 entries carrying ``tag`` (None: any tag)."""
        self.epoch += 1
        if self._tagged_overflow:
            self._store.clear()
            self._tagged_overflow = False
            return
        if tag is None:
            groups = list(self._tagged.values())
            self._tagged.clear()
            self._tagged_n = 0
        else:
            keys = self._tagged.pop(tag, set())
            self._tagged_n -= len(keys)
            groups = [keys]
        for keys in groups:
            for k in keys:
                self._store.drop(k)

    # -- pushes ---------------------------------------------------------------------------------
    def _forget(self) -> None:
        self._w = self._h = self._g = None
        self._t.clear()

    def _on_keys(self, keys: list[str] | None) -> None:
        if keys is None:
            self._forget()
            return
        prefix = self._prefix
        for rk in keys:
            if not rk.startswith(prefix):
                continue
            if rk == self._all:
                self._w = None
                self._drop_scope(None, everything=True)
            elif rk == self._tags:
                self._g = None
                self._drop_tag(None)
            elif rk == self._flag:
                self._h = None
            else:
                try:
                    tenant = parse_key(rk).tenant
                except ValueError:
                    continue
                if tenant is not None:
                    self._t.pop(tenant, None)
                    self._drop_scope(tenant, everything=False)


def stamped(
    values: Values,
    purges: Purges | None,
    k: Key,
    value: Any,
    tags: Sequence[str],
    ttl: float,
    at_ms: int | None = None,
) -> bytes:
    """The payload of ``value`` for ``k``: stamped in a purgeable cache (``at_ms``: the write
    time to record, default now), plain codec bytes otherwise (where ``tags`` are refused)."""
    if purges is None:
        if tags:
            raise ConfigError(f"tags need a purgeable cache ({values.what}: purgeable=True)")
        return values.encode(value)
    return values.encode(value, purges.stamp(k, stamps.check_tags(tags), ttl, at_ms))


class _PurgeHost(Protocol):
    name: str
    _purge: Purges | None

    def _check_tenant(self, tenant: str | None) -> str | None: ...


def _purges(host: _PurgeHost) -> Purges:
    if host._purge is None:
        raise ConfigError(
            f"cache {host.name!r} is not purgeable: create it with lt.cache({host.name!r}, "
            "purgeable=True)"
        )
    return host._purge


class Purging:
    """Gives :class:`~lowtide.cache.tiered.Cache` its ``purge`` and ``purge_tag`` methods."""

    async def purge(self, *, tenant: str | None = None) -> None:
        """Drop every entry of ``tenant`` (without ``tenant``: of every tenant) on every hub.

        O(1) commands whatever the number of entries (see :mod:`lowtide.cache.purge`); the
        tenant of ``tenant_scope()`` is not used: ``purge()`` always means the whole cache.
        Raises :class:`RedisUnavailable` when Redis cannot be reached (this process's entries
        are dropped anyway).
        """
        host = cast(_PurgeHost, self)
        purges = _purges(host)
        if tenant is not None:
            tenant = host._check_tenant(tenant)
        await purges.purge(tenant)

    async def purge_tag(self, tag: str) -> None:
        """Drop every entry stored with ``tag`` (any tenant) on every hub: O(1) commands."""
        await _purges(cast(_PurgeHost, self)).purge_tag(tag)
