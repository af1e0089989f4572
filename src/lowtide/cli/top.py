"""``lowtide top``: the fleet's published ledgers (see :mod:`lowtide.fleetview`), live or once.

Snapshots are read with :func:`~lowtide.fleetview.read_fleet`, which checks each one and skips
(and counts) the malformed; instance names, modes, families and tenant ids print verbatim
(never markup or emoji codes). Each hub's row shows the snapshot's age: hubs publish once a
minute, so an older snapshot is from a hub that stopped, lost Redis or was suspended (a
suspended hub sends nothing, so its last snapshot still says ``distributed``); the fleet-wide
switch itself is read (1 GET) and shown above the tables. Dollars are shown only for hubs whose
provider has prices (``LOWTIDE_PROVIDER=upstash``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lowtide import Lowtide
from lowtide.cli.app import (
    NamespaceOption,
    UrlOption,
    app,
    console,
    fail,
    settings_with_url,
    unreachable,
    write_json,
)
from lowtide.cli.output import cell
from lowtide.control import parse_switch, switch_key
from lowtide.errors import LowtideError, RedisCommandError
from lowtide.fleetview import READER, TTL_MS, read_fleet
from lowtide.ledger import MIN_PROJECTION_S, profile_for_provider

__all__ = ["STALE_AFTER", "FleetView", "fleet_tables", "read_view", "top"]

#: a snapshot older than this is stale (hubs publish every 60 s)
STALE_AFTER = 90.0
_HINT = (
    "no hub publishes a snapshot in namespace {ns!r}: start the hubs with "
    "LOWTIDE_FLEET_VIEW=true (or Lowtide(fleet_view=True)); each publishes one snapshot a "
    "minute (1 SET), kept {ttl:.0f} minutes"
)


@dataclass
class FleetView:
    """What ``top`` read: checked snapshots (busiest first), how many were skipped, and the
    fleet-wide switch (None when off)."""

    namespace: str
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    switch: dict[str, Any] | None = None
    read_at: float = 0.0


async def read_view(hub: Lowtide, namespace: str) -> FleetView:
    """The fleet's snapshots and switch (SCAN + MGET per 500 snapshots, 1 GET)."""
    stats: dict[str, int] = {}
    snaps = await read_fleet(hub, namespace, stats=stats)
    try:
        raw: Any = await hub.gateway.call(READER, "GET", switch_key(namespace))
    except RedisCommandError:  # e.g. WRONGTYPE: not a well-formed switch, read as off
        raw = None
    skipped = stats.get("malformed", 0) + stats.get("left_out", 0)
    return FleetView(namespace, snaps, skipped, parse_switch(raw), time.time())


def _priced(provider: object) -> bool:
    return profile_for_provider(str(provider)).usd_per_100k > 0


def _age(view: FleetView, at: float) -> Text:
    if at <= 0:
        return Text("?")
    age = max(view.read_at - at, 0.0)
    shown = f"{age:.0f}s" if age < 120 else f"{age / 60:.0f}m"
    return Text(f"{shown} stale", "yellow") if age > STALE_AFTER else Text(shown)


def _switch_line(view: FleetView) -> Text:
    switch = view.switch or {}
    at = switch.get("at")
    since = ""
    if isinstance(at, float | int) and at > 0:
        since = f" for {max(view.read_at - at, 0.0):,.0f}s"
    return Text.assemble(
        ("fleet SUSPENDED", "bold red"),
        f"{since} by lowtide suspend (",
        cell(switch.get("reason", "")),
        "): hubs send no commands and publish no snapshots until lowtide resume",
    )


def _per_day(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _totals(snaps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per-day rates by component, family and tenant, summed over the fleet's hubs that
    project one; a part seen only on hubs counting for under a minute is None (no rate yet)."""
    totals: dict[str, dict[str, float | None]] = {"component": {}, "family": {}, "tenant": {}}
    for s in snaps:
        if s["per_day"] is None:  # counting for under a minute: no projection yet
            for dim, data in totals.items():
                for k in s[f"by_{dim}"]:
                    data.setdefault(k, None)
            continue
        elapsed = max(float(s["elapsed_s"]), 1.0)
        scale = float(s["per_day"]) / max(float(s["commands"]), 1.0)
        for dim, data in totals.items():
            for k, n in s[f"by_{dim}"].items():
                # each part's per-day rate, in proportion to the hub's projection
                rate = n * scale if scale else n / elapsed * 86_400
                data[k] = (data.get(k) or 0.0) + rate
    return totals


def fleet_tables(view: FleetView) -> Group:
    """``lowtide top``'s screen for ``view`` (see module docs)."""
    parts: list[Any] = []
    if view.switch is not None:
        parts.append(_switch_line(view))
    snaps = view.snapshots
    if not snaps:  # a hint, not empty tables
        parts.append(Text(_HINT.format(ns=view.namespace, ttl=TTL_MS / 60_000), "yellow"))
        if view.skipped:
            parts.append(Text(f"{view.skipped} malformed snapshot(s) skipped", "yellow"))
        return Group(*parts)
    priced = [_priced(s["provider"]) for s in snaps]
    inst = Table(title=f"lowtide fleet: {len(snaps)} hub(s) publishing")
    columns = ["instance", "mode", "age", "commands/day", "billed/day"]
    columns += ["$/month"] if any(priced) else []
    for col in [*columns, "saved"]:
        inst.add_column(col, justify="left" if col in ("instance", "mode") else "right")
    for s, has_price in zip(snaps, priced, strict=True):
        row: list[Any] = [
            cell(s["instance"]),
            cell(s["mode"]),
            _age(view, float(s["at"])),
            _per_day(s["per_day"]),
            _per_day(s["billed_per_day"]),
        ]
        if any(priced):
            usd = s["usd_per_month"]
            row.append(f"${usd:,.2f}" if has_price and usd is not None else "-")
        inst.add_row(*row, f"{sum(s['saved'].values()):,.0f}")
    parts.append(inst)
    for dim, data in _totals(snaps).items():
        t = Table(title=f"by {dim} (projected commands/day, fleet)")
        t.add_column(dim)
        t.add_column("per day", justify="right")
        for k, v in sorted(data.items(), key=lambda kv: (kv[1] is None, -(kv[1] or 0.0)))[:10]:
            t.add_row(cell(k), _per_day(v))
        parts.append(t)
    if any(priced):
        usd = sum(s["usd_per_month"] or 0.0 for s, p in zip(snaps, priced, strict=True) if p)
        unpriced = priced.count(False)
        note = f" ({unpriced} hub(s) without prices: -)" if unpriced else ""
        parts.append(Text(f"fleet: ${usd:,.2f}/month projected{note}"))
    elif snaps:
        parts.append(
            Text(
                "no $ figures: these hubs run with a self-hosted provider (redis, valkey...), "
                "where commands are counted, not priced; hubs with LOWTIDE_PROVIDER=upstash "
                "publish Upstash prices",
                "dim",
            )
        )
    young = sum(s["per_day"] is None for s in snaps)
    if young:
        parts.append(
            Text(
                f"{young} hub(s) counting for under {MIN_PROJECTION_S:.0f}s: no per-day figures "
                "yet (-); their commands are not in the projections above",
                "dim",
            )
        )
    if any(float(s["at"]) > 0 and view.read_at - float(s["at"]) > STALE_AFTER for s in snaps):
        parts.append(
            Text(
                f"stale: no snapshot for over {STALE_AFTER:.0f}s (hubs publish every 60 s): the "
                "hub stopped, lost Redis or is suspended; its row is its last snapshot",
                "yellow",
            )
        )
    if view.skipped:
        parts.append(
            Text(f"{view.skipped} malformed snapshot(s) skipped (not shown above)", "yellow")
        )
    return Group(*parts)


@app.command()
def top(
    ctx: typer.Context,
    url: UrlOption = None,
    namespace: NamespaceOption = "lt",
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 5.0,
    once: Annotated[bool, typer.Option(help="print once and exit")] = False,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="write the well-formed snapshots as JSON here (with --once)"),
    ] = None,
) -> None:
    """Show the fleet's ledgers live (hubs publish with LOWTIDE_FLEET_VIEW=true)."""
    if interval <= 0:
        raise typer.BadParameter("--interval must be > 0")
    if json_path is not None and not once:
        raise typer.BadParameter("--json needs --once")
    # the tool's own hub: never suspended by the switch it shows, no listener, nothing published
    settings = settings_with_url(
        ctx,
        url,
        namespace=namespace,
        instance="lowtide-top",
        suspend=False,
        fleet_switch=False,
        fleet_view=False,
        track_metrics=False,
    )

    async def run() -> None:
        async with Lowtide(settings=settings) as hub:
            if not hub.distributed:
                raise unreachable(hub)
            if once:
                view = await read_view(hub, namespace)
                if json_path:
                    write_json(json_path, view.snapshots)  # before anything can fail
                console.print(fleet_tables(view))
                return
            with Live(console=console, refresh_per_second=1) as live:
                while True:
                    live.update(fleet_tables(await read_view(hub, namespace)))
                    await asyncio.sleep(interval)

    try:
        asyncio.run(run())
    except (ConnectionError, LowtideError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
