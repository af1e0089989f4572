"""The fleet view: each hub can publish a small snapshot of its ledger; ``lowtide top`` reads them.

Opt-in (``LOWTIDE_FLEET_VIEW=true`` or ``Lowtide(fleet_view=True)``): once a minute, while
distributed, a hub writes **one command**::

    SET <ns>:m:fleet::snap:<instance> <json> PX 180000

so a snapshot disappears three minutes after its hub stops. The JSON holds the projection
(commands and billed units per day, $/month), totals by component and command, the 20 busiest
key families and tenants, commands saved, and the mode. :func:`read_fleet` lists them (SCAN +
MGET) for ``lowtide top``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from lowtide.context import Attribution
from lowtide.keys import build_key, family, prefix
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["FleetPublisher", "read_fleet", "snapshot_payload"]

log = logging.getLogger("lowtide.fleet")
TTL_MS = 180_000
READER = Attribution("top", "-", None)


def _top(counts: dict[str, int], n: int = 20) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:n])


def snapshot_payload(hub: HubView) -> dict[str, Any]:
    """What a hub publishes about itself."""
    snap = hub.ledger.snapshot()
    return {
        "instance": snap.instance,
        "provider": snap.provider,
        "mode": hub.mode.value,
        "at": snap.taken_at,
        "elapsed_s": round(snap.elapsed_s, 1),
        "commands": snap.total,
        "billed": snap.billed,
        "per_day": round(snap.per_day, 1),
        "billed_per_day": round(snap.billed_per_day, 1),
        "usd_per_month": round(snap.usd_per_month, 4),
        "by_component": snap.by_component,
        "by_command": _top(snap.by_command),
        "by_family": _top(snap.by_family),
        "by_tenant": _top(snap.by_tenant),
        "saved": hub.saved(),
    }


class FleetPublisher(Periodic):
    """Publishes :func:`snapshot_payload` every ``interval`` seconds (see module docs)."""

    def __init__(self, hub: HubView, *, interval: float = 60.0) -> None:
        super().__init__(hub, interval)
        ns = hub.settings.namespace
        self.key = build_key(ns, "fleet", "snap", None, hub.settings.instance)
        self._att = Attribution("fleet", family(ns, "fleet", "snap"), None)
        self.published = 0

    async def publish(self) -> None:
        """Publish one snapshot now (1 SET)."""
        payload = json.dumps(snapshot_payload(self._hub), separators=(",", ":"))
        await self._hub.gateway.call(self._att, "SET", self.key, payload, "PX", TTL_MS)
        self.published += 1

    async def tick(self) -> None:
        """One snapshot."""
        await self.publish()


async def read_fleet(hub: HubView, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every published snapshot of ``namespace`` (SCAN + MGET), busiest first."""
    ns = namespace or hub.settings.namespace
    pattern = prefix(ns, "fleet") + "snap::*"
    keys: list[Any] = []
    cursor: Any = 0
    while True:
        cursor, batch = await hub.gateway.call(
            READER, "SCAN", cursor, "MATCH", pattern, "COUNT", 500
        )
        keys.extend(batch)
        if int(cursor) == 0:
            break
    if not keys:
        return []
    out = []
    for raw in await hub.gateway.call(READER, "MGET", *keys):
        if raw is None:
            continue
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return sorted(out, key=lambda s: -float(s.get("billed_per_day", 0)))
