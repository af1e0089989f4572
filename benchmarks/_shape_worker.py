"""One process of ``benchmarks.cache_shapes``: replays its share of a shape's trace.

``python -m benchmarks._shape_worker CONFIG_JSON``. The config names the shape, seed, timing,
process index, mode (``tracking``, ``keyspace``, ``pubsub`` or ``cache-aside``), server URL,
namespace and three files: READY (written once connected and, for lowtide, once the listener
is healthy), GO (written by the runner: the wall time at which trace time 0 starts) and OUT
(this process's results as JSON: its ledger's commands in the measured window, cache stats,
lateness, errors).

Each operation runs as its own task at its trace time, like requests on a server. The data
source is modelled from the whole trace: every ``set`` or ``delete`` of a key (by any process)
is a change of the key's source value, so a loader returns the version current at its trace
time and a ``set`` writes the version it creates. ``cache-aside`` is plain redis-py with no
lowtide at all: GET, and on a miss load + SET PX; SET PX; DEL.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from benchmarks._shape_trace import SHAPES, Op, Timing, generate, value_for
from lowtide import Lowtide
from lowtide.testing import ledger_commands


class Replay:
    """The operations of one process against one mode (see module docs)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.shape = SHAPES[cfg["shape"]]
        self.timing = Timing(**cfg["timing"])
        self.mode: str = cfg["mode"]
        self.process: int = cfg["process"]
        trace = generate(self.shape, self.timing, cfg["seed"])
        self.ops = [op for op in trace if op.process == self.process]
        #: when each key's source value changed (a set or delete by any process)
        self.changes: dict[tuple[str, str], list[float]] = {}
        for op in trace:
            if op.kind != "get":
                self.changes.setdefault((op.tenant, op.key), []).append(op.t)
        self.errors: dict[str, int] = {}
        self.mode_changes: list[str] = []
        self.late: list[float] = []
        self.loads = 0
        self.t0 = 0.0
        self.replaying = False

    def _mode_change(self, change: Any) -> None:
        if self.replaying:
            self.mode_changes.append(f"{change.new.value} ({change.reason})")

    def _version(self, op: Op, t: float) -> int:
        return bisect.bisect_left(self.changes.get((op.tenant, op.key), ()), t)

    async def _load(self, op: Op) -> str:
        """The source's value of the key now."""
        self.loads += 1
        return value_for(self.shape, op.key, self._version(op, time.time() - self.t0))

    def _value(self, op: Op) -> str:
        """The value this ``set`` creates."""
        return value_for(self.shape, op.key, self._version(op, op.t) + 1)

    async def run(self) -> dict[str, Any]:
        if self.mode == "cache-aside":
            return await self._run_plain()
        options: dict[str, Any] = {"fleet_switch": False}
        if self.mode in ("pubsub", "keyspace"):
            options["invalidation"] = self.mode
        else:
            options["listener_resp3"] = True
        lt = Lowtide(
            self.cfg["url"],
            instance=f"p{self.process}",
            namespace=self.cfg["namespace"],
            **options,
        )
        # time is compressed (see benchmarks._shape_trace): the keepalive with it
        lt.invalidations.keepalive = self.timing.keepalive
        lt.on_mode_change(self._mode_change)
        async with lt:
            if not await lt.ready(10):
                raise SystemExit("listener never became healthy")
            cache = lt.cache("shape", ttl=self.timing.ttl, max_staleness=self.timing.max_staleness)

            async def do(op: Op) -> None:
                if op.kind == "get":
                    await cache.get_or_load(op.key, lambda: self._load(op), tenant=op.tenant)
                elif op.kind == "set":
                    await cache.set(op.key, self._value(op), tenant=op.tenant)
                else:
                    await cache.delete(op.key, tenant=op.tenant)

            edges = await self._replay(do, lambda: ledger_commands(lt, component="cache"))
            info = cache.info()
            total = lt.ledger.snapshot().by_command
        before, after = edges
        window = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        return {
            "ledger_cache_window": {k: v for k, v in window.items() if v},
            "ledger_total": total,
            "cache": info,
        }

    async def _run_plain(self) -> dict[str, Any]:
        client = aioredis.Redis.from_url(
            self.cfg["url"], protocol=2, lib_name=None, lib_version=None
        )
        ns = self.cfg["namespace"]
        px = int(self.timing.ttl * 1000)
        counts = {"get": 0, "set": 0, "del": 0}

        async def do(op: Op) -> None:
            rk = f"{ns}:{op.tenant}:{op.key}"
            if op.kind == "get":
                counts["get"] += 1
                if await client.get(rk) is None:
                    value = await self._load(op)
                    counts["set"] += 1
                    await client.set(rk, value, px=px)
            elif op.kind == "set":
                counts["set"] += 1
                await client.set(rk, self._value(op), px=px)
            else:
                counts["del"] += 1
                await client.delete(rk)

        await client.ping()  # connect before measuring
        try:
            before, after = await self._replay(do, lambda: dict(counts))
        finally:
            await client.aclose()
        window = {k: after[k] - before[k] for k in after}
        return {"ledger_cache_window": {k: v for k, v in window.items() if v}}

    async def _replay(self, do: Any, snapshot: Any) -> tuple[dict[str, int], dict[str, int]]:
        """Run every op at its time; snapshot counts at the window's edges."""
        # file handshakes with the runner (another process): polled, tiny local files
        Path(self.cfg["ready"]).write_text("ready")  # noqa: ASYNC240
        go = Path(self.cfg["go"])
        while not go.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.005)
        t0 = self.t0 = float(go.read_text())  # noqa: ASYNC240
        self.replaying = True
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        edges: list[dict[str, int]] = []
        lo = self.timing.warmup
        hi = lo + self.timing.measured

        async def one(op: Op) -> None:
            self.late.append(time.time() - (t0 + op.t))
            try:
                await do(op)
            except Exception as exc:  # counted, never fatal: the run must finish
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1

        marks = [lo, hi]
        for op in self.ops:
            while marks and op.t >= marks[0]:
                await _sleep_until(t0 + marks.pop(0))
                edges.append(snapshot())
            await _sleep_until(t0 + op.t)
            task = loop.create_task(one(op))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for mark in marks:
            await _sleep_until(t0 + mark)
            if tasks:
                await asyncio.wait(set(tasks))
            edges.append(snapshot())
        if tasks:
            await asyncio.wait(set(tasks))
        self.replaying = False
        return edges[0], edges[1]


async def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def main(cfg: dict[str, Any]) -> None:
    replay = Replay(cfg)
    out = await replay.run()
    late = sorted(replay.late)
    out.update(
        errors=replay.errors,
        mode_changes=replay.mode_changes,
        loads=replay.loads,
        ops=len(replay.ops),
        late_ms_p50=round(late[len(late) // 2] * 1000, 2) if late else 0.0,
        late_ms_p99=round(late[int(len(late) * 0.99)] * 1000, 2) if late else 0.0,
    )
    Path(cfg["out"]).write_text(json.dumps(out))  # noqa: ASYNC240


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
