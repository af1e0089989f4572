"""Tenant discovery: ``(connector, external id) -> tenant id``, cached like any tiered value.

Every inbound webhook has to find its tenant (the seeds' ``discovery:{connector}:{external_id}``
GET). :class:`TenantResolver` keeps the mapping in a tiered cache per connector (component
``tenants``, key family ``<ns>:t:<connector>:*``), so:

* a known external id costs **0 commands** after its first resolve on a machine (L1, kept
  correct by invalidation pushes, for up to ``ttl``);
* ``remember()`` pre-warms the mapping right after OAuth (1 SET), ``forget()`` removes it
  (1 DEL); other machines drop their copy on the push;
* an unknown id is remembered as unknown for ``negative_ttl`` (0 commands per repeated unknown
  webhook), and concurrent resolves of one id share one L2 read and one loader call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypedDict

from lowtide.cache.options import pushed_state
from lowtide.cache.tiered import Cache
from lowtide.errors import InvalidKeyError, SerializationError
from lowtide.keys import MAX_TENANT_LENGTH

if TYPE_CHECKING:
    from lowtide.cache.registry import CacheHub

__all__ = ["MAX_CONNECTORS", "TenantLoader", "TenantResolver", "TenantsKwargs"]

#: distinct connectors one resolver accepts (each gets its own L1 and key family)
MAX_CONNECTORS = 256

#: ``async (connector, external_id) -> tenant id or None`` (your database lookup)
TenantLoader = Callable[[str, str], Awaitable[str | None]]


class TenantsKwargs(TypedDict, total=False):
    """The optional :class:`TenantResolver` arguments, as :meth:`Lowtide.tenants` takes them
    (each default lives in :class:`TenantResolver`)."""

    ttl: float
    negative_ttl: float
    max_entries: int


class TenantResolver:
    """Resolves external ids to tenant ids. Create it with :meth:`Lowtide.tenants`."""

    def __init__(
        self,
        hub: CacheHub,
        loader: TenantLoader | None,
        *,
        ttl: float = 3600.0,
        negative_ttl: float = 30.0,
        max_entries: int = 100_000,
    ) -> None:
        self._hub = hub
        self._loader = loader
        self._options = pushed_state(
            ttl=ttl,
            # a mapping changes only through remember()/forget(), whose pushes reach every
            # machine, so L1 may keep it as long as L2 does
            max_staleness=ttl,
            max_entries=max_entries,
            entry_bytes=512,
            negative_ttl=negative_ttl,
            eager_refresh=0.9,
            per_tenant=False,
            max_value_bytes=MAX_TENANT_LENGTH * 4 + 16,
        )
        build = hub.caches.cache
        self._connectors: set[str] = set()

        def cache_for(connector: str) -> Cache:
            if connector not in self._connectors:
                if len(self._connectors) >= MAX_CONNECTORS:
                    raise InvalidKeyError(
                        f"more than {MAX_CONNECTORS} connectors: connector names must come from "
                        "code, not from requests"
                    )
                self._connectors.add(connector)
            return build(connector, self._options, component="tenants", codec=None)

        self._cache_for: Callable[[str], Cache] = cache_for

    def cache(self, connector: str) -> Cache:
        """The tiered cache holding ``connector``'s mappings (for stats and tests)."""
        return self._cache_for(connector)

    async def resolve(self, connector: str, external_id: str) -> str | None:
        """The tenant id of ``external_id`` on ``connector``, or None if unknown."""
        cache = self._cache_for(connector)
        loader = self._loader
        if loader is None:
            value = await cache.get(external_id)
        else:

            async def load() -> str | None:
                tenant = await loader(connector, external_id)
                if tenant is not None and (
                    not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT_LENGTH
                ):
                    raise SerializationError(
                        f"tenant loader returned {type(tenant).__name__} {str(tenant)[:50]!r}: "
                        "expected a non-empty str tenant id (nothing was cached)"
                    )
                return tenant

            value = await cache.get_or_load(external_id, load)
        if value is not None and not isinstance(value, str):
            raise SerializationError(
                f"tenant mapping for {connector!r} holds a {type(value).__name__}, not a str"
            )
        return value

    async def remember(self, connector: str, external_id: str, tenant: str) -> None:
        """Store the mapping (e.g. right after OAuth): 1 SET; every machine's old copy drops."""
        if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT_LENGTH:
            raise InvalidKeyError(
                f"tenant id must be a non-empty str of at most {MAX_TENANT_LENGTH} characters"
            )
        await self._cache_for(connector).set(external_id, tenant)

    async def forget(self, connector: str, external_id: str) -> None:
        """Remove the mapping (e.g. on uninstall): 1 DEL."""
        await self._cache_for(connector).delete(external_id)
