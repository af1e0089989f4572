"""Runs the demo: one trace, each run (naive, ttl-fix, lowtide per invalidation mode) as N real
processes, measured by the server.

For each run the runner spawns the machines (``python -m lowtide.demo.worker``), tells them when
trace time 0 begins, reads the server's ``INFO commandstats`` twice a second (the series for the
chart, warm-up included) and at the two edges of the measured window, then hands the machines'
logs to :mod:`lowtide.demo.analysis` and the trace to :mod:`lowtide.demo.bound`. Each run uses
its own key namespace, so nothing one left behind helps another; on a server of your own
(``--url``) the demo's keys are deleted afterwards and the server must otherwise be quiet (every
client's commands land in INFO commandstats).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lowtide.context import Attribution
from lowtide.demo.analysis import UPSTASH, StrategyResult, analyse
from lowtide.demo.bound import LowerBound, lower_bound
from lowtide.demo.trace import DemoConfig, Trace, generate
from lowtide.hub import Lowtide

__all__ = ["DemoResult", "Progress", "ProgressEvent", "run_demo"]

_ADMIN = Attribution("demo", "-", None)
#: seconds between two readings of the server's counters (wall time)
TICK = 0.5
#: the machines start replaying this long after the runner says go (wall seconds)
LEAD = 0.5
#: longest the machines may take to finish after the measured window (wall seconds)
EXIT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Where one run is: ``phase`` is ``setup``, ``warm-up``, ``measuring`` or ``done``;
    ``done`` and ``total`` are trace seconds of that phase (``result`` once done)."""

    run: str
    phase: str
    done: float = 0.0
    total: float = 0.0
    result: StrategyResult | None = None


Progress = Callable[[ProgressEvent], None]


@dataclass(slots=True)
class DemoResult:
    """Everything ``lowtide demo`` prints and writes."""

    config: DemoConfig
    strategies: dict[str, StrategyResult]
    #: lower bound of each lowtide run's invalidation mode
    bounds: dict[str, LowerBound]
    naive_gets_per_day_model: float
    events: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape (see docs/demo.md)."""
        cfg = self.config
        return {
            "strategies": {k: v.to_dict() for k, v in self.strategies.items()},
            "lower_bounds": {k: v.to_dict() for k, v in self.bounds.items()},
            "naive_gets_per_day_model": self.naive_gets_per_day_model,
            "events": self.events,
            "config": {
                "seconds": cfg.seconds,
                "warmup": cfg.warmup,
                "speedup": cfg.time_scale,
                "machines": cfg.machines,
                "scale": cfg.scale,
                "seed": cfg.seed,
                "invalidation": list(cfg.invalidation),
            },
            "billing": {
                "profile": UPSTASH.name,
                "usd_per_100k": UPSTASH.usd_per_100k,
                "free": sorted(UPSTASH.free),
            },
            "notes": self.notes,
        }


async def _commandstats(admin: Lowtide) -> dict[str, int]:
    return await admin.gateway.commandstats(_ADMIN)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    out.pop("info", None)  # the runner's own readings
    return out


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # spawning returns at once; the runner polls the processes, never waits on them
    return subprocess.Popen(
        [sys.executable, "-m", "lowtide.demo.worker", *args], stderr=subprocess.PIPE
    )


@dataclass(slots=True)
class _Run:
    """One run's processes and files."""

    name: str
    trace: Trace
    workdir: Path
    namespace: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    outs: list[Path] = field(default_factory=list)

    @property
    def go(self) -> Path:
        return self.workdir / f"{self.name.replace('/', '-')}.go"

    def start(self, trace_path: Path, url: str) -> None:
        for m in range(self.trace.config.machines):
            out = self.workdir / f"{self.name.replace('/', '-')}-{m}.json"
            self.outs.append(out)
            args = [str(trace_path), self.name, str(m), url, self.namespace, str(self.go)]
            self.procs.append(_spawn([*args, str(out)]))

    def failed(self, p: subprocess.Popen[bytes]) -> RuntimeError:
        _, err = p.communicate()
        return RuntimeError(
            f"demo machine for {self.name} failed (exit {p.returncode}): "
            f"{err.decode(errors='replace')[-2000:]}"
        )

    async def wait_for_setup(self) -> None:
        files = [o.with_suffix(".setup") for o in self.outs]
        deadline = time.time() + 120
        while not all(f.exists() for f in files):
            for p in self.procs:
                if p.poll() is not None:
                    raise self.failed(p)
            if time.time() > deadline:
                raise RuntimeError(f"demo machines for {self.name} did not set up in 120 s")
            await asyncio.sleep(0.05)

    async def results(self) -> list[dict[str, Any]]:
        deadline = time.time() + EXIT_TIMEOUT
        while any(p.poll() is None for p in self.procs):  # polled: the event loop keeps going
            if time.time() > deadline:
                raise RuntimeError(
                    f"demo machines for {self.name} did not finish {EXIT_TIMEOUT:g} s after "
                    "the measured window"
                )
            await asyncio.sleep(0.05)
        machines = []
        for p, out in zip(self.procs, self.outs, strict=True):
            _, err = p.communicate()
            if p.returncode != 0 or not out.exists():
                raise RuntimeError(
                    f"demo machine for {self.name} failed (exit {p.returncode}): "
                    f"{err.decode(errors='replace')[-2000:]}"
                )
            machines.append(json.loads(out.read_text()))
        return machines


def _window_of(cfg: DemoConfig, start: float) -> Callable[[float], int]:
    """The limiter window (as the machines' wall clocks align it) of each trace time, for a run
    whose trace time 0 began at wall time ``start``."""
    per, speed = cfg.per, cfg.time_scale
    phase = math.fmod(start * speed, per)
    return lambda t: math.floor((t + phase) / per)


class _Series:
    """Readings of the server's counters: the chart's series and the measured window."""

    def __init__(self, cfg: DemoConfig, start: float) -> None:
        self.cfg = cfg
        self.start = start
        self.points: list[tuple[float, float, float]] = []
        self._last: dict[str, int] | None = None
        self._last_t = start

    def trace_time(self, wall: float) -> float:
        return (wall - self.start) * self.cfg.time_scale

    def add(self, stats: dict[str, int], wall: float) -> None:
        """Add a reading; one less than half a tick after the last is merged into the next."""
        if self._last is not None and wall - self._last_t < TICK / 2:
            return
        if self._last is not None:
            d = _delta(self._last, stats)
            minutes = max(self.trace_time(wall) - self.trace_time(self._last_t), 1e-6) / 60
            self.points.append(
                (
                    round(self.trace_time(wall), 3),
                    UPSTASH.billed(d) / minutes,
                    d.get("get", 0) / minutes,
                )
            )
        self._last, self._last_t = stats, wall


async def _measure(
    run: _Run, admin: Lowtide, report: Progress
) -> tuple[StrategyResult, LowerBound | None]:
    cfg = run.trace.config
    speed = cfg.time_scale
    start = time.time() + LEAD
    _publish(run.go, f"{start:.6f}")
    series = _Series(cfg, start)
    measure_from = start + cfg.warmup / speed
    measure_to = start + cfg.total_seconds / speed
    # readings on a grid of TICK from the start, plus the two edges of the measured window
    ticks = {start + n * TICK for n in range(int((measure_to - start) / TICK) + 1)}
    ticks = {t for t in ticks if t < measure_to} | {measure_from, measure_to}
    baseline: tuple[dict[str, int], float] | None = None
    final: tuple[dict[str, int], float] | None = None
    for wake in sorted(ticks):
        await asyncio.sleep(max(0.0, wake - time.time()))
        stats, now = await _commandstats(admin), time.time()
        series.add(stats, now)
        if wake == measure_from:
            baseline = (stats, now)
        if wake == measure_to:
            final = (stats, now)
        t = series.trace_time(now)
        if t < cfg.warmup:
            report(ProgressEvent(run.name, "warm-up", t, cfg.warmup))
        else:
            done = min(t - cfg.warmup, cfg.seconds)
            report(ProgressEvent(run.name, "measuring", done, cfg.seconds))
    if baseline is None or final is None:  # pragma: no cover - both edges are in ticks
        raise RuntimeError("the measured window was not read")
    (before, began), (after, end) = baseline, final
    machines = await run.results()
    bound = None
    mode = run.name.partition("/")[2]
    if mode:
        bound = lower_bound(run.trace.events, cfg, mode, _window_of(cfg, start))
    result = analyse(
        run.name,
        run.trace,
        machines,
        _delta(before, after),
        series.points,
        (end - began) * speed,
        bound,
    )
    return result, bound


def _publish(path: Path, text: str) -> None:
    """Write ``path`` atomically: a worker polling for it never reads it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _cleanup(admin: Lowtide, namespace: str) -> None:
    for key in await admin.gateway.scan(_ADMIN, f"{namespace}*"):
        await admin.gateway.call(_ADMIN, "UNLINK", key)  # one key: fine on a cluster too


def _notes(result: StrategyResult, cfg: DemoConfig) -> list[str]:
    notes = []
    errors = sum(result.errors.values())
    if errors:
        notes.append(f"{result.name}: {errors} operations raised (counted in errors)")
    if result.bound_ratio is not None and result.bound_ratio < 1:
        notes.append(
            f"{result.name} spent less than its lower bound ({result.bound_ratio:.2f}x): the "
            "bound's model does not hold for this run; please report it"
        )
    resubscribed = result.commands.get("subscribe", 0)
    if result.invalidation is not None and resubscribed:
        notes.append(
            f"{result.name}: invalidation listeners subscribed {resubscribed} time(s) during the "
            "measured window (a listener lost and re-established flushes its process memory; "
            "on a busy machine, a stall longer than two keepalive periods does that)"
        )
    # a machine that starts events late stretches trace time: say so when it is a visible part
    # of a limiter window (the shortest period the strategies keep)
    if result.lag_p99_ms / 1000 > 0.1 * cfg.wall(cfg.per):
        notes.append(
            f"{result.name}: machines started 1 % of events more than {result.lag_p99_ms:.0f} ms "
            f"late (a limiter window lasts {cfg.wall(cfg.per) * 1000:.0f} ms here); this machine "
            "is too busy for this speedup: use a smaller --speedup"
        )
    return notes


async def run_demo(
    config: DemoConfig,
    url: str,
    *,
    progress: Progress | None = None,
    runs: tuple[str, ...] | None = None,
) -> DemoResult:
    """Replay the trace in each run (default: ``config.runs``) against ``url`` and measure it."""
    trace = generate(config)
    run_id = uuid.uuid4().hex[:8]
    report: Progress = progress or (lambda event: None)
    results: dict[str, StrategyResult] = {}
    bounds: dict[str, LowerBound] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lowtide-demo-") as tmp:
        workdir = Path(tmp)
        trace_path = workdir / "trace.json"
        trace.save(trace_path)
        async with Lowtide(url, instance="demo-runner") as admin:
            if not admin.distributed:
                raise ConnectionError(f"cannot reach {admin.settings.redacted_url}")
            for name in runs or config.runs:
                namespace = f"ltdemo-{run_id}-{name.replace('/', '-')}"
                run = _Run(name, trace, workdir, namespace)
                report(ProgressEvent(name, "setup"))
                run.start(trace_path, url)
                try:
                    await run.wait_for_setup()
                    result, bound = await _measure(run, admin, report)
                finally:
                    for p in run.procs:
                        if p.poll() is None:
                            p.kill()
                    await _cleanup(admin, namespace)
                results[name] = result
                if bound is not None:
                    bounds[bound.mode] = bound
                notes += _notes(result, config)
                report(ProgressEvent(name, "done", result=result))
    naive = results.get("naive")
    if naive is not None and naive.billed_per_day > 0:
        for r in results.values():
            r.reduction_vs_naive = 1 - r.billed_per_day / naive.billed_per_day
    return DemoResult(
        config=config,
        strategies=results,
        bounds=bounds,
        naive_gets_per_day_model=config.naive_gets_per_min * 1440,
        events=len(trace.events),
        notes=notes,
    )
