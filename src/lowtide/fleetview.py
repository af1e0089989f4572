"""The fleet view: each hub can publish a small snapshot of its ledger; ``lowtide top`` reads them.

Opt-in (``LOWTIDE_FLEET_VIEW=true`` or ``Lowtide(fleet_view=True)``): once a minute, while
distributed, a hub writes **one command**::

    SET <ns>:m:fleet::snap:<instance> <json> PX 180000

so a snapshot disappears three minutes after its hub stops. The JSON holds the projection
(commands and billed units per day, $/month: null while the hub has counted for less than a
minute), totals by component and command, the 20 busiest
key families and tenants, commands saved, and the mode. :func:`read_fleet` lists them (SCAN +
MGET) for ``lowtide top``.

Snapshots are untrusted (anyone with write access can plant or spoof one): :func:`parse_snapshot`
keeps a snapshot only if it is a JSON object of at most :data:`MAX_SNAPSHOT_BYTES` whose known
fields have the published types (``instance``, ``provider``, ``mode``: strings; counts and
rates: finite numbers >= 0, the projections also null; the ``by_*`` and ``saved`` tables: at most
:data:`MAX_TABLE_ENTRIES` string keys with finite numbers >= 0), and returns only those fields
(missing ones at their zero value). A malformed snapshot is skipped and counted, never fatal; at
most :data:`MAX_SNAPSHOTS` are read. Strings are returned as they are: a consumer that renders
markup must escape them.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final

import orjson

from lowtide._untrusted import Warnings, number, shown
from lowtide.context import Attribution
from lowtide.keys import build_key, family, prefix
from lowtide.ledger.snapshot import rounded
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = [
    "MAX_SNAPSHOTS",
    "MAX_SNAPSHOT_BYTES",
    "MAX_TABLE_ENTRIES",
    "FleetPublisher",
    "parse_snapshot",
    "read_fleet",
    "snapshot_payload",
]

log = logging.getLogger("lowtide.fleet")
TTL_MS = 180_000
READER = Attribution("top", "-", None)
#: the largest snapshot read (a published one is a few KB)
MAX_SNAPSHOT_BYTES: Final = 1 << 20
#: most entries of one table (``by_family``...) in a snapshot (a hub publishes its top 20)
MAX_TABLE_ENTRIES: Final = 1000
#: most snapshots :func:`read_fleet` reads (keys beyond are left out, counted)
MAX_SNAPSHOTS: Final = 10_000
_TEXT = ("instance", "provider", "mode")
_NUMBERS = ("at", "elapsed_s", "commands", "billed")
#: numbers that may be null: a hub counting for less than a minute projects nothing yet
_PROJECTIONS = ("per_day", "billed_per_day", "usd_per_month")
_TABLES = ("by_component", "by_command", "by_family", "by_tenant", "saved")
_warnings = Warnings(log)


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
        # null until the hub counted for a minute (MIN_PROJECTION_S)
        "per_day": rounded(snap.per_day, 1),
        "billed_per_day": rounded(snap.billed_per_day, 1),
        "usd_per_month": rounded(snap.usd_per_month, 4),
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


def parse_snapshot(raw: object) -> dict[str, Any] | None:
    """The snapshot ``raw`` holds, checked and reduced to the published fields (see module
    docs); None if it is not one."""
    if not isinstance(raw, bytes | str) or len(raw) > MAX_SNAPSHOT_BYTES:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("instance"), str):
        return None
    out: dict[str, Any] = {}
    for name in _TEXT:
        text = value.get(name, "")
        if not isinstance(text, str):
            return None
        out[name] = text
    for name in (*_NUMBERS, *_PROJECTIONS):
        n = value.get(name, 0)
        if n is None and name in _PROJECTIONS:
            out[name] = None
            continue
        checked = number(n, lo=0.0)
        if checked is None:
            return None
        out[name] = n if isinstance(n, int) else checked
    for name in _TABLES:
        table = value.get(name, {})
        if not isinstance(table, dict) or len(table) > MAX_TABLE_ENTRIES:
            return None
        for count in table.values():
            if number(count, lo=0.0) is None:
                return None
        out[name] = table
    return out


async def read_fleet(
    hub: HubView, namespace: str | None = None, *, stats: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Every published snapshot of ``namespace`` (SCAN + MGET per 500 keys), busiest first.

    Malformed snapshots are skipped (see :func:`parse_snapshot`); ``stats``, if given, gets
    ``snapshots`` (kept), ``malformed`` (skipped) and ``left_out`` (keys beyond
    :data:`MAX_SNAPSHOTS`) added to it.
    """
    counts = {"snapshots": 0, "malformed": 0, "left_out": 0}
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
    if len(keys) > MAX_SNAPSHOTS:
        counts["left_out"] = len(keys) - MAX_SNAPSHOTS
        del keys[MAX_SNAPSHOTS:]
    out = []
    for start in range(0, len(keys), 500):
        for raw in await hub.gateway.call(READER, "MGET", *keys[start : start + 500]):
            if raw is None:
                continue  # expired between SCAN and MGET
            snap = parse_snapshot(raw)
            if snap is None:
                counts["malformed"] += 1
                _warnings.warn("snapshot", "skipping a malformed fleet snapshot: %s", shown(raw))
                continue
            out.append(snap)
    counts["snapshots"] = len(out)
    if stats is not None:
        for name, n in counts.items():
            stats[name] = stats.get(name, 0) + n
    return sorted(out, key=lambda s: -float(s["billed_per_day"] or 0.0))
