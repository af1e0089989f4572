"""The ``lowtide`` command line (``pip install lowtide[cli]``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

try:
    import typer
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - only without the cli extra
    sys.stderr.write("the lowtide CLI needs its extra: pip install 'lowtide[cli]'\n")
    raise SystemExit(2) from None

from lowtide import ConfigError, Lowtide, LowtideError, Settings, __version__
from lowtide.cli.demo import add_demo_command
from lowtide.cli.output import cell, parse_snapshot, printable
from lowtide.cli.selftest import SelftestResult, run_selftest
from lowtide.cli.version import add_version_option
from lowtide.context import Attribution
from lowtide.control import write_switch
from lowtide.doctor import Report, diagnose_live, diagnose_log
from lowtide.fleetview import read_fleet
from lowtide.keys import prefix

app = typer.Typer(
    help="lowtide: fewer billed Redis commands, and a ledger of every one sent.",
    no_args_is_help=True,
    add_completion=False,
)
# our own messages use markup; every untrusted value goes through output.cell() / _say() as Text
console = Console(emoji=False)

add_version_option(app, console)
add_demo_command(app)


def _say(message: object, style: str = "") -> None:
    """Print a message that may hold untrusted text (an error, a path) verbatim."""
    console.print(cell(message, style))


def _write_json(path: Path, data: Any) -> None:
    """Write a ``--json`` file: called before anything is printed that could fail."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    """``url`` as given, or an embedded Valkey server started for the command."""
    if url:
        yield url
        return
    try:
        from lowtide.testing import ValkeyServer
    except ImportError as exc:  # pragma: no cover
        raise typer.BadParameter(
            "no --url and no embedded server (pip install lowtide[embedded])"
        ) from exc
    with ValkeyServer() as server:
        _say(f"started embedded Valkey at {server.url}", "dim")
        yield server.url


def _render(result: SelftestResult) -> None:
    table = Table(title="Commands: lowtide's ledger vs the server's INFO commandstats")
    table.add_column("command")
    table.add_column("ledger", justify="right")
    table.add_column("server", justify="right")
    table.add_column("", justify="center")
    for cmd in sorted(set(result.ledger) | set(result.server)):
        a, b = result.ledger.get(cmd, 0), result.server.get(cmd, 0)
        table.add_row(cell(cmd), str(a), str(b), "[green]=[/green]" if a == b else "[red]≠[/red]")
    console.print(table)
    snap = result.snapshot
    comp = Table(title="Attribution by component")
    comp.add_column("component")
    comp.add_column("commands", justify="right")
    for name, n in snap.by_component.items():
        comp.add_row(cell(name), str(n))
    console.print(comp)
    console.print(
        f"{snap.total} commands in {result.seconds:.2f}s; "
        f"{result.upstash.billed} billed units under Upstash's rules "
        f"(free: PING/INFO/...; scripts: 1 + each redis.call)."
    )
    if result.ok:
        console.print("[bold green]reconciled: ledger == server, command by command[/bold green]")
    else:
        console.print(
            "[bold red]not reconciled[/bold red] (other clients on this server add their own "
            "commands; run without --url for an exact check)"
        )


@app.command()
def selftest(
    url: Annotated[
        str | None, typer.Option(help="Redis URL; default: start an embedded Valkey")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the result as JSON here")
    ] = None,
) -> None:
    """Send a mixed workload through lowtide and reconcile its ledger with the server."""
    with _server(url) as target:
        try:
            result = asyncio.run(run_selftest(target))
        except (ConnectionError, ConfigError) as exc:
            _say(exc, "red")
            raise typer.Exit(2) from None
    if json_path:
        _write_json(json_path, result.to_dict())
    _render(result)
    if json_path:
        _say(f"wrote {json_path}", "dim")
    if not result.ok:
        raise typer.Exit(1)


def _settings_with_url(url: str | None) -> Settings:
    """Settings from the environment with ``--url`` winning; exits 2 when there is no URL."""
    try:
        settings = Settings.from_env(url=url) if url else Settings.from_env()
    except ConfigError as exc:
        _say(exc, "red")
        raise typer.Exit(2) from None
    if settings.url is None:
        console.print("[red]no --url and no LOWTIDE_REDIS_URL / REDIS_URL[/red]")
        raise typer.Exit(2)
    return settings


_TOP = Attribution("top", "-", None)
#: bounds of the CLI's own fallback reader (hubs publish one small snapshot each)
_MAX_SNAPSHOTS = 10_000
_MAX_SNAPSHOT_BYTES = 1 << 20
#: what a malformed snapshot can make read_fleet raise (connection errors are not data errors)
_DATA_ERRORS = (ValueError, TypeError, AttributeError, KeyError, RecursionError, OverflowError)


async def _read_raw(hub: Lowtide) -> tuple[list[Any], int]:
    """The fleet's snapshots, each decoded on its own: (decoded, how many could not be)."""
    pattern = prefix(hub.settings.namespace, "fleet") + "snap::*"
    keys: list[Any] = []
    cursor: Any = 0
    while True:
        cursor, batch = await hub.gateway.call(_TOP, "SCAN", cursor, "MATCH", pattern, "COUNT", 500)
        keys.extend(batch)
        if int(cursor) == 0 or len(keys) >= _MAX_SNAPSHOTS:
            break
    decoded: list[Any] = []
    bad = 0
    for raw in await hub.gateway.call(_TOP, "MGET", *keys[:_MAX_SNAPSHOTS]) if keys else []:
        if raw is None:
            continue  # expired between SCAN and MGET
        if not isinstance(raw, bytes | str) or len(raw) > _MAX_SNAPSHOT_BYTES:
            bad += 1
            continue
        try:
            decoded.append(json.loads(raw))
        except (ValueError, RecursionError):
            bad += 1
    return decoded, bad


async def _read_snapshots(hub: Lowtide) -> tuple[list[Any], int]:
    """Snapshots from :func:`read_fleet` (decoded, not yet checked) and how many could not be
    decoded. Where one malformed snapshot makes ``read_fleet`` fail, the CLI reads them itself,
    one by one, so that the bad one alone is skipped and counted."""
    try:
        return list(await read_fleet(hub)), 0
    except (ConnectionError, LowtideError):
        raise
    except _DATA_ERRORS:
        return await _read_raw(hub)


def _fleet_tables(snaps: list[Any], unreadable: int = 0) -> Group:
    """``lowtide top``'s view of published snapshots (decoded JSON, untrusted).

    Every snapshot is checked (:func:`~lowtide.cli.output.parse_snapshot`); malformed ones are
    skipped and counted, with ``unreadable`` (those that could not even be decoded). Instance
    names, modes, families and tenant ids print verbatim (never markup or emoji codes).
    """
    good = [p for p in map(parse_snapshot, snaps) if p is not None]
    good.sort(key=lambda p: -p.billed_per_day)
    skipped = unreadable + len(snaps) - len(good)
    inst = Table(title=f"lowtide fleet: {len(good)} hub(s) publishing")
    for col in ("instance", "mode", "commands/day", "billed/day", "$/month", "saved"):
        inst.add_column(col, justify="left" if col in ("instance", "mode") else "right")
    totals: dict[str, dict[str, float]] = {"component": {}, "family": {}, "tenant": {}}
    for s in good:
        inst.add_row(
            cell(s.instance),
            cell(s.mode),
            f"{s.per_day:,.0f}",
            f"{s.billed_per_day:,.0f}",
            f"${s.usd_per_month:,.2f}",
            f"{sum(s.saved.values()):,.0f}",
        )
        elapsed = max(s.elapsed_s, 1.0)
        scale = s.per_day / max(s.commands, 1.0)
        for dim, data in (
            ("component", s.by_component),
            ("family", s.by_family),
            ("tenant", s.by_tenant),
        ):
            for k, n in data.items():
                # per-day rate of each part, in proportion to the hub's projection
                rate = n * scale if scale else n / elapsed * 86_400
                totals[dim][k] = totals[dim].get(k, 0.0) + rate
    parts: list[Any] = [inst]
    for dim, data in totals.items():
        t = Table(title=f"by {dim} (projected commands/day, fleet)")
        t.add_column(dim)
        t.add_column("per day", justify="right")
        for k, v in sorted(data.items(), key=lambda kv: -kv[1])[:10]:
            t.add_row(cell(k), f"{v:,.0f}")
        parts.append(t)
    fleet_total = sum(s.usd_per_month for s in good)
    parts.append(Text(f"fleet: ${fleet_total:,.2f}/month projected"))
    if skipped:
        parts.append(
            Text(f"{skipped} malformed snapshot(s) skipped (not shown above)", style="yellow")
        )
    return Group(*parts)


@app.command()
def top(
    url: Annotated[
        str | None, typer.Option(help="Redis URL (default: LOWTIDE_REDIS_URL / REDIS_URL)")
    ] = None,
    namespace: Annotated[str, typer.Option(help="the fleet's lowtide namespace")] = "lt",
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 5.0,
    once: Annotated[bool, typer.Option(help="print once and exit")] = False,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="write the well-formed snapshots as JSON here (with --once)"),
    ] = None,
) -> None:
    """Show the fleet's ledgers live (hubs publish with LOWTIDE_FLEET_VIEW=true)."""
    settings = _settings_with_url(url)

    async def run() -> None:
        async with Lowtide(settings.url, namespace=namespace, instance="lowtide-top") as hub:
            if not hub.distributed:
                raise ConnectionError(f"cannot reach {hub.settings.redacted_url}")
            if once:
                snaps, unreadable = await _read_snapshots(hub)
                if json_path:
                    checked = (parse_snapshot(s) for s in snaps)
                    _write_json(json_path, [p.to_dict() for p in checked if p is not None])
                console.print(_fleet_tables(snaps, unreadable))
                return
            with Live(console=console, refresh_per_second=1) as live:
                while True:
                    live.update(_fleet_tables(*await _read_snapshots(hub)))
                    await asyncio.sleep(interval)

    try:
        asyncio.run(run())
    except ConnectionError as exc:
        _say(exc, "red")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _render_doctor(report: Report) -> None:
    console.print(
        Text.assemble(
            (f"{report.commands:,}", "bold"),
            f" commands in {report.seconds:.1f}s (",
            printable(report.source),
            f"): {report.per_day:,.0f}/day, {report.billed_per_day:,.0f} billed/day, "
            f"${report.usd_per_month:,.2f}/month at ",
            printable(report.provider),
            " rates",
        )
    )
    if report.skipped_lines:
        _say(f"{report.skipped_lines:,} malformed MONITOR line(s) skipped", "yellow")
    table = Table(title="Where the commands come from (key families, ids masked)")
    for col in ("family", "command", "count", "per day"):
        table.add_column(col, justify="right" if col in ("count", "per day") else "left")
    for f in report.families[:20]:
        table.add_row(
            cell(f["family"]), cell(f["command"]), f"{f['count']:,}", f"{f['per_day']:,.0f}"
        )
    console.print(table)
    if report.findings:
        findings = Table(title="Findings")
        findings.add_column("kind")
        findings.add_column("family")
        findings.add_column("detail")
        for finding in report.findings:
            findings.add_row(cell(finding.kind), cell(finding.family), cell(finding.detail))
        console.print(findings)
    else:
        console.print("no findings")


@app.command()
def doctor(
    url: Annotated[
        str | None, typer.Option(help="server to sample (default: LOWTIDE_REDIS_URL / REDIS_URL)")
    ] = None,
    monitor_log: Annotated[
        Path | None, typer.Option(help="analyse a saved MONITOR log instead of a live server")
    ] = None,
    seconds: Annotated[float, typer.Option(help="how long to sample a live server")] = 10.0,
    provider: Annotated[str, typer.Option(help="billing rules: upstash or redis")] = "upstash",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the report as JSON here")
    ] = None,
) -> None:
    """Attribute a server's traffic to key families, project its cost, and say what to fix."""
    try:
        if monitor_log is not None:
            report = diagnose_log(monitor_log, provider=provider)
        else:
            settings = Settings.from_env(url=url) if url else Settings.from_env()
            if settings.url is None:
                console.print("[red]no --url, --monitor-log or LOWTIDE_REDIS_URL[/red]")
                raise typer.Exit(2)
            report = asyncio.run(diagnose_live(settings.url, seconds, provider=provider))
    except (ConnectionError, ConfigError, OSError, ValueError) as exc:
        _say(exc, "red")
        raise typer.Exit(2) from None
    if json_path:
        _write_json(json_path, report.to_dict())
    _render_doctor(report)
    if json_path:
        _say(f"wrote {json_path}", "dim")


def _switch(url: str | None, namespace: str, *, suspend: bool, reason: str) -> None:
    settings = _settings_with_url(url)

    async def run() -> None:
        async with Lowtide(
            settings.url, namespace=namespace, instance="lowtide-switch", fleet_switch=False
        ) as hub:
            if not hub.distributed:
                raise ConnectionError(f"cannot reach {hub.settings.redacted_url}")
            await write_switch(hub, suspend=suspend, reason=reason)

    try:
        asyncio.run(run())
    except (ConnectionError, LowtideError) as exc:
        _say(exc, "red")
        raise typer.Exit(2) from None
    word = "suspended" if suspend else "resumed"
    _say(f"fleet {word} (namespace {namespace!r}); every hub switches on the push")


@app.command()
def suspend(
    url: Annotated[str | None, typer.Option(help="Redis URL (default: LOWTIDE_REDIS_URL)")] = None,
    namespace: Annotated[str, typer.Option(help="the fleet's lowtide namespace")] = "lt",
    reason: Annotated[str, typer.Option(help="shown in every hub's health")] = "",
) -> None:
    """Fleet-wide kill switch: every hub stops using Redis (and keeps working locally)."""
    _switch(url, namespace, suspend=True, reason=reason)


@app.command()
def resume(
    url: Annotated[str | None, typer.Option(help="Redis URL (default: LOWTIDE_REDIS_URL)")] = None,
    namespace: Annotated[str, typer.Option(help="the fleet's lowtide namespace")] = "lt",
) -> None:
    """Undo ``lowtide suspend``: every hub goes back to Redis."""
    _switch(url, namespace, suspend=False, reason="")


@app.command()
def version() -> None:
    """Print lowtide's version."""
    console.print(__version__)


def main() -> None:
    """Entry point of the ``lowtide`` script."""
    app()


if __name__ == "__main__":
    main()
