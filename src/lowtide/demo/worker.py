"""One demo "machine": a real process that replays its share of the trace with one strategy.

``python -m lowtide.demo.worker TRACE RUN MACHINE URL NAMESPACE GO OUT``:

1. sets up (connects, pre-warms what the strategy pre-warms), writes ``OUT.setup`` and waits for
   the file GO, which holds the wall time at which trace time 0 begins;
2. replays its own events of the whole trace, warm-up included, each at its own time
   (``start + t / speedup``, each as its own task, like requests on a server), so every machine
   sees the history in time order and at the pace it happened (compressed);
3. at the start of the measured window notes its ledger and L1 hits, and at its end notes them
   again;
4. writes what it observed to OUT as JSON: every measured read (key, version, start), every
   write (key, version, completion), every measured rate-limit admission (wall time), database
   queries, errors, how late events started (lag) and its ledger for the window.

Times in the output are trace times (seconds since the trace began) unless they say "wall".
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from lowtide.demo.strategies import Database, Strategy, make_strategy
from lowtide.demo.trace import Event, Trace

__all__ = ["replay"]

#: seconds after the measured window before a machine shuts down (its final flushes must not
#: land in the window the runner measures)
GRACE = 1.0
#: longest a machine waits for its strategy to close (a hung close must not hang the run)
CLOSE_TIMEOUT = 10.0


class _Window:
    """Counters read at both edges of the measured window."""

    def __init__(self, strategy: Strategy, db: Database) -> None:
        self._strategy = strategy
        self._db = db
        self.start: tuple[dict[str, int], int, int] | None = None

    def read(self) -> tuple[dict[str, int], int, int]:
        counts = getattr(self._strategy, "ledger_counts", None)
        hits = getattr(self._strategy, "local_hits", None)
        return (counts() if counts else {}, hits() if hits else 0, self._db.queries)

    def open(self) -> None:
        if self.start is None:
            self.start = self.read()

    def close(self) -> tuple[dict[str, int], int, int]:
        self.open()
        ledger0, hits0, queries0 = self.start or ({}, 0, 0)
        ledger1, hits1, queries1 = self.read()
        ledger = {k: v - ledger0.get(k, 0) for k, v in ledger1.items() if v - ledger0.get(k, 0)}
        return ledger, hits1 - hits0, queries1 - queries0


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def replay(
    trace: Trace, run: str, machine: int, url: str, namespace: str, go: Path, out: Path
) -> dict[str, Any]:
    """Run one machine (see module docs) and return its observations."""
    cfg = trace.config
    db = Database(trace)
    strategy: Strategy = make_strategy(run, url, namespace, db, machine)
    await strategy.setup(machine)
    reads: list[tuple[str, int, float, bool]] = []
    writes: list[tuple[str, int, float]] = []
    admissions: list[tuple[str, str, float, float]] = []
    errors: dict[str, int] = {}
    lags: list[float] = []

    async def handle(ev: Event) -> None:
        measured = ev.t >= cfg.warmup
        try:
            if ev.kind == "read":
                t0 = db.now()
                version, loaded = await strategy.read(ev)
                if measured:
                    reads.append((f"{ev.tenant}/{ev.key}", version, t0, loaded))
            elif ev.kind == "write":
                await strategy.write(ev)
                writes.append((f"{ev.tenant}/{ev.key}", ev.version, db.now()))
            elif ev.kind == "webhook":
                await strategy.webhook(ev)
            else:
                decided = await strategy.call(ev)
                if decided is not None and measured:
                    admissions.append((ev.tenant, ev.key, *decided))
        except Exception as exc:  # recorded, never fatal: the run must finish
            if measured:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1

    # file handshakes with the runner (another process): polled, tiny local files
    out.with_suffix(".setup").write_text("setup")
    while not go.exists():  # noqa: ASYNC110, ASYNC240 (every machine has set up)
        await asyncio.sleep(0.01)
    start = float(go.read_text())  # noqa: ASYNC240
    db.start = start
    speed = cfg.time_scale
    window = _Window(strategy, db)
    measure_from = start + cfg.warmup / speed
    measure_to = start + cfg.total_seconds / speed
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    for ev in (e for e in trace.events if e.machine == machine):
        if window.start is None and ev.t >= cfg.warmup:
            await _sleep_until(measure_from)
            window.open()
        due = start + ev.t / speed
        await _sleep_until(due)
        if ev.t >= cfg.warmup:
            lags.append(max(0.0, time.time() - due))
        task = loop.create_task(handle(ev))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _sleep_until(measure_from)
    window.open()
    await _sleep_until(measure_to)
    ledger, local_hits, queries = window.close()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)
    await _sleep_until(measure_to + GRACE)
    try:
        await asyncio.wait_for(strategy.close(), CLOSE_TIMEOUT)
    except TimeoutError:
        sys.stderr.write(f"machine {machine}: closing took over {CLOSE_TIMEOUT:g} s; left open\n")
    except Exception as exc:  # the run's observations are complete: report them anyway
        sys.stderr.write(f"machine {machine}: closing failed: {exc!r}\n")
    lags.sort()
    return {
        "run": run,
        "machine": machine,
        "reads": reads,
        "writes": writes,
        "admissions": admissions,
        "db_queries": queries,
        "errors": errors,
        "ledger": ledger,
        "local_hits": local_hits,
        "lag_wall_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "lag_wall_max": lags[-1] if lags else 0.0,
    }


def main(argv: list[str]) -> None:
    """Process entry point (see module docs)."""
    trace_path, run, machine, url, namespace, go, out = argv
    trace = Trace.load(Path(trace_path))
    result = asyncio.run(replay(trace, run, int(machine), url, namespace, Path(go), Path(out)))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
