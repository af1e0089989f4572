"""What a hub reports about itself: ``lt.health()`` and the ``Redis Metrics`` log line.

:func:`hub_health` formats a :class:`HubStatus`, a read-only record the hub builds from public
reads (``Lowtide.status()``); nothing here reaches into the hub's private state.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lowtide.ledger.snapshot import rounded
from lowtide.modes import Mode

if TYPE_CHECKING:
    from lowtide.connectivity import LinkStatus
    from lowtide.ledger import LedgerTotals
    from lowtide.runtime import HubView
    from lowtide.settings import Settings

__all__ = ["HubStatus", "hub_health", "metrics_log_loop"]

log = logging.getLogger("lowtide")

_STATUS = {
    Mode.DISTRIBUTED: "ok",
    Mode.LOCAL: "ok",
    Mode.DEGRADED: "degraded",
    Mode.SUSPENDED: "suspended",
}


@dataclass(frozen=True, slots=True)
class HubStatus:
    """Everything a health report is made of, read at one moment."""

    settings: Settings
    link: LinkStatus
    #: the listener's :meth:`~lowtide.invalidation.Invalidations.info`, None if never created
    invalidation: dict[str, Any] | None
    caches: list[dict[str, Any]]
    saved: dict[str, int]
    #: the ledger's running totals (:meth:`~lowtide.ledger.Ledger.totals`): no rows, so a
    #: health report costs the same with 10 or 50,000 ledger rows
    ledger: LedgerTotals


def hub_health(status: HubStatus) -> dict[str, Any]:
    """Status for health endpoints. Never contains a password.

    ``status`` is ``ok`` (distributed or local-only), ``degraded`` or ``suspended``.
    """
    s = status.settings
    link = status.link
    totals = status.ledger
    return {
        "status": _STATUS[link.mode],
        "mode": link.mode.value,
        "since": link.since,
        "reason": link.reason,
        "instance": s.instance,
        "namespace": s.namespace,
        "provider": s.provider,
        "redis": {
            "configured": s.url is not None,
            "url": s.redacted_url,
            "reachable": None if not link.has_gateway else link.mode is Mode.DISTRIBUTED,
            "latency_ms": link.latency_ms,
            "last_error": link.last_error,
            "connect_attempts": link.connect_attempts,
        },
        "invalidation": status.invalidation
        or {"mode": "off", "healthy": False, "listener": "not started"},
        "caches": status.caches,
        "saved": status.saved,
        "ledger": {
            "commands": totals.total,
            "billed": totals.billed,
            # projections: null until the ledger counted for MIN_PROJECTION_S (60 s)
            "projection_s": round(totals.projection_s, 1),
            "per_day": rounded(totals.per_day, 1),
            "billed_per_day": rounded(totals.billed_per_day, 1),
            "usd_per_month": rounded(totals.usd_per_month, 4),
        },
    }


async def metrics_log_loop(hub: HubView) -> None:
    """Log one ``Redis Metrics`` JSON line every ``metrics_interval`` (what operators grep)."""
    last: dict[str, int] = {}
    while True:
        await hub.clock.sleep(hub.settings.metrics_interval)
        snap = hub.ledger.totals()  # running totals: no walk over the ledger's rows
        by_component: dict[str, int] = {}
        for (component, _, _, _), n in hub.ledger.groups().items():
            by_component[component] = by_component.get(component, 0) + n
        delta = {k: v - last.get(k, 0) for k, v in snap.by_command.items()}
        last = dict(snap.by_command)
        log.info(
            "Redis Metrics %s",
            json.dumps(
                {
                    "instance": snap.instance,
                    "mode": hub.mode.value,
                    "commands": snap.total,
                    "billed": snap.billed,
                    "per_day": rounded(snap.per_day, 0),
                    "usd_per_month": rounded(snap.usd_per_month, 4),
                    "interval_by_command": {k: v for k, v in delta.items() if v},
                    "by_component": by_component,
                    "saved": hub.saved(),
                },
                sort_keys=True,
            ),
        )
