"""What a hub reports about itself: ``lt.health()`` and the ``Redis Metrics`` log line."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from lowtide.modes import Mode

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["hub_health", "metrics_log_loop"]

log = logging.getLogger("lowtide")

_STATUS = {
    Mode.DISTRIBUTED: "ok",
    Mode.LOCAL: "ok",
    Mode.DEGRADED: "degraded",
    Mode.SUSPENDED: "suspended",
}


def hub_health(hub: Lowtide) -> dict[str, Any]:
    """Status for health endpoints. Never contains a password.

    ``status`` is ``ok`` (distributed or local-only), ``degraded`` or ``suspended``.
    """
    s = hub.settings
    snap = hub.ledger.snapshot()
    return {
        "status": _STATUS[hub.mode],
        "mode": hub.mode.value,
        "since": hub._mode_since,
        "reason": hub._mode_reason,
        "instance": s.instance,
        "namespace": s.namespace,
        "provider": s.provider,
        "redis": {
            "configured": s.url is not None,
            "url": s.redacted_url,
            "reachable": None if hub._gateway is None else hub.mode is Mode.DISTRIBUTED,
            "latency_ms": hub._latency_ms,
            "last_error": hub._last_error,
            "connect_attempts": hub._reconnect_attempts,
        },
        "invalidation": _invalidation_health(hub),
        "caches": hub._registry.info(),
        "saved": hub.saved(),
        "ledger": {
            "commands": snap.total,
            "billed": snap.billed,
            "per_day": round(snap.per_day, 1),
            "billed_per_day": round(snap.billed_per_day, 1),
            "usd_per_month": round(snap.usd_per_month, 4),
        },
    }


def _invalidation_health(hub: Lowtide) -> dict[str, Any]:
    inv = hub._invalidations
    if inv is None:
        return {"mode": "off", "healthy": False, "listener": "not started"}
    listener = "subscribed" if inv.healthy else "down"
    if inv.mode.value == "ttl":
        listener = "none (ttl mode)"
    return {
        "mode": inv.mode.value,
        "setting": inv.setting,
        "healthy": inv.healthy,
        "listener": listener,
        "received": inv.received,
        "last_error": inv.last_error,
    }


async def metrics_log_loop(hub: Lowtide) -> None:
    """Log one ``Redis Metrics`` JSON line every ``metrics_interval`` (the seeds' grep target)."""
    last: dict[str, int] = {}
    while True:
        await hub.clock.sleep(hub.settings.metrics_interval)
        snap = hub.ledger.snapshot()
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
                    "per_day": round(snap.per_day),
                    "usd_per_month": round(snap.usd_per_month, 4),
                    "interval_by_command": {k: v for k, v in delta.items() if v},
                    "by_component": snap.by_component,
                    "saved": hub.saved(),
                },
                sort_keys=True,
            ),
        )
