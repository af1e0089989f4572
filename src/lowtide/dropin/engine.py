"""The drop-in client's engine: cacheable reads answered from process memory with the tiered
cache's guarantees, everything else sent by redis-py and accounted in the ledger.

Reads (:mod:`lowtide.dropin.reads` says which) of keys under the client's ``cache_prefixes``:

* **0 commands** while L1 holds a fresh reply for the same command and arguments; entries are
  per Redis key (one :class:`~lowtide.cache.l1.L1` entry holds every reply held for that key,
  so one push drops them all), with the cache's deadlines (:mod:`lowtide.cache.freshness`):
  fresh for ``local_ttl`` while CLIENT TRACKING is verified, else for
  ``min(local_ttl, max_staleness)``, counted from when the read was *sent*;
* a miss sends the command (concurrent callers of the same read share it); its reply fills L1
  only if no push, flush or write by this process named the key while it was in flight (the
  hub's race guard, plus one of this client for its own writes);
* MGET and EXISTS are answered key by key (a GET's reply also answers MGET and EXISTS of that
  key), and an MGET sends only the keys L1 does not hold.

Writes (any other command) drop the cached keys they name before they are sent and again once
they are answered, and detach reads in flight, so a read that follows a write in the same
process never sees the value from before it. In pub/sub mode they also PUBLISH those keys in
the same round trip (+1 command), so every hub drops them; in tracking mode the server pushes
every write, whoever made it, for free.

While the hub is degraded, suspended or local, or the tenant of ``tenant_scope()`` is over its
quota, nothing is sent: a read answers from L1 when it holds the reply (fresh, else the last
known one for up to ``fail_safe_max``), otherwise it raises
:class:`~lowtide.redis.dropin.DropInUnavailable` (a ``redis.exceptions.ConnectionError``);
every write raises it. A read that fails to reach the server answers from L1 the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from lowtide._tasks import BackgroundTasks
from lowtide.cache.freshness import is_fresh, may_fill
from lowtide.cache.l1 import L1
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import ENTRY_OVERHEAD
from lowtide.context import _tenant
from lowtide.dropin.reads import FLUSHING, Plan, Prefixes, command_of
from lowtide.dropin.replies import copy_reply, reply_size
from lowtide.invalidation.guard import RaceGuard
from lowtide.modes import InvalidationMode
from lowtide.redis.dropin import DropInPipeline, DropInRedis, DropInUnavailable
from lowtide.redis.tracking import publish_batches

if TYPE_CHECKING:
    from lowtide.runtime import HubView, InvalidationFeed

__all__ = ["DropInEngine"]

log = logging.getLogger("lowtide.dropin")

#: replies held per Redis key (a key read with many different arguments keeps the newest)
MAX_VARIANTS: Final = 64
_MISSING: Final = object()
#: feeds that carry one key per message, so a key may hold a newline (the pub/sub backplane
#: separates keys by newlines)
_KEY_PER_MESSAGE: Final = (InvalidationMode.TRACKING, InvalidationMode.KEYSPACE)
Sig = tuple[Any, ...]


class DropInEngine:
    """The lowtide side of one drop-in client (see module docs)."""

    def __init__(self, hub: HubView, prefixes: Prefixes, options: CacheOptions) -> None:
        self._hub = hub
        self.prefixes = prefixes
        self.component = prefixes.component
        self.options = options
        self.stats = CacheStats()
        #: commands refused without I/O (Redis unavailable, suspended, local, quota)
        self.refused = 0
        self._now = hub.clock.monotonic
        self._l1 = L1(options, self.stats, now=self._now, tracking_keepalive=self._keepalive)
        self._store = self._l1.store
        self._max_reply = min(options.max_value_bytes, options.max_bytes)
        #: writes of this process: a read they overlap must not fill L1
        self._own = RaceGuard()
        self._flights: dict[str, dict[Sig, asyncio.Future[Any]]] = {}
        self._tasks = BackgroundTasks(log, "drop-in reads", level=logging.DEBUG)
        self._closed = False
        self._unsubscribe: list[Callable[[], None]] = [hub.on_mode_change(self._on_mode)]
        if hub.settings.url is not None:
            feed = hub.invalidations
            feed.track(prefixes.prefixes)
            self._unsubscribe.append(feed.subscribe(self._on_keys))

    # -- state ------------------------------------------------------------------------------
    def _feed(self) -> InvalidationFeed | None:
        if self._hub.settings.url is None:
            return None
        return self._hub.invalidations

    def _guard(self) -> InvalidationFeed | None:
        feed = self._feed()
        if feed is None or feed.mode is InvalidationMode.TTL:
            return None
        return feed

    def _keepalive(self) -> float | None:
        feed = self._feed()
        if self._hub.distributed and feed is not None:
            return feed.pushed_keepalive
        return None

    def _newline_ok(self) -> bool:
        feed = self._feed()
        return feed is None or feed.mode in _KEY_PER_MESSAGE

    def _refusal(self) -> DropInUnavailable | None:
        """Why nothing may be sent now, or None."""
        hub = self._hub
        if self._closed:
            return DropInUnavailable("the lowtide hub was closed", reason="closed")
        if not hub.distributed:
            mode = hub.mode.value
            return DropInUnavailable(f"redis is {mode} (lowtide)", reason=mode)
        blocked = hub.quota_blocked
        if blocked:
            tenant = _tenant.get()
            if tenant is not None and tenant in blocked:
                return DropInUnavailable(
                    f"tenant {tenant!r} is over its command quota", reason="quota"
                )
        return None

    def _refuse(self, why: DropInUnavailable) -> DropInUnavailable:
        self.refused += 1
        return why

    # -- pushes -----------------------------------------------------------------------------
    def _on_keys(self, keys: list[str] | None) -> None:
        if keys is None:
            self._store.demote_all()
            self._flights.clear()
            return
        owns = self.prefixes.owns
        for key in keys:
            if owns(key):
                self._l1.invalidate((None, key))
                self._flights.pop(key, None)

    def _on_mode(self, change: object) -> None:
        self._store.demote_all()
        self._flights.clear()

    # -- commands -----------------------------------------------------------------------------
    async def execute(
        self, client: DropInRedis, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """Answer one command of ``client`` (see module docs)."""
        command = command_of(args)
        if client.lt_direct is not None or command in ("MULTI", "WATCH"):
            return await self._direct(client, command, args, options)
        plan = self.prefixes.plan(
            args,
            client.lt_encode,
            never_decode=client.lt_never_decode(options),
            newline_ok=self._newline_ok(),
            utf8=client.lt_utf8,
        )
        if plan is not None:
            if len(plan.keys) == 1:
                return await self._read_one(client, plan, args, options)
            return await self._read_many(client, plan, args, options)
        why = self._refusal()
        if why is not None:
            raise self._refuse(why)
        flush = command in FLUSHING
        touched = self.prefixes.touched(args, client.lt_encode)
        if not touched and not flush:
            return await client.lt_send(args, options)
        publish = self._publish(touched)
        self._written(touched, flush)
        try:
            if publish:
                return await client.lt_send_and_publish(args, options, publish)
            return await client.lt_send(args, options)
        finally:
            self._written(touched, flush)

    async def _direct(
        self, client: DropInRedis, command: str, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """A single-connection client inside MULTI/EXEC or after WATCH: everything is sent,
        and the keys queued writes name count as written when EXEC runs."""
        why = self._refusal()
        if why is not None:
            raise self._refuse(why)
        pending = client.lt_direct
        if command in ("MULTI", "WATCH") and pending is None and client.single_connection_client:
            client.lt_direct = pending = []
        if pending is None:  # MULTI/WATCH on a pooled client: redis-py's behaviour, no state
            return await client.lt_send(args, options)
        touched = self.prefixes.touched(args, client.lt_encode)
        pending.extend(touched)
        ends = command in ("EXEC", "DISCARD", "UNWATCH", "RESET")
        if command == "EXEC" or touched:
            self._written(pending, False)
        try:
            return await client.lt_send(args, options)
        finally:
            if ends:
                client.lt_direct = None
            if command == "EXEC" or touched:
                self._written(pending, False)

    def _publish(self, touched: Sequence[str]) -> list[tuple[Any, ...]]:
        """The PUBLISH commands announcing ``touched`` (pub/sub mode only)."""
        feed = self._feed()
        if not touched or feed is None or not feed.publishes:
            return []
        return [("PUBLISH", feed.channel, payload) for payload in publish_batches(touched)]

    def _written(self, keys: Sequence[str], flush: bool) -> None:
        """This process is writing ``keys`` (``flush``: everything): drop them from L1,
        detach reads in flight, and keep reads that overlap the write from filling."""
        if flush:
            self._store.clear()
            self._flights.clear()
            self._own.flush()
            return
        if not keys:
            return
        self._own.note(keys)
        drop = self._store.drop
        flights = self._flights
        for key in keys:
            drop((None, key))
            flights.pop(key, None)

    # -- reads --------------------------------------------------------------------------------
    def _held(self, key: str, sig: Sig, *, stale: bool) -> Any:
        """The reply L1 holds for ``sig`` of ``key`` (fresh; with ``stale``, the last known
        one fail-safe may serve), or ``_MISSING``."""
        k = (None, key)
        e = self._store.map.get(k)
        if e is None:
            return _MISSING
        if is_fresh(e, self._store.epoch, self._now()):
            raw = e.value.get(sig, _MISSING)
            if raw is not _MISSING:
                store = self._store
                if store.seq - e.seq >= store.touch_gap:
                    store.touch(k, e)
                self.stats.hits += 1
            return raw
        if not stale:
            return _MISSING
        variants = self._l1.stale(k)
        if variants is None:
            return _MISSING
        return variants.get(sig, _MISSING)

    async def _read_one(
        self, client: DropInRedis, plan: Plan, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        key, sig = plan.keys[0], plan.sigs[0]
        raw = self._held(key, sig, stale=False)
        if raw is not _MISSING:
            return await client.lt_shape(args, copy_reply(plan.assemble([raw])), options)
        self.stats.misses += 1
        why = self._refusal()
        if why is not None:
            return await self._fallback(client, plan, args, options, why)
        flights = self._flights.get(key)
        fut = None if flights is None else flights.get(sig)
        if fut is None:
            fut = self._tasks.spawn(self._fetch(client, plan, args, options))
            self._flights.setdefault(key, {})[sig] = fut
            fut.add_done_callback(lambda f: self._landed(key, sig, f))
        else:
            self.stats.coalesced += 1
        try:
            raw = await asyncio.shield(fut)
        except Exception as exc:
            if client.lt_unavailable(exc) and not isinstance(exc, DropInUnavailable):
                return await self._fallback(client, plan, args, options, exc)
            raise
        return await client.lt_shape(args, copy_reply(raw), options)

    def _landed(self, key: str, sig: Sig, fut: asyncio.Future[Any]) -> None:
        flights = self._flights.get(key)
        if flights is not None and flights.get(sig) is fut:
            del flights[sig]
            if not flights:
                del self._flights[key]

    async def _fallback(
        self,
        client: DropInRedis,
        plan: Plan,
        args: tuple[Any, ...],
        options: dict[str, Any],
        why: BaseException,
    ) -> Any:
        """Answer from the last known replies, or raise ``why``."""
        raws = [self._held(k, s, stale=True) for k, s in zip(plan.keys, plan.sigs, strict=True)]
        if any(r is _MISSING for r in raws):
            if isinstance(why, DropInUnavailable):
                self.refused += 1
            raise why
        self.stats.stale_served += 1
        return await client.lt_shape(args, copy_reply(plan.assemble(raws)), options)

    async def _fetch(
        self, client: DropInRedis, plan: Plan, args: Sequence[Any], options: dict[str, Any]
    ) -> Any:
        """Send a cacheable read; fill L1 with its reply if the race guards allow."""
        keys = plan.keys
        sent = self._now()
        feed = self._guard()
        tokens = [feed.begin(k) for k in keys] if feed is not None else []
        own = [self._own.begin(k) for k in keys]
        seen: list[int | None] = [0] * len(keys)
        mine: list[int | None] = [0] * len(keys)
        try:
            raw = await client.lt_send(args, options, raw=True)
        finally:
            if feed is not None:
                seen = [feed.end(k, t) for k, t in zip(keys, tokens, strict=True)]
            mine = [self._own.end(k, t, trusted=True) for k, t in zip(keys, own, strict=True)]
        distributed = self._hub.distributed
        for i, key in enumerate(keys):
            if may_fill(seen[i], distributed) and mine[i] == 0:
                element = raw[i] if plan.command == "MGET" else raw
                self._fill(key, plan.equivalents(i, element), sent)
        return raw

    async def _read_many(
        self, client: DropInRedis, plan: Plan, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """MGET or EXISTS of several keys, answered key by key: the keys L1 does not hold are
        read (one MGET; one EXISTS each, as a sum cannot be split) and kept."""
        raws = [self._held(k, s, stale=False) for k, s in zip(plan.keys, plan.sigs, strict=True)]
        if all(r is not _MISSING for r in raws):
            return await client.lt_shape(args, copy_reply(plan.assemble(raws)), options)
        self.stats.misses += 1
        why = self._refusal()
        if why is not None:
            return await self._fallback(client, plan, args, options, why)
        pairs = zip(plan.keys, raws, strict=True)
        missing = list(dict.fromkeys(k for k, r in pairs if r is _MISSING))
        nd = plan.sigs[0][0]
        try:
            if plan.command == "EXISTS":  # a sum cannot be split: one EXISTS per missing key
                fetched = await asyncio.gather(
                    *(
                        self._fetch(
                            client,
                            Plan("EXISTS", (k,), ((nd, "EXISTS", k),)),
                            ("EXISTS", _wire(k)),
                            {**options, "keys": (_wire(k),)},
                        )
                        for k in missing
                    )
                )
            else:
                sub = Plan("MGET", tuple(missing), tuple((nd, "MGET", k) for k in missing))
                sub_options = {**options, "keys": [_wire(k) for k in missing]}
                wire = [_wire(k) for k in missing]
                fetched = await self._fetch(client, sub, ("MGET", *wire), sub_options)
        except Exception as exc:
            if client.lt_unavailable(exc) and not isinstance(exc, DropInUnavailable):
                return await self._fallback(client, plan, args, options, exc)
            raise
        got = dict(zip(missing, fetched, strict=True))
        full = [got[k] if r is _MISSING else r for k, r in zip(plan.keys, raws, strict=True)]
        return await client.lt_shape(args, copy_reply(plan.assemble(full)), options)

    def _fill(self, key: str, replies: dict[Sig, Any], sent: float) -> None:
        size = sum(reply_size(r, self._max_reply) for r in replies.values())
        if size > self._max_reply:
            return
        k = (None, key)
        store = self._store
        e = store.map.get(k)
        now = self._now()
        keep_until: float | None = None
        if e is not None and is_fresh(e, store.epoch, now) and len(e.value) < MAX_VARIANTS:
            merged = dict(e.value)
            merged.update(replies)
            size += e.size - ENTRY_OVERHEAD
            replies, keep_until = merged, e.fresh_until
            if size > self._max_reply:
                return
        self._l1.fill(k, replies, size, self.options.ttl, echo=0, sent=sent)
        if keep_until is not None:
            filled = store.map.get(k)
            if filled is not None:  # the older replies are no fresher than when they came
                filled.fresh_until = min(filled.fresh_until, keep_until)

    # -- pipelines ------------------------------------------------------------------------------
    async def execute_pipeline(self, pipe: DropInPipeline, raise_on_error: bool) -> list[Any]:
        """Run a pipeline: every command is sent (reads too); the cached keys its writes name
        are dropped before and after, and published in pub/sub mode."""
        if not pipe.command_stack and not pipe.watching:
            return await pipe.lt_execute(raise_on_error)
        why = self._refusal()
        if why is not None:
            await pipe.lt_reset()
            raise self._refuse(why)
        touched: list[str] = []
        flush = False
        for cmd_args, _ in pipe.command_stack:
            flush = flush or command_of(cmd_args) in FLUSHING
            touched += self.prefixes.touched(cmd_args, pipe.lt_encode)
        publish = self._publish(touched)
        self._written(touched, flush)
        try:
            return await pipe.lt_execute(raise_on_error, publish)
        finally:
            self._written(touched, flush)

    async def immediate(
        self, pipe: DropInPipeline, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """A pipeline command run at once (after WATCH): sent, never answered from L1."""
        why = self._refusal()
        if why is not None:
            raise self._refuse(why)
        flush = command_of(args) in FLUSHING
        touched = self.prefixes.touched(args, pipe.lt_encode)
        self._written(touched, flush)
        try:
            result = await pipe.lt_immediate(args, options)
            for cmd in self._publish(touched):
                await pipe.lt_immediate(cmd, {})
            return result
        finally:
            self._written(touched, flush)

    # -- observability and lifecycle --------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Size, bounds and counters (the shape of :meth:`Cache.info`)."""
        store = self._store
        return {
            "name": "redis",
            "component": self.component,
            "prefixes": list(self.prefixes.prefixes),
            "entries": len(store),
            "bytes": store.bytes,
            "tenants": store.tenants,
            "evictions": store.evictions,
            "max_entries": self.options.max_entries,
            "max_bytes": self.options.max_bytes,
            "refused": self.refused,
            **self.stats.to_dict(),
        }

    async def aclose(self) -> None:
        """Refuse every further command and stop listening (the hub calls it on close)."""
        self._closed = True
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe.clear()
        self._flights.clear()
        await self._tasks.aclose()


def _wire(key: str) -> bytes:
    """A held key back as the bytes it was on the wire."""
    return key.encode("utf-8", "surrogateescape")
