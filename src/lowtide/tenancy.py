"""Per-tenant plumbing shared by every component: which tenant a call is for, how its
commands are labelled, and bounded per-tenant state.

* :func:`resolve_tenant`: the explicit ``tenant=``, else the one of :func:`tenant_scope`, else
  :class:`TenantRequired`; components created with ``per_tenant=False`` have no tenant.
* :class:`Attributions`: the ledger label of each tenant's commands, made once per tenant
  (bounded, so a flood of tenant ids cannot grow it without limit).
* :class:`TenantLRU`: per-tenant state, least recently used first, bounded by ``max_tenants``;
  an entry the owner still needs (``keep_if``) is never evicted, and the owner may learn what
  an evicted entry held (``on_evict_entry``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from lowtide.context import Attribution, _tenant
from lowtide.errors import TenantRequired

__all__ = ["MAX_ATTRIBUTIONS", "Attributions", "TenantLRU", "resolve_tenant", "tenant_kwargs"]

T = TypeVar("T")

#: tenants whose attribution is kept (others get a fresh, equal one per call)
MAX_ATTRIBUTIONS = 10_000


def resolve_tenant(
    tenant: str | None, *, per_tenant: bool, what: str, strict: bool = False
) -> str | None:
    """The tenant a call is for.

    ``what`` names the component in errors (``"cache 'profiles'"``). With ``per_tenant=False``
    the answer is None; ``strict`` then refuses an explicit ``tenant=`` instead of ignoring it.
    """
    if not per_tenant:
        if strict and tenant is not None:
            raise TenantRequired(f"{what} was created with per_tenant=False; do not pass tenant=")
        return None
    if tenant is None:
        tenant = _tenant.get()
        if tenant is None:
            raise TenantRequired(f"{what} is per tenant: pass tenant= or use tenant_scope()")
    return tenant


def tenant_kwargs(tenant: str | None, *, per_tenant: bool) -> dict[str, Any]:
    """``{"tenant": tenant}`` for a per-tenant cache, ``{}`` for a shared one."""
    return {"tenant": tenant} if per_tenant else {}


class Attributions:
    """The :class:`Attribution` of each tenant for one (component, key family)."""

    __slots__ = ("_cache", "component", "family")

    def __init__(self, component: str, family: str) -> None:
        self.component = component
        self.family = family
        self._cache: dict[str | None, Attribution] = {}

    def __call__(self, tenant: str | None) -> Attribution:
        att = self._cache.get(tenant)
        if att is None:
            att = Attribution(self.component, self.family, tenant)
            if len(self._cache) < MAX_ATTRIBUTIONS:
                self._cache[tenant] = att
        return att


class TenantLRU(Generic[T]):
    """Per-tenant state bounded by ``max_tenants`` (see module docs).

    When a new tenant pushes the size over the bound, the least recently used entries are
    examined, as many as the excess, and those not kept by ``keep_if`` are evicted
    (``on_evict(tenant)`` and ``on_evict_entry(tenant, entry)`` are called for each).
    """

    __slots__ = ("_entries", "_factory", "_keep_if", "_on_evict", "_on_evict_entry", "max_tenants")

    def __init__(
        self,
        max_tenants: int,
        factory: Callable[[], T],
        *,
        keep_if: Callable[[T], bool] | None = None,
        on_evict: Callable[[str | None], None] | None = None,
        on_evict_entry: Callable[[str | None, T], None] | None = None,
    ) -> None:
        self.max_tenants = max_tenants
        self._factory = factory
        self._keep_if = keep_if
        self._on_evict = on_evict
        self._on_evict_entry = on_evict_entry
        self._entries: OrderedDict[str | None, T] = OrderedDict()

    def get(self, tenant: str | None) -> T:
        """The state of ``tenant`` (created if new), now the most recently used."""
        entry = self._entries.get(tenant)
        if entry is not None:
            self._entries.move_to_end(tenant)
            return entry
        entry = self._entries[tenant] = self._factory()
        excess = len(self._entries) - self.max_tenants
        if excess > 0:
            self._evict(excess)
        return entry

    def peek(self, tenant: str | None) -> T | None:
        """The state of ``tenant`` if held (not created, not marked used)."""
        return self._entries.get(tenant)

    def _evict(self, excess: int) -> None:
        for tenant in list(self._entries)[:excess]:
            entry = self._entries[tenant]
            if self._keep_if is not None and self._keep_if(entry):
                continue
            del self._entries[tenant]
            if self._on_evict is not None:
                self._on_evict(tenant)
            if self._on_evict_entry is not None:
                self._on_evict_entry(tenant, entry)

    def values(self) -> list[T]:
        """Every entry, least recently used first."""
        return list(self._entries.values())

    def items(self) -> list[tuple[str | None, T]]:
        """Every ``(tenant, entry)``, least recently used first."""
        return list(self._entries.items())

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str | None]:
        return iter(list(self._entries))
