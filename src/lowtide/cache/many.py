"""The batch side of :class:`~lowtide.cache.tiered.Cache`: ``get_many`` and ``set_many``.

Moved out of ``tiered.py`` unchanged (that module keeps the single-key API and the load
orchestration).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

from lowtide.cache.freshness import answer, is_fresh
from lowtide.cache.l1 import L1
from lowtide.cache.l2 import L2
from lowtide.cache.observe import observers
from lowtide.cache.options import CacheStats
from lowtide.cache.purge import Purges, stamped
from lowtide.cache.store import Entry, Key, L1Store
from lowtide.cache.values import Values
from lowtide.cache.writes import Writes
from lowtide.errors import RedisUnavailable

__all__ = ["Batches"]


class _Host(Protocol):
    stats: CacheStats
    _store: L1Store
    _l1: L1
    _l2: L2
    _values: Values
    _purge: Purges | None
    _writes: Writes

    def _map_get(self, k: Key) -> Entry | None: ...

    def _touch(self, key: Key, entry: Entry | None = None) -> None: ...

    def _now(self) -> float: ...

    def _check_tenant(self, tenant: str | None) -> str | None: ...

    def _ttl(self, ttl: float | None) -> float: ...

    def _observed(self, source: Literal["l2", "load"], started: float) -> None: ...

    def _accept(
        self, k: Key, raw: bytes | None, seen: int | None, sent: float
    ) -> tuple[bool, Any, float]: ...


class Batches:
    """``get_many`` and ``set_many``."""

    async def get_many(self, keys: Iterable[str], *, tenant: str | None = None) -> dict[str, Any]:
        """``{key: value or None}`` for every key: L1 first, then one MGET for the rest."""
        c = cast(_Host, self)
        t = c._check_tenant(tenant)
        out: dict[str, Any] = {}
        missing: list[str] = []
        now = c._now()
        epoch = c._store.epoch
        for key in keys:
            e = c._map_get((t, key))
            if e is not None and is_fresh(e, epoch, now):
                c._touch((t, key), e)
                c.stats.hits += 1
                out[key] = answer(e.value)
            else:
                out[key] = None
                missing.append(key)
        if not missing:
            return out
        c.stats.misses += len(missing)
        rks = [c._l2.key((t, key)) for key in missing]
        if not c._l2.open:
            for key in missing:
                out[key] = c._l1.stale((t, key))
            return out
        sent = c._now()
        try:
            if c._purge is not None:
                await c._purge.ready(t)
            started = time.perf_counter() if observers else 0.0
            replies, seens = await c._l2.mget(t, rks)
            if started:
                c._observed("l2", started)
        except RedisUnavailable:
            for key in missing:
                out[key] = c._l1.stale((t, key))
            return out
        for key, raw, seen in zip(missing, replies, seens, strict=True):
            found, value, _ = c._accept((t, key), raw, seen, sent)
            out[key] = value if found else None
        return out

    async def set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl: float | None = None,
        tenant: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """Store several values in one round trip (1 SET each, +1 PUBLISH in backplane mode).

        Every value is encoded first: if one cannot be, nothing is written.
        """
        c = cast(_Host, self)
        t = c._check_tenant(tenant)
        ttl = c._ttl(ttl)
        prepared = [
            (
                (t, key),
                c._l2.key((t, key)),
                value,
                stamped(c._values, c._purge, (t, key), value, tags, ttl),
            )
            for key, value in items.items()
        ]
        if prepared:
            await c._writes.store_many(t, prepared, ttl)
