"""``lowtide selftest``: lowtide's ledger against the server's ``INFO commandstats``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lowtide import ConfigError
from lowtide.cli.app import app, console, embedded_server, fail, say, write_json
from lowtide.cli.output import cell
from lowtide.cli.reconcile import SelftestResult, run_selftest

__all__ = ["selftest"]


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
    with embedded_server(url) as target:
        try:
            result = asyncio.run(run_selftest(target))
        except (ConnectionError, ConfigError) as exc:
            fail(exc)
    if json_path:
        write_json(json_path, result.to_dict())
    _render(result)
    if json_path:
        say(f"wrote {json_path}", "dim")
    if not result.ok:
        raise typer.Exit(1)
