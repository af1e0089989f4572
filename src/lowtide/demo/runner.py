"""Runs the demo: one trace, three strategies, each as N real processes, measured by the server.

For each strategy the runner spawns the machines (``python -m lowtide.demo.worker``), reads the
server's ``INFO commandstats`` once a second (the series for the chart) and at the two edges of
the measured window, then hands the machines' logs to :mod:`lowtide.demo.analysis`. Each
strategy uses its own key namespace, so nothing one left behind helps another; on a server of
your own (``--url``) the demo's keys are deleted afterwards and the server must otherwise be quiet
(every client's commands land in INFO commandstats).
"""

from __future__ import annotations

import asyncio
import json
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
from lowtide.demo.analysis import StrategyResult, analyse, lower_bound_per_day
from lowtide.demo.strategies import STRATEGIES
from lowtide.demo.trace import DemoConfig, Trace, generate
from lowtide.hub import Lowtide

__all__ = ["DemoResult", "run_demo"]

_ADMIN = Attribution("demo", "-", None)
Progress = Callable[[str, float], None]


@dataclass(slots=True)
class DemoResult:
    """Everything ``lowtide demo`` prints and writes."""

    config: DemoConfig
    strategies: dict[str, StrategyResult]
    lower_bound_per_day: float
    naive_gets_per_day_model: float
    events: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{"strategies": {...}, "lower_bound_per_day": n, ...}``."""
        return {
            "strategies": {k: v.to_dict() for k, v in self.strategies.items()},
            "lower_bound_per_day": self.lower_bound_per_day,
            "naive_gets_per_day_model": self.naive_gets_per_day_model,
            "events": self.events,
            "config": {
                "seconds": self.config.seconds,
                "warmup": self.config.warmup,
                "machines": self.config.machines,
                "scale": self.config.scale,
                "seed": self.config.seed,
            },
            "notes": self.notes,
        }


async def _commandstats(admin: Lowtide) -> dict[str, int]:
    return await admin.gateway.commandstats(_ADMIN)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    out.pop("info", None)  # the runner's own readings
    return out


async def _run_strategy(
    name: str,
    trace: Trace,
    trace_path: Path,
    url: str,
    admin: Lowtide,
    workdir: Path,
    run_id: str,
    progress: Progress,
    offset: float,
) -> tuple[StrategyResult, list[str]]:
    cfg = trace.config
    namespace = f"ltdemo-{run_id}-{name}"
    go = workdir / f"{name}.go"
    procs = []
    outs = []
    for m in range(cfg.machines):
        out = workdir / f"{name}-{m}.json"
        outs.append(out)
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220 (spawning returns at once; we poll, never wait)
                [
                    sys.executable,
                    "-m",
                    "lowtide.demo.worker",
                    str(trace_path),
                    name,
                    str(m),
                    url,
                    namespace,
                    str(go),
                    str(out),
                ],
                stderr=subprocess.PIPE,
            )
        )
    # every machine sets up; then all replay the warm-up history at full speed; then measure
    progress(name, 0.0)
    await _wait_for(procs, [o.with_suffix(".setup") for o in outs], name)
    _publish(go.with_suffix(".warm"), "warm")
    await _wait_for(procs, [o.with_suffix(".ready") for o in outs], name)
    start = time.time() + 0.5
    _publish(go, f"{start:.6f}")
    series: list[tuple[float, float, float]] = []
    end = start + cfg.seconds
    await asyncio.sleep(max(0.0, start - time.time()))
    baseline = last = await _commandstats(admin)
    last_t = time.time()
    while time.time() < end:
        await asyncio.sleep(min(1.0, max(0.0, end - time.time())))
        now = time.time()
        stats = await _commandstats(admin)
        d = _delta(last, stats)
        dt = max(now - last_t, 1e-6)
        series.append((offset + now - start, sum(d.values()) / dt * 60, d.get("get", 0) / dt * 60))
        last, last_t = stats, now
        progress(name, min(1.0, (now - start) / cfg.seconds))
    final = await _commandstats(admin)
    commands = _delta(baseline, final)
    machines = []
    notes: list[str] = []
    for p, out in zip(procs, outs, strict=True):
        _, err = p.communicate(timeout=60)
        if p.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"demo machine for {name} failed (exit {p.returncode}): "
                f"{err.decode(errors='replace')[-2000:]}"
            )
        machines.append(json.loads(out.read_text()))
    errors = sum(sum(m["errors"].values()) for m in machines)
    if errors:
        notes.append(f"{name}: {errors} operations raised (counted in errors)")
    await _cleanup(admin, namespace)
    return analyse(name, trace, machines, commands, series), notes


def _publish(path: Path, text: str) -> None:
    """Write ``path`` atomically: a worker polling for it never reads it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _wait_for(procs: list[subprocess.Popen[bytes]], files: list[Path], name: str) -> None:
    deadline = time.time() + 300
    while not all(f.exists() for f in files):
        for p in procs:
            if p.poll() is not None:
                _, err = p.communicate()
                raise RuntimeError(
                    f"demo machine for {name} failed (exit {p.returncode}): "
                    f"{err.decode(errors='replace')[-2000:]}"
                )
        if time.time() > deadline:
            raise RuntimeError(f"demo machines for {name} did not get ready in 300 s")
        await asyncio.sleep(0.05)


async def _cleanup(admin: Lowtide, namespace: str) -> None:
    for key in await admin.gateway.scan(_ADMIN, f"{namespace}*"):
        await admin.gateway.call(_ADMIN, "UNLINK", key)  # one key: fine on a cluster too


async def run_demo(
    config: DemoConfig,
    url: str,
    *,
    progress: Progress | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
) -> DemoResult:
    """Replay the trace with each strategy against ``url`` and measure it."""
    trace = generate(config)
    run_id = uuid.uuid4().hex[:8]
    report: Progress = progress or (lambda name, fraction: None)
    results: dict[str, StrategyResult] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lowtide-demo-") as tmp:
        workdir = Path(tmp)
        trace_path = workdir / "trace.json"
        trace.save(trace_path)
        async with Lowtide(url, instance="demo-runner") as admin:
            if not admin.distributed:
                raise ConnectionError(f"cannot reach {admin.settings.redacted_url}")
            offset = 0.0
            for name in strategies:
                result, more = await _run_strategy(
                    name, trace, trace_path, url, admin, workdir, run_id, report, offset
                )
                results[name] = result
                notes += more
                offset += config.seconds
    naive = results.get("naive")
    if naive is not None and naive.billed_per_day > 0:
        for r in results.values():
            r.reduction_vs_naive = 1 - r.billed_per_day / naive.billed_per_day
    return DemoResult(
        config=config,
        strategies=results,
        lower_bound_per_day=lower_bound_per_day(trace),
        naive_gets_per_day_model=config.naive_gets_per_min * 1440,
        events=len(trace.events),
        notes=notes,
    )
