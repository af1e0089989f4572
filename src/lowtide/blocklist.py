"""``TenantBlockList``: the tenants that are over their command quota.

One object per hub, with one writer (:class:`~lowtide.quotas.Quotas`, through :meth:`block`
and :meth:`clear`) and one enforcer (:class:`~lowtide.redis.Gateway`, which refuses their
commands without I/O). Both hold the same object, so no owner can rebind it from under the
other.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["TenantBlockList"]


class TenantBlockList:
    """A set of tenant ids with named mutations (see module docs)."""

    __slots__ = ("_tenants",)

    def __init__(self) -> None:
        self._tenants: set[str] = set()

    def block(self, tenant: str) -> bool:
        """Add ``tenant``; True if it was not blocked before."""
        if tenant in self._tenants:
            return False
        self._tenants.add(tenant)
        return True

    def clear(self) -> None:
        """Unblock everyone (a new quota period)."""
        self._tenants.clear()

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._tenants

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tenants))

    def __len__(self) -> int:
        return len(self._tenants)

    def __bool__(self) -> bool:
        return bool(self._tenants)

    def __repr__(self) -> str:
        return f"<TenantBlockList n={len(self._tenants)}>"
