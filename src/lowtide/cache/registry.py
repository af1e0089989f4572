"""The cache registry: one :class:`Cache` per (component, name) per hub, and the routing of
invalidations and mode changes to them.

An invalidated Redis key is parsed once (:func:`lowtide.keys.parse_key`) and handed to the one
cache that owns it; a flush (``None``) or any hub mode change demotes every cache's L1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from lowtide.cache.tiered import Cache, CacheOptions
from lowtide.codec import Codec
from lowtide.errors import ConfigError, InvalidKeyError
from lowtide.keys import parse_key
from lowtide.modes import InvalidationMode, ModeChange
from lowtide.redis.keyspace import Expired
from lowtide.runtime import HubView

__all__ = ["CacheHub", "CacheRegistry"]

log = logging.getLogger("lowtide.cache")


class CacheHub(HubView, Protocol):
    """A :class:`~lowtide.runtime.HubView` that also owns tiered caches: what components that
    keep their shared state in caches (limiters, breakers, tenant discovery) need."""

    @property
    def caches(self) -> CacheRegistry:
        """The hub's cache registry."""


class CacheRegistry:
    """Owns the caches of one hub (see module docs)."""

    def __init__(self, hub: HubView) -> None:
        self._hub = hub
        self._caches: dict[tuple[str, str], Cache] = {}
        self._unsubscribe: list[Any] = []

    def cache(
        self, name: str, options: CacheOptions, *, component: str, codec: Codec | None
    ) -> Cache:
        """The cache ``name`` of ``component``, created on first use.

        Asking again with other options is a :class:`ConfigError` (two meanings for one key
        family would be a bug).
        """
        existing = self._caches.get((component, name))
        if existing is not None:
            if existing.options != options or (codec is not None and codec is not existing.codec):
                raise ConfigError(
                    f"{component} {name!r} already exists with other options: {existing.options!r}"
                )
            return existing
        cache = Cache(self._hub, name, options, component=component, codec=codec)
        if not self._unsubscribe:
            self._unsubscribe.append(self._hub.on_mode_change(self._on_mode))
            if self._hub.settings.url is not None:
                self._unsubscribe.append(self._hub.invalidations.subscribe(self._on_keys))
        self._caches[(component, name)] = cache
        return cache

    def __iter__(self) -> Iterator[Cache]:
        return iter(list(self._caches.values()))

    def _on_keys(self, keys: list[str] | None) -> None:
        if keys is None:
            self.demote_all()
            return
        caches = self._caches
        # keyspace events say which pushes are expiries, backplane messages announce writes,
        # CLIENT TRACKING's do not say (None)
        expiry: bool | None = isinstance(keys, Expired) or (
            None if self._hub.invalidations.mode is InvalidationMode.TRACKING else False
        )
        for rk in keys:
            try:
                parsed = parse_key(rk)
            except (InvalidKeyError, ValueError):  # not ours, or not decodable: skip only it
                continue
            cache = caches.get((parsed.component, parsed.name))
            if cache is not None and not parsed.hashtag:
                cache._invalidate((parsed.tenant, parsed.key), expiry=expiry)

    def _on_mode(self, change: ModeChange) -> None:
        # whatever was learned before a mode change can no longer be trusted as fresh
        self.demote_all()

    def demote_all(self) -> None:
        """Make every L1 entry of every cache stale (kept for fail-safe)."""
        for cache in self._caches.values():
            cache._demote()

    def forget_tenant(self, tenant: str) -> None:
        """Drop every L1 entry of ``tenant`` in every cache (its quota came back: what it
        wrote while local-only never reached Redis)."""
        for cache in self._caches.values():
            cache._forget_tenant(tenant)

    def info(self) -> list[dict[str, Any]]:
        """:meth:`Cache.info` of every cache."""
        return [c.info() for c in self._caches.values()]

    async def aclose(self) -> None:
        """Stop background refreshes and unsubscribe."""
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe.clear()
        for cache in self._caches.values():
            await cache.aclose()
