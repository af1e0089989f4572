"""The Redis side (L2) of one cache: its reads, their attribution, and the race guard.

Every command whose reply may fill L1 runs inside :class:`Guarded`, which begins a race-guard
token per key before the command is sent and always ends it, whether the command answers,
fails or is cancelled. Its :attr:`Guarded.seen` then says how many invalidations of each key
arrived meanwhile (None: a flush, or the listener is not healthy), which is all the caller
needs to decide what L1 may keep (:mod:`lowtide.cache.freshness`).

Commands (each attributed to the cache's component and key family, per tenant):

* :meth:`L2.get`: 1 GET; but the misses of one tenant's keys that reach Redis in the same
  event-loop turn (a burst of concurrent cold reads) are sent together as 1 MGET
  (``batch_reads``, on by default; each caller keeps its own race-guard token);
* :meth:`L2.mget`: 1 MGET (on a cluster, 1 per hash slot).

Writes are in :mod:`lowtide.cache.writes`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from lowtide._tasks import BackgroundTasks
from lowtide.cache.store import Key
from lowtide.keys import build_key, family
from lowtide.modes import InvalidationMode
from lowtide.tenancy import Attributions

if TYPE_CHECKING:
    from lowtide.redis import Gateway
    from lowtide.runtime import HubView, InvalidationFeed

T = TypeVar("T")

__all__ = ["L2", "Guarded"]

log = logging.getLogger("lowtide.cache")


def _retrieved(fut: asyncio.Future[Any]) -> None:
    # a batched reply whose caller went away must not log "exception was never retrieved"
    if not fut.cancelled():
        fut.exception()


class Guarded:
    """Race-guard tokens for the keys of one command (a context manager; see module docs).

    With no guard (``feed`` None: no listener, or ttl mode) nothing is begun and every key
    reports ``seen == 0``.
    """

    __slots__ = ("_feed", "_tokens", "keys", "seen")

    def __init__(self, feed: InvalidationFeed | None, keys: Sequence[str]) -> None:
        self._feed = feed
        self.keys = keys
        self._tokens: list[tuple[int, int]] = []
        #: per key, invalidations that arrived inside the block (set when it exits)
        self.seen: list[int | None] = [0] * len(keys)

    @property
    def mode(self) -> InvalidationMode | None:
        """The listener's mode now, or None when no guard applies."""
        return None if self._feed is None else self._feed.mode

    def __enter__(self) -> Guarded:
        feed = self._feed
        if feed is not None:
            self._tokens = [feed.begin(rk) for rk in self.keys]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        feed = self._feed
        if feed is not None:
            self.seen = [
                feed.end(rk, token) for rk, token in zip(self.keys, self._tokens, strict=False)
            ]


class L2:
    """The Redis side of one cache (see module docs)."""

    __slots__ = (
        "_batch",
        "_hub",
        "_pending",
        "_tasks",
        "_wall",
        "attribution",
        "component",
        "name",
        "namespace",
    )

    def __init__(self, hub: HubView, component: str, name: str, *, batch: bool = True) -> None:
        self._hub = hub
        self._batch = batch
        #: reads waiting for this turn's MGET, per tenant: Redis key -> its reply's future
        self._pending: dict[str | None, dict[str, asyncio.Future[Any]]] = {}
        self._tasks = BackgroundTasks(log, f"cache {name!r} reads", level=logging.DEBUG)
        self.namespace = hub.settings.namespace
        self.component = component
        self.name = name
        # envelope expiries are compared on the server-aligned clock (set once a hub has read
        # the server's TIME, as limiters do), so machines with skewed clocks agree
        self._wall: Callable[[], float] = hub.server_time
        #: the ledger label of each tenant's commands
        self.attribution = Attributions(component, family(self.namespace, component, name))

    def key(self, k: Key) -> str:
        """The Redis key of ``k`` (``(tenant, key)``)."""
        return build_key(self.namespace, self.component, self.name, k[0], k[1])

    @property
    def open(self) -> bool:
        """True while Redis is in use (else the cache works on L1 alone)."""
        return self._hub.distributed

    def wall(self) -> float:
        """Now on the server-aligned wall clock (seconds)."""
        return self._wall()

    def listener(self) -> InvalidationFeed | None:
        """The invalidation listener, or None when the hub has no Redis URL."""
        if self._hub.settings.url is None:
            return None
        return self._hub.invalidations

    def tracking_keepalive(self) -> float | None:
        """While Redis is in use and the server pushes every writer's changes (CLIENT TRACKING
        or keyspace notifications, verified): the period whose triple bounds an unnoticed
        change (:attr:`~lowtide.invalidation.Invalidations.pushed_keepalive`), else None (see
        :func:`~lowtide.cache.freshness.fresh_cap`)."""
        if self._hub.distributed:
            inv = self.listener()
            if inv is not None:
                return inv.pushed_keepalive
        return None

    def guard(self) -> InvalidationFeed | None:
        """The listener whose race guard fills must pass, or None when no guard applies."""
        inv = self.listener()
        if inv is None or inv.mode is InvalidationMode.TTL:
            return None
        return inv

    @property
    def publishes(self) -> bool:
        """True when writers tell the fleet themselves (the pub/sub backplane): then a value
        marked "no copies" is never kept fresh in L1 (see :mod:`lowtide.cache.notify`)."""
        inv = self.guard()
        return inv is not None and inv.publishes

    @property
    def gateway(self) -> Gateway:
        """The hub's gateway (every command goes through it)."""
        return self._hub.gateway

    async def shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end even if the caller is cancelled meanwhile (a write and the
        message that announces it must not be cut in two); cancelled only by :meth:`aclose`."""
        task: asyncio.Task[T] = self._tasks.spawn(work)
        return await asyncio.shield(task)

    # -- reads ----------------------------------------------------------------------------------
    async def get(self, tenant: str | None, rk: str) -> tuple[bytes | None, int | None]:
        """1 GET: ``(raw reply, invalidations of rk seen while it was in flight)``."""
        with Guarded(self.guard(), (rk,)) as g:
            if self._batch:
                raw = await asyncio.shield(self._join_batch(tenant, rk))
            else:
                raw = await self._hub.gateway.call(self.attribution(tenant), "GET", rk)
        return raw, g.seen[0]

    def _join_batch(self, tenant: str | None, rk: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        batch = self._pending.get(tenant)
        if batch is None:
            batch = self._pending[tenant] = {}
            loop.call_soon(self._send_batch, tenant)  # after every read of this turn joined
        fut = batch.get(rk)
        if fut is None:
            fut = batch[rk] = loop.create_future()
            fut.add_done_callback(_retrieved)
        return fut

    def _send_batch(self, tenant: str | None) -> None:
        batch = self._pending.pop(tenant, None)
        if batch:
            self._tasks.spawn(self._fetch_batch(tenant, batch))

    async def _fetch_batch(self, tenant: str | None, batch: dict[str, asyncio.Future[Any]]) -> None:
        keys = list(batch)
        att = self.attribution(tenant)
        try:
            if len(keys) == 1:
                replies: list[Any] = [await self._hub.gateway.call(att, "GET", keys[0])]
            else:
                replies = await self._hub.gateway.mget(att, keys)
        except BaseException as exc:
            for fut in batch.values():
                if fut.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for rk, raw in zip(keys, replies, strict=True):
            fut = batch[rk]
            if not fut.done():
                fut.set_result(raw)

    async def aclose(self) -> None:
        """Cancel the batched reads still in flight (the hub calls it on close)."""
        await self._tasks.aclose()

    async def mget(
        self, tenant: str | None, rks: Sequence[str]
    ) -> tuple[list[bytes | None], list[int | None]]:
        """1 MGET: the raw replies and, per key, the invalidations seen while it was in flight.

        Every token is ended before anything is decoded: a bad value must not leave guards
        behind.
        """
        with Guarded(self.guard(), rks) as g:
            replies = await self._hub.gateway.mget(self.attribution(tenant), rks)
        return list(replies), g.seen
