"""``lowtide demo``: the command, its progress display and its results table.

Registered on the CLI's app by :func:`add_demo_command`. Progress goes to a live display on a
terminal and, when output is redirected, to plain lines printed as the runs go. The results
table fits 80 columns (each run one column; numbers in compact form).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from lowtide import ConfigError
from lowtide.cli.app import embedded_server, fail
from lowtide.cli.output import cell
from lowtide.demo import DemoConfig, DemoResult, StrategyResult, run_demo
from lowtide.demo.runner import ProgressEvent
from lowtide.demo.trace import ALL_INVALIDATION_RUNS, INVALIDATION_RUNS

__all__ = [
    "CHART_HINT",
    "LiveProgress",
    "PlainProgress",
    "add_demo_command",
    "demo_table",
    "progress_bars",
    "render_demo",
    "run_label",
]

#: what ``--chart`` says when matplotlib is missing: the ``chart`` extra brings it (the ``cli``
#: extra does not: doctor, top and suspend need no plotting stack); ``demo`` is cli + chart +
#: the embedded server
CHART_HINT = (
    "--chart needs matplotlib: pip install 'lowtide[chart]' "
    "(or 'lowtide[demo]': the CLI, the chart and the embedded server)"
)

MODES = {
    "tracking": ("tracking",),
    "keyspace": ("keyspace",),
    "pubsub": ("pubsub",),
    "both": INVALIDATION_RUNS,
    "all": ALL_INVALIDATION_RUNS,
}
_LABELS = {
    "naive": "naive",
    "ttl-fix": "ttl-fix",
    "dropin": "drop-in\nlt.redis()",
    "lowtide/tracking": "lowtide\ntracking",
    "lowtide/keyspace": "lowtide\nkeyspace",
    "lowtide/pubsub": "lowtide\npub/sub",
}
_LONG = {
    "dropin": "naive code on lt.redis()",
    "lowtide/tracking": "lowtide tracking",
    "lowtide/keyspace": "lowtide keyspace",
    "lowtide/pubsub": "lowtide pub/sub",
}


def run_label(run: str, *, long: bool = False) -> str:
    """How a run is named in output (``long``: in sentences)."""
    if long:
        return _LONG.get(run, run)
    return _LABELS.get(run, run)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _compact(n: float) -> str:
    """``1,234`` below 10,000, then ``12.3K``, ``123K``, ``1.23M``, ``12.3M``, ``123M``."""
    if n < 10_000:
        return f"{n:,.0f}"
    if n < 1_000_000:
        return f"{n / 1000:,.1f}K" if n < 100_000 else f"{n / 1000:,.0f}K"
    digits = 2 if n < 10_000_000 else 1 if n < 100_000_000 else 0
    return f"{n / 1e6:,.{digits}f}M"


def _usd(dollars: float) -> str:
    """``$38.02``; ``$16,980`` from $1,000; ``$1.23M`` from $1M."""
    if dollars < 1000:
        return f"${dollars:,.2f}"
    if dollars < 1_000_000:
        return f"${dollars:,.0f}"
    return f"${dollars / 1e6:,.2f}M"


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal: one line when a run sets
    up, starts its warm-up, starts measuring and finishes, and one per quarter of each phase.
    Each line carries the run's own elapsed time (its clock starts when the run starts)."""

    def __init__(
        self,
        write: Callable[[str], None],
        machines: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._machines = machines
        self._clock = clock
        self._started: dict[str, float] = {}
        self._seen: dict[str, tuple[str, int]] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        now = self._clock()
        began = self._started.setdefault(ev.run, now)
        stamp = f"[{_clock(now - began)}] {run_label(ev.run, long=True)}:"
        if ev.phase == "setup":
            self._write(f"{stamp} setting up {self._machines} machines")
            return
        if ev.phase == "done":
            r = ev.result
            tail = f", {r.billed_per_day:,.0f} billed commands/day" if r is not None else ""
            self._write(f"{stamp} done in {_clock(now - began)}{tail}")
            return
        quarter = int(4 * ev.done / ev.total) if ev.total > 0 else 4
        if self._seen.get(ev.run) == (ev.phase, quarter):
            return
        self._seen[ev.run] = (ev.phase, quarter)
        what = "warm-up (not measured)" if ev.phase == "warm-up" else "measuring"
        self._write(f"{stamp} {what}: {ev.done:,.0f} of {ev.total:,.0f} s of trace")


def progress_bars(console: Console, get_time: Callable[[], float] | None = None) -> RichProgress:
    """The live display's bars: the run, its bar (trace seconds, warm-up then measuring), its
    phase and its own elapsed time (``get_time``: the clock, by default rich's)."""
    return RichProgress(
        TextColumn("{task.description:<34}"),
        BarColumn(bar_width=16),
        TextColumn("{task.fields[phase]:<30}"),
        TimeElapsedColumn(),
        console=console,
        get_time=get_time,
    )


class LiveProgress:
    """Progress on a terminal: one bar per run, filled over the run's warm-up and measured
    window; its timer starts when the run starts and stops when it is done."""

    def __init__(self, bar: RichProgress, runs: tuple[str, ...], cfg: DemoConfig) -> None:
        self._bar = bar
        self._cfg = cfg
        self._tasks: dict[str, TaskID] = {
            r: bar.add_task(
                run_label(r, long=True), total=cfg.total_seconds, start=False, phase="waiting"
            )
            for r in runs
        }

    def __call__(self, ev: ProgressEvent) -> None:
        task = self._tasks.get(ev.run)
        if task is None:
            return
        if ev.phase == "setup":
            self._bar.start_task(task)
            self._bar.update(task, phase="setting up")
        elif ev.phase == "warm-up":
            self._bar.update(
                task, completed=ev.done, phase=f"warm-up (not measured) {ev.done:,.0f} s"
            )
        elif ev.phase == "measuring":
            self._bar.update(
                task,
                completed=self._cfg.warmup + ev.done,
                phase=f"measuring {ev.done:,.0f}/{ev.total:,.0f} s",
            )
        else:
            self._bar.update(task, completed=self._cfg.total_seconds, phase="done")
            self._bar.stop_task(task)


def _signed(reduction: float) -> str:
    return f"{-reduction:+.1%}"


def demo_table(result: DemoResult) -> Table:
    """The results: one column per run, compact numbers (fits 80 columns)."""
    names = list(result.strategies)
    bound_s = f"{result.config.staleness_bound:g} s"
    table = Table(
        title="Measured by the server, per day of trace time",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title_justify="left",
    )
    table.add_column("", no_wrap=True)
    for n in names:
        table.add_column(run_label(n), justify="right", no_wrap=True)

    def dash_unless(value: float | None, fmt: Callable[[float], str]) -> str:
        return "-" if value is None else fmt(value)

    def bound_of(r: StrategyResult) -> str:
        lb = r.lower_bound
        return "-" if lb is None else _compact(float(lb["per_day"]))

    rows: list[tuple[str, Callable[[StrategyResult], str]]] = [
        ("billed commands/day", lambda r: _compact(r.billed_per_day)),
        ("GETs/day", lambda r: _compact(r.gets_per_day)),
        ("$/month (Upstash)", lambda r: _usd(r.usd_per_month)),
        (
            "vs naive",
            lambda r: "-" if r.name == "naive" else dash_unless(r.reduction_vs_naive, _signed),
        ),
        ("lower bound/day", bound_of),
        ("lowtide / bound", lambda r: dash_unless(r.bound_ratio, lambda v: f"{v:.2f}x")),
        ("reads in process", lambda r: f"{r.local_hit_ratio:.1%}"),
        ("reads checked", lambda r: _compact(r.reads)),
        ("  stale", lambda r: _compact(r.stale_reads)),
        (f"  older than {bound_s}", lambda r: _compact(r.stale_beyond_bound)),
        ("worst staleness", lambda r: f"{r.max_staleness_s:.2f} s"),
        ("calls admitted", lambda r: _compact(r.admitted)),
        ("  over the limit", lambda r: _compact(r.overshoot)),
    ]
    for label, fmt in rows:
        table.add_row(label, *(fmt(result.strategies[n]) for n in names))
    return table


def _bound_line(mode: str, r: StrategyResult) -> str:
    lb = r.lower_bound or {}
    parts = [
        f"writes {lb.get('writes', 0):,}",
        f"cache fetches {lb.get('cache_fetches', 0):,}",
        f"discovery {lb.get('discovery', 0):,}",
        f"limiter windows {lb.get('limiter', 0):,}",
    ]
    if mode == "pubsub":
        parts.append(f"notifications {lb.get('notifications', 0):,}")
    return (
        f"lower bound, {run_label(r.name, long=True)}: {float(lb.get('per_day', 0)):,.0f}/day "
        f"({' + '.join(parts)} in {r.seconds:,.0f} s); lowtide spends {r.bound_ratio or 0:.2f}x"
    )


def render_demo(result: DemoResult, console: Console) -> None:
    """Print the table and what it rests on."""
    console.print(demo_table(result))
    for r in result.strategies.values():
        if r.invalidation is not None and r.lower_bound is not None:
            console.print(cell(_bound_line(r.invalidation, r)))
    console.print(
        cell(
            f"the incident report's model: {result.naive_gets_per_day_model:,.0f} GETs/day; "
            "$ at Upstash pay-as-you-go ($0.20 per 100K; PUBLISH and SUBSCRIBE billed like any "
            "command, PING and INFO free; delivered messages, keyspace notifications included, "
            "are not commands: not billed)"
        ),
        style="dim",
    )
    for r in result.strategies.values():
        if r.attribution:
            top = ", ".join(f"{k}={v:,}" for k, v in list(r.attribution.items())[:6])
            console.print(
                cell(f"{run_label(r.name, long=True)}, its own ledger: {top}"), style="dim"
            )
    for note in result.notes:
        console.print(cell(note, "yellow"))


def _header(cfg: DemoConfig, runs: tuple[str, ...]) -> list[str]:
    names = ", ".join(run_label(r, long=True) for r in runs)
    lines = [
        f"lowtide demo: the incident's workload x{cfg.scale:g} (~{cfg.naive_gets_per_min:,.0f} "
        f"naive GETs/min) on {cfg.machines} machines (real processes); runs: {names} "
        "(tracking: CLIENT TRACKING; keyspace: keyspace notifications, lowtide's mode for "
        "Upstash; pub/sub: the backplane, for servers with neither).",
    ]
    k = cfg.time_scale
    wall = _clock(cfg.wall(cfg.total_seconds))
    if k != 1:
        lines.append(
            f"Time compressed {k:g}x, openly: each run replays {cfg.warmup:g} s of trace as "
            f"warm-up (not measured), then measures {cfg.seconds:g} s, in {wall}; event rates "
            f"x{k:g} and every TTL, limiter window, breaker period, flush, heartbeat and "
            f"keepalive period and the {cfg.staleness_bound:g} s staleness bound /{k:g}, for "
            "every strategy (--speedup 1 for real time)."
        )
    else:
        lines.append(
            f"Real time: each run replays {cfg.warmup:g} s of trace as warm-up (not measured), "
            f"then measures {cfg.seconds:g} s ({wall} per run)."
        )
    return lines


#: the trace's defaults (measured and warm-up seconds come from here)
_DEFAULTS = DemoConfig()


def add_demo_command(app: typer.Typer) -> None:
    """Register ``lowtide demo`` on ``app``."""
    app.command("demo")(demo)


def demo(
    url: Annotated[
        str | None,
        typer.Option(help="a quiet Redis/Valkey server; default: start an embedded Valkey"),
    ] = None,
    seconds: Annotated[
        float, typer.Option(help="measured seconds of trace per run (after the warm-up)")
    ] = _DEFAULTS.seconds,
    warmup: Annotated[
        float, typer.Option(help="seconds of trace replayed before measuring (not measured)")
    ] = _DEFAULTS.warmup,
    speedup: Annotated[
        float | None,
        typer.Option(help="time compression (default 20, or 20/scale above scale 1; 1: real time)"),
    ] = None,
    machines: Annotated[int, typer.Option(help="machines (real processes) per run")] = 4,
    scale: Annotated[float, typer.Option(help="multiply the incident's traffic rates")] = 1.0,
    invalidation: Annotated[
        str,
        typer.Option(
            help="lowtide's invalidation mode(s): tracking, keyspace, pubsub, "
            "both (tracking and keyspace) or all"
        ),
    ] = "both",
    dropin: Annotated[
        bool,
        typer.Option(help="also run the naive code with only its client swapped for lt.redis()"),
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the trace")] = 7,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the results as JSON here")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="write a PNG of billed commands per minute here")
    ] = None,
) -> None:
    """Replay the incident on a real server (the naive code, its TTL fix, lowtide with CLIENT
    TRACKING and with keyspace notifications) and measure each from the server's side."""
    if seconds <= 0 or machines < 1 or scale <= 0 or warmup < 0:
        raise typer.BadParameter("seconds and scale must be > 0, machines >= 1, warmup >= 0")
    if speedup is not None and speedup <= 0:
        raise typer.BadParameter("speedup must be > 0")
    if invalidation not in MODES:
        raise typer.BadParameter("invalidation: tracking, keyspace, pubsub, both or all")
    if chart and importlib.util.find_spec("matplotlib") is None:
        # said before the runs (minutes), not after them
        Console(emoji=False, highlight=False, stderr=True).print(cell(CHART_HINT, "yellow"))
        raise typer.Exit(2)
    config = DemoConfig(
        seconds=seconds,
        warmup=warmup,
        speedup=speedup,
        machines=machines,
        scale=scale,
        seed=seed,
        invalidation=MODES[invalidation],
        dropin=dropin,
    )
    console = Console(emoji=False, highlight=False)
    for line in _header(config, config.runs):
        console.print(cell(line))
    say: Callable[[str], None] = lambda text: console.print(cell(text), style="dim")  # noqa: E731
    with embedded_server(url, say) as target:
        try:
            if console.is_terminal:
                with progress_bars(console) as bar:
                    live = LiveProgress(bar, config.runs, config)
                    result = asyncio.run(run_demo(config, target, progress=live))
            else:
                plain = PlainProgress(
                    lambda line: console.print(cell(line), soft_wrap=True), machines
                )
                result = asyncio.run(run_demo(config, target, progress=plain))
        except (ConnectionError, ConfigError, RuntimeError) as exc:
            fail(exc)
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    render_demo(result, console)
    if json_path:
        say(f"wrote {json_path}")
    if chart:
        try:
            from lowtide.demo.chart import write_chart

            say(f"wrote {write_chart(result, chart)}")
        except ImportError:
            console.print(cell(CHART_HINT, "yellow"))
