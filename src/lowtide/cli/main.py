"""The ``lowtide`` command line (``pip install lowtide[cli]``).

The app and what commands share live in :mod:`lowtide.cli.app`; each command is a module of its
own, imported here so that it registers on the app: ``selftest``, ``doctor``, ``top``,
``suspend``/``resume`` (:mod:`~lowtide.cli.switch`), ``server``, ``version``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lowtide import ConfigError
from lowtide.cli import doctor, selftest, server, switch, top, version
from lowtide.cli.app import app, configure_logging, console
from lowtide.cli.app import embedded_server as _server
from lowtide.cli.app import say as _say
from lowtide.cli.app import write_json as _write_json
from lowtide.demo import DemoConfig, DemoResult, StrategyResult, run_demo

__all__ = ["app", "main"]
#: the command modules (imported for their registration on ``app``)
COMMANDS = (selftest, doctor, top, switch, server, version)


def _render_demo(result: DemoResult) -> None:
    names = list(result.strategies)
    table = Table(title="Measured results (the incident report's expected results, measured)")
    table.add_column("")
    for n in names:
        table.add_column(n, justify="right")
    rows: list[tuple[str, Callable[[StrategyResult], str]]] = [
        ("GETs/day (projected)", lambda r: f"{r.gets_per_day:,.0f}"),
        ("billed commands/day", lambda r: f"{r.billed_per_day:,.0f}"),
        ("$/month (Upstash PAYG)", lambda r: f"${r.usd_per_month:,.2f}"),
        (
            "reduction vs naive",
            lambda r: "-" if r.reduction_vs_naive is None else f"{r.reduction_vs_naive:.1%}",
        ),
        ("cache hit ratio", lambda r: f"{r.hit_ratio:.1%}"),
        ("reads served in process", lambda r: f"{r.local_hit_ratio:.1%}"),
        ("stale reads", lambda r: f"{r.stale_reads} of {r.reads}"),
        ("stale beyond bound", lambda r: str(r.stale_beyond_bound)),
        ("p99 / worst staleness", lambda r: f"{r.p99_staleness_s:.3f}s / {r.max_staleness_s:.3f}s"),
        ("rate-limit overshoot", lambda r: f"{r.overshoot} (of {r.admitted} admitted)"),
    ]
    for label, fmt in rows:
        table.add_row(label, *(fmt(result.strategies[n]) for n in names))
    console.print(table)
    console.print(
        f"lower bound for this trace (any correct protocol): "
        f"{result.lower_bound_per_day:,.0f} commands/day; the incident report's model: "
        f"{result.naive_gets_per_day_model:,.0f} GETs/day"
    )
    lt = result.strategies.get("lowtide")
    if lt is not None and lt.attribution:
        _say(
            "lowtide's own ledger for the window: "
            + ", ".join(f"{k}={v}" for k, v in list(lt.attribution.items())[:8])
        )
    for note in result.notes:
        _say(note, "yellow")


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(help="a quiet Redis/Valkey server; default: start an embedded Valkey"),
    ] = None,
    seconds: Annotated[float, typer.Option(help="measured seconds per strategy")] = 15.0,
    machines: Annotated[int, typer.Option(help="machines (real processes) per strategy")] = 4,
    scale: Annotated[float, typer.Option(help="multiply the incident's traffic rates")] = 1.0,
    warmup: Annotated[
        float, typer.Option(help="seconds of trace history replayed fast before measuring")
    ] = 600.0,
    seed: Annotated[int, typer.Option(help="seed of the trace")] = 7,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the results as JSON here")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="write a PNG of commands per minute here")
    ] = None,
) -> None:
    """Replay the incident (the naive code, its TTL fix, lowtide) on a real server; measure."""
    if seconds <= 0 or machines < 1 or scale <= 0 or warmup < 0:
        raise typer.BadParameter("seconds and scale must be > 0, machines >= 1, warmup >= 0")
    config = DemoConfig(seconds=seconds, machines=machines, scale=scale, warmup=warmup, seed=seed)
    console.print(
        f"[bold]lowtide demo[/bold]: {machines} machines x 3 strategies, {seconds:g} s measured "
        f"each after {warmup:g} s of history replayed fast; the incident's workload at x{scale:g} "
        f"(~{config.naive_gets_per_min:,.0f} naive GETs/min)"
    )
    with (
        _server(url) as target,
        Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as bar,
    ):
        tasks = {n: bar.add_task(f"{n:>9}", total=1.0) for n in ("naive", "ttl-fix", "lowtide")}

        def report(name: str, fraction: float) -> None:
            bar.update(tasks[name], completed=fraction)

        try:
            result = asyncio.run(run_demo(config, target, progress=report))
        except (ConnectionError, ConfigError, RuntimeError) as exc:
            _say(exc, "red")
            raise typer.Exit(2) from None
    if json_path:
        _write_json(json_path, result.to_dict())
    _render_demo(result)
    if json_path:
        _say(f"wrote {json_path}", "dim")
    if chart:
        try:
            from lowtide.demo.chart import write_chart

            _say(f"wrote {write_chart(result, chart)}", "dim")
        except ImportError:
            console.print("[yellow]--chart needs matplotlib: pip install 'lowtide[cli]'[/yellow]")


def main() -> None:
    """Entry point of the ``lowtide`` script."""
    configure_logging()
    app()


if __name__ == "__main__":
    main()
