"""One demo "machine": a real process that replays its share of the trace with one strategy.

``python -m lowtide.demo.worker TRACE STRATEGY MACHINE URL NAMESPACE GO OUT``:

1. sets up (connects, pre-warms what the strategy pre-warms), writes ``OUT.setup`` and waits for
   ``GO.warm`` (every machine set up);
2. replays the warm-up part of the trace as fast as it can (to reach steady state: warm caches
   and discovery; outbound calls are skipped, their windows are wall-clock time), then writes
   ``OUT.ready``;
3. waits for the file GO, which holds the wall time at which measuring starts, and replays the
   measured events at their times (each as its own task, like requests on a server);
4. writes what it observed to OUT as JSON: every read (key, version, start), every write (key,
   version, completion), every rate-limit admission, database queries, errors.

Times in the output are trace times (seconds since the trace began).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from lowtide.demo.strategies import Database, Strategy, make_strategy
from lowtide.demo.trace import Event, Trace

__all__ = ["replay"]


async def replay(
    trace: Trace, strategy_name: str, machine: int, url: str, namespace: str, go: Path, out: Path
) -> dict[str, Any]:
    """Run one machine (see module docs) and return its observations."""
    cfg = trace.config
    db = Database(trace)
    strategy: Strategy = make_strategy(strategy_name, url, namespace, db, machine)
    await strategy.setup(machine)
    reads: list[tuple[str, int, float, bool]] = []
    writes: list[tuple[str, int, float]] = []
    admissions: list[tuple[str, str, float]] = []
    errors: dict[str, int] = {}
    measuring = False

    async def handle(ev: Event) -> None:
        try:
            if ev.kind == "read":
                t0 = db.now()
                version, loaded = await strategy.read(ev)
                reads.append((f"{ev.tenant}/{ev.key}", version, t0, loaded))
            elif ev.kind == "write":
                await strategy.write(ev)
                writes.append((f"{ev.tenant}/{ev.key}", ev.version, db.now()))
            elif ev.kind == "webhook":
                await strategy.webhook(ev)
            elif await strategy.call(ev) and measuring:
                admissions.append((ev.tenant, ev.key, time.time()))
        except Exception as exc:  # recorded, never fatal: the run must finish
            if measuring:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1

    # file handshakes with the runner (another process): polled, tiny local files
    out.with_suffix(".setup").write_text("setup")
    warm = go.with_suffix(".warm")
    while not warm.exists():  # noqa: ASYNC110 (every machine's pre-warm is done)
        await asyncio.sleep(0.01)
    events = trace.for_machine(machine)
    # fast-forward to steady state: caches and discovery warm up; calls are skipped because
    # limiter windows and breaker periods are wall-clock time and cannot be fast-forwarded
    warm_call = getattr(strategy, "warm_call", None)
    # machines fast-forward at different speeds, so warm-up writes are all made by machine 0,
    # in trace order (else an older version could land after a newer one)
    history = [
        e
        for e in trace.events
        if e.t < cfg.warmup and (e.machine == machine if e.kind != "write" else machine == 0)
    ]
    for ev in history:
        db.virtual = ev.t
        if ev.kind != "call":
            await handle(ev)
        elif warm_call is not None:
            await warm_call(ev)  # what a machine that served this tenant before would know
    out.with_suffix(".ready").write_text("ready")
    while not go.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.01)
    start = float(go.read_text())  # noqa: ASYNC240
    db.measure_start = start
    db.virtual = None
    queries_before = db.queries
    await asyncio.sleep(max(0.0, start - time.time()))
    counts = getattr(strategy, "ledger_counts", None)
    ledger_before: dict[str, int] = counts() if counts else {}
    hits = getattr(strategy, "local_hits", None)
    hits_before = hits() if hits else 0
    measuring = True
    tasks: set[asyncio.Task[None]] = set()
    for ev in (e for e in events if e.t >= cfg.warmup):
        delay = start + (ev.t - cfg.warmup) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(handle(ev))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.sleep(max(0.0, start + cfg.seconds - time.time()))
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)
    local_hits = (hits() - hits_before) if hits else 0
    ledger: dict[str, int] = {}
    if counts:
        ledger = {
            k: v - ledger_before.get(k, 0)
            for k, v in counts().items()
            if v - ledger_before.get(k, 0)
        }
    # shutting down (final flushes) must not land in the runner's measured window
    await asyncio.sleep(max(0.0, start + cfg.seconds + 1.5 - time.time()))
    with contextlib.suppress(Exception):
        await strategy.close()
    return {
        "strategy": strategy_name,
        "machine": machine,
        "reads": reads,
        "writes": writes,
        "admissions": admissions,
        "db_queries": db.queries - queries_before,
        "errors": errors,
        "ledger": ledger,
        "local_hits": local_hits,
    }


def main(argv: list[str]) -> None:
    """Process entry point (see module docs)."""
    trace_path, strategy, machine, url, namespace, go, out = argv
    trace = Trace.load(Path(trace_path))
    result = asyncio.run(replay(trace, strategy, int(machine), url, namespace, Path(go), Path(out)))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
