"""Counting commands in tests: what lowtide's ledger says it sent, and what the server received.

Costs are asserted as changes between two readings, filtered by who sent them::

    from lowtide.testing.counts import changes, ledger_commands

    before = ledger_commands(hub, component="cache")
    await cache.get("u1", tenant="t1")                   # a miss
    changes(before, ledger_commands(hub, component="cache"))      # {"get": 1}

and the ledger is reconciled with the server's own ``INFO commandstats``::

    before = server_commands(server)                      # the harness's INFO is counted after
    async with Lowtide(server.url) as hub:
        ...
    received = changes(before, server_commands(server), minus={"info": 1})
    received == hub.ledger.snapshot().by_command          # True: what a test asserts

Command names are the server's (``get``, ``client|tracking``), on both sides. Filters match
the ledger's rows: ``component`` (``"cache"``, ``"limiter"``, ``"breaker"``, ``"tenants"``,
``"quota"``, ``"invalidation"``, ...), ``family`` (``"lt:c:profiles:*"``), ``tenant`` (a tenant
id, or ``None`` for commands of no tenant) and ``command``; a filter left out matches every row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Final, Protocol

from lowtide.ledger import Ledger, LedgerRow, LedgerSnapshot
from lowtide.testing.cluster import Cluster
from lowtide.testing.server import ValkeyServer

__all__ = ["ANY", "changes", "ledger_commands", "ledger_total", "server_commands"]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: the default of the ``tenant`` filter: every tenant (``tenant=None`` selects "no tenant")
ANY: Final = _Any()


class HasLedger(Protocol):
    """Anything that owns a ledger (a :class:`~lowtide.Lowtide` hub)."""

    @property
    def ledger(self) -> Ledger:
        """The command ledger."""
        ...


LedgerSource = HasLedger | Ledger | LedgerSnapshot


def _rows(source: LedgerSource) -> tuple[LedgerRow, ...]:
    if isinstance(source, LedgerSnapshot):
        return source.rows
    ledger = source if isinstance(source, Ledger) else source.ledger
    return ledger.snapshot().rows


def _one_of(value: str | Collection[str] | None) -> Collection[str] | None:
    return (value,) if isinstance(value, str) else value


def ledger_commands(
    source: LedgerSource,
    *,
    component: str | Collection[str] | None = None,
    family: str | None = None,
    tenant: str | _Any | None = ANY,
    command: str | None = None,
) -> dict[str, int]:
    """``{command: count}`` of the ledger rows that match every filter given.

    ``source`` is a hub, a :class:`~lowtide.ledger.Ledger` or a snapshot of one;
    ``component`` may name several components (``("cache", "tenants")``).
    """
    components = _one_of(component)
    out: dict[str, int] = {}
    for row in _rows(source):
        if components is not None and row.component not in components:
            continue
        if family is not None and row.family != family:
            continue
        if not isinstance(tenant, _Any) and row.tenant != tenant:
            continue
        if command is not None and row.command != command:
            continue
        out[row.command] = out.get(row.command, 0) + row.count
    return out


def ledger_total(
    source: LedgerSource,
    *,
    component: str | Collection[str] | None = None,
    family: str | None = None,
    tenant: str | _Any | None = ANY,
    command: str | None = None,
) -> int:
    """How many commands the ledger rows that match every filter given add up to."""
    counts = ledger_commands(
        source, component=component, family=family, tenant=tenant, command=command
    )
    return sum(counts.values())


def server_commands(target: ValkeyServer | Cluster | Iterable[ValkeyServer]) -> dict[str, int]:
    """``{command: calls + rejected_calls}`` from ``INFO commandstats``, summed over servers.

    A :class:`~lowtide.testing.Cluster` counts its primaries only (a replica also counts the
    writes it replays). Each reading is one INFO per server, which the server counts after
    answering it: pass ``minus={"info": <servers read>}`` to :func:`changes` for the reading
    that started the measurement.
    """
    if isinstance(target, ValkeyServer):
        servers: Iterable[ValkeyServer] = (target,)
    elif isinstance(target, Cluster):
        servers = [node.server for node in target.masters]
    else:
        servers = target
    out: dict[str, int] = {}
    for server in servers:
        for name, n in server.commandstats().items():
            out[name] = out.get(name, 0) + n
    return out


def changes(
    before: Mapping[str, int], after: Mapping[str, int], *, minus: Mapping[str, int] | None = None
) -> dict[str, int]:
    """``{name: after - before - minus}`` for every name whose result is not zero.

    ``minus`` takes out known traffic that is not lowtide's (the harness's own INFO, a CLIENT
    KILL the test sent...).
    """
    out: dict[str, int] = {}
    for name in {*before, *after, *(minus or {})}:
        n = after.get(name, 0) - before.get(name, 0) - (minus or {}).get(name, 0)
        if n:
            out[name] = n
    return out
