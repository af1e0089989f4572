"""Per-task context: the current tenant and the attribution of Redis commands.

Both live in ``ContextVar`` objects, so they follow each asyncio task and cost tens of
nanoseconds to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["Attribution", "current_attribution", "current_tenant", "tenant_scope"]

_tenant: ContextVar[str | None] = ContextVar("lowtide_tenant", default=None)


class Attribution(NamedTuple):
    """Who a Redis command is for: the component that sent it, its key family and tenant."""

    component: str
    family: str
    tenant: str | None = None


#: commands sent outside any component (e.g. by user code on the hub's client)
UNATTRIBUTED = Attribution("app", "-", None)
_attribution: ContextVar[Attribution] = ContextVar("lowtide_attribution", default=UNATTRIBUTED)


def current_attribution() -> Attribution:
    """What the command being sent right now is attributed to (component, key family, tenant);
    ``UNATTRIBUTED`` outside lowtide's sends. For instrumentation that runs inside a send (span
    hooks, observers)."""
    return _attribution.get()


def current_tenant() -> str | None:
    """The tenant set by the innermost active :func:`tenant_scope`, or ``None``."""
    return _tenant.get()


@contextmanager
def tenant_scope(tenant: str) -> Iterator[str]:
    """Make ``tenant`` the default ``tenant=`` for lowtide calls inside the block.

    >>> with tenant_scope("t1"):
    ...     current_tenant()
    't1'
    """
    if not isinstance(tenant, str) or not tenant:
        raise TypeError("tenant_scope() needs a non-empty str tenant id")
    token = _tenant.set(tenant)
    try:
        yield tenant
    finally:
        _tenant.reset(token)
