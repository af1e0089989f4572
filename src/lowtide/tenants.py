"""Tenant discovery: ``(connector, external id) -> tenant id``, cached like any tiered value.

Every inbound webhook has to find its tenant (the incident's ``discovery:{connector}:{external_id}``
GET). :class:`TenantResolver` keeps the mapping in a tiered cache per connector (component
``tenants``, key family ``<ns>:t:<connector>:*``), so:

* a known external id costs **0 commands** after its first resolve on a machine (L1, kept
  correct by invalidation pushes, for up to ``ttl``);
* ``remember()`` pre-warms the mapping right after OAuth (1 SET), ``forget()`` removes it
  (1 DEL); other machines drop their copy on the push;
* an unknown id is remembered as unknown for ``negative_ttl`` (0 commands per repeated unknown
  webhook), and concurrent resolves of one id share one L2 read and one loader call.

A tenant id read back from Redis is checked exactly like one written
(:func:`lowtide.keys.check_tenant_id`: a non-empty str of at most 256 characters, valid
unicode; and no larger than the cache's ``max_value_bytes``): anything else is an unreadable
value, never returned. With a loader it is loaded again and overwritten; without one,
:meth:`TenantResolver.resolve` answers ``None`` (unknown), counted in ``stats["unreadable"]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypedDict

from lowtide.cache.options import pushed_state
from lowtide.cache.tiered import Cache
from lowtide.codec import JsonCodec
from lowtide.errors import InvalidKeyError, SerializationError
from lowtide.keys import MAX_TENANT_LENGTH, check_tenant_id

if TYPE_CHECKING:
    from lowtide.cache.registry import CacheHub

__all__ = ["MAX_CONNECTORS", "TenantLoader", "TenantResolver", "TenantsKwargs"]

#: distinct connectors one resolver accepts (each gets its own L1 and key family)
MAX_CONNECTORS = 256

#: ``async (connector, external_id) -> tenant id or None`` (your database lookup)
TenantLoader = Callable[[str, str], Awaitable[str | None]]


class TenantIdCodec(JsonCodec):
    """The JSON codec, for values that must be tenant ids: anything else is refused when
    written and when read back (:class:`SerializationError`: the cache's unreadable value)."""

    def encode(self, value: Any) -> bytes:
        """Tagged bytes for a valid tenant id."""
        return super().encode(_tenant_id(value))

    def decode(self, data: bytes) -> Any:
        """The tenant id ``data`` holds; SerializationError if it is not a valid one."""
        return _tenant_id(super().decode(data))


def _tenant_id(value: object) -> str:
    try:
        return check_tenant_id(value)
    except InvalidKeyError as exc:
        raise SerializationError(f"not a tenant id: {exc}") from None


#: one instance for every connector's cache (the registry compares codecs by identity)
TENANT_IDS = TenantIdCodec()


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
            # the longest id encoded: 256 characters JSON may escape as \\uXXXX (6 bytes)
            max_value_bytes=MAX_TENANT_LENGTH * 6 + 16,
        )
        #: ``unreadable``: resolves (without a loader) that found an invalid value in Redis
        self.stats = {"unreadable": 0}
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
            return build(connector, self._options, component="tenants", codec=TENANT_IDS)

        self._cache_for: Callable[[str], Cache] = cache_for

    def cache(self, connector: str) -> Cache:
        """The tiered cache holding ``connector``'s mappings (for stats and tests)."""
        return self._cache_for(connector)

    async def resolve(self, connector: str, external_id: str) -> str | None:
        """The tenant id of ``external_id`` on ``connector``, or None if unknown.

        An invalid value in Redis is never returned (see module docs).
        """
        cache = self._cache_for(connector)
        loader = self._loader
        if loader is None:
            try:
                value = await cache.get(external_id)
                return value if isinstance(value, str) else None
            except SerializationError:  # counted and logged by the cache
                self.stats["unreadable"] += 1
                return None
        else:

            async def load() -> str | None:
                tenant = await loader(connector, external_id)
                if tenant is not None:
                    try:
                        check_tenant_id(tenant)
                    except InvalidKeyError:
                        raise SerializationError(
                            f"tenant loader returned {type(tenant).__name__} "
                            f"{str(tenant)[:50]!r}: expected a non-empty str tenant id "
                            "(nothing was cached)"
                        ) from None
                return tenant

            # an unreadable value is loaded again and overwritten by the cache
            value = await cache.get_or_load(external_id, load)
        return value if value is None else _tenant_id(value)

    async def remember(self, connector: str, external_id: str, tenant: str) -> None:
        """Store the mapping (e.g. right after OAuth): 1 SET; every machine's old copy drops."""
        check_tenant_id(tenant)
        await self._cache_for(connector).set(external_id, tenant)

    async def forget(self, connector: str, external_id: str) -> None:
        """Remove the mapping (e.g. on uninstall): 1 DEL."""
        await self._cache_for(connector).delete(external_id)
