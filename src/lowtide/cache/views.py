"""The L1-only side of :class:`~lowtide.cache.tiered.Cache`: what it holds in this process,
its size and counters, and watchers. Nothing here sends a command.

Moved out of ``tiered.py`` unchanged (that module keeps the read/write API and the load
orchestration).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from lowtide._listeners import Listeners
from lowtide.cache.adaptive import CopyPolicy
from lowtide.cache.freshness import answer, is_fresh
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import Entry, Key, L1Store
from lowtide.cache.values import Values

__all__ = ["LocalViews"]


class _Host(Protocol):
    name: str
    component: str
    options: CacheOptions
    stats: CacheStats
    _store: L1Store
    _values: Values
    _watchers: Listeners[Key | None]
    _policy: CopyPolicy

    def _map_get(self, k: Key) -> Entry | None: ...

    def _now(self) -> float: ...

    def _check_tenant(self, tenant: str | None) -> str | None: ...


class LocalViews:
    """``peek``, ``local_delete``, ``clear_local``, ``info``, ``tenant_usage``, ``watch``."""

    def peek(self, key: str, *, tenant: str | None = None) -> Any:
        """The fresh L1 value of ``key``, or None: never sends a command."""
        c = cast(_Host, self)
        e = c._map_get((c._check_tenant(tenant), key))
        if e is None or not is_fresh(e, c._store.epoch, c._now()):
            return None
        return answer(e.value)

    def local_delete(self, key: str, *, tenant: str | None = None) -> bool:
        """Drop ``key`` from this process's L1 only (0 commands); True if it was there."""
        c = cast(_Host, self)
        k = (c._check_tenant(tenant), key)
        c._values.forget(k)
        return c._store.drop(k)

    def clear_local(self) -> None:
        """Drop every L1 entry of this cache in this process (0 commands)."""
        c = cast(_Host, self)
        c._store.clear()

    def info(self) -> dict[str, Any]:
        """Size, bounds and counters of this cache (for health and metrics)."""
        c = cast(_Host, self)
        return {
            "name": c.name,
            "component": c.component,
            "entries": len(c._store),
            "bytes": c._store.bytes,
            "tenants": c._store.tenants,
            "evictions": c._store.evictions,
            "max_entries": c.options.max_entries,
            "max_bytes": c.options.max_bytes,
            **c._policy.info(),
            **c.stats.to_dict(),
        }

    def tenant_usage(self, tenant: str | None) -> tuple[int, int]:
        """``(entries, bytes)`` this process holds in L1 for ``tenant``."""
        c = cast(_Host, self)
        return c._store.tenant_usage(tenant)

    def watch(self, callback: Callable[[Key | None], None]) -> Callable[[], None]:
        """Call ``callback((tenant, key))`` when a push says another writer changed a key, and
        ``callback(None)`` when every entry was demoted (listener lost, flush, mode change).

        Pushes for keys this process does not hold are reported too (tracking is by prefix);
        the echo of this process's own write is not. Returns an unsubscribe function.
        """
        c = cast(_Host, self)
        return c._watchers.add(callback)
