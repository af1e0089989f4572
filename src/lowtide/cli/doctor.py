"""``lowtide doctor``: where a server's commands come from, what they cost, what to fix.

The ``--json`` report is written before anything is printed; key families print verbatim.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lowtide import ConfigError, LowtideError
from lowtide.cli.app import (
    URL_HELP,
    URL_VARIABLES,
    app,
    console,
    fail,
    say,
    settings_with_url,
    where_from,
    write_json,
)
from lowtide.cli.output import cell, printable
from lowtide.doctor import Report, diagnose_live, diagnose_log
from lowtide.doctor.analyze import MIN_SECONDS
from lowtide.settings import PROVIDERS

__all__ = ["doctor", "render_report"]


def render_report(report: Report, out: Console | None = None) -> None:
    """Print ``report`` to ``out`` (default: the CLI's console): the totals, warnings, the
    busiest families and the findings."""
    out = console if out is None else out
    cost = (
        Text.assemble(
            f", ${report.usd_per_month:,.2f}/month at ", printable(report.provider), " rates"
        )
        if report.priced
        else Text.assemble(" (", printable(report.provider), ": not priced; --provider upstash)")
    )
    out.print(
        Text.assemble(
            (f"{report.commands:,}", "bold"),
            f" commands in {report.seconds:.1f}s (",
            printable(report.source),
            f"): {report.per_day:,.0f}/day, {report.billed_per_day:,.0f} billed/day",
            cost,
        )
    )
    for warning in report.warnings:
        out.print(cell(warning, "yellow"))
    if report.skipped_lines:
        out.print(cell(f"{report.skipped_lines:,} malformed MONITOR line(s) skipped", "yellow"))
    if not report.families:
        out.print("no commands from other clients during the sample")
        return
    title = "Where the commands come from (key families, ids masked)"
    # as wide as its title, so a narrow table does not fold the title over two lines
    table = Table(title=title, min_width=len(title))
    for col in ("family", "command", "count", "per day"):
        table.add_column(col, justify="right" if col in ("count", "per day") else "left")
    for f in report.families[:20]:
        table.add_row(
            cell(f["family"]), cell(f["command"]), f"{f['count']:,}", f"{f['per_day']:,.0f}"
        )
    out.print(table)
    if report.findings:
        findings = Table(title="Findings")
        findings.add_column("kind")
        findings.add_column("family")
        findings.add_column("detail")
        for finding in report.findings:
            findings.add_row(cell(finding.kind), cell(finding.family), cell(finding.detail))
        out.print(findings)
    else:
        out.print("no findings")


@app.command()
def doctor(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            help=f"server to sample (MONITOR, or INFO where refused): {URL_HELP}",
            envvar=URL_VARIABLES,
        ),
    ] = None,
    monitor_log: Annotated[
        Path | None, typer.Option(help="analyse a saved MONITOR log instead of a live server")
    ] = None,
    seconds: Annotated[
        float, typer.Option(help="how long to sample a live server (shorter: a warning)")
    ] = MIN_SECONDS,
    provider: Annotated[
        str,
        typer.Option(help=f"billing rules: {', '.join(PROVIDERS)}", envvar="LOWTIDE_PROVIDER"),
    ] = "upstash",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the report as JSON here")
    ] = None,
) -> None:
    """Attribute a server's traffic to key families, project its cost, and say what to fix.

    The doctor's own connection sends nothing but MONITOR during the sample, so the report
    holds only what other clients send.
    """
    if provider.strip().lower() not in PROVIDERS:
        fail(
            where_from(
                ctx,
                f"provider: unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}",
                ["provider"],
            )
        )
    provider = provider.strip().lower()
    if seconds <= 0:
        raise typer.BadParameter("--seconds must be > 0")
    try:
        if monitor_log is not None:
            report = diagnose_log(monitor_log, provider=provider)
        else:
            settings = settings_with_url(ctx, url)
            if settings.url is None:  # settings_with_url has said so and exited already
                raise typer.Exit(2)
            report = asyncio.run(
                diagnose_live(settings.url, seconds, provider=provider, settings=settings)
            )
    except (ConnectionError, ConfigError, LowtideError, OSError, ValueError) as exc:
        fail(exc)
    if json_path:
        write_json(json_path, report.to_dict())
    render_report(report)
    if json_path:
        say(f"wrote {json_path}", "dim")
