"""Commands and time per 1,000 concurrent cold reads, with and without read batching.

Run: ``python -m benchmarks.read_batching`` (starts its own server). One tenant's 1,000 keys are
in Redis but not in L1; 1,000 concurrent ``cache.get`` calls read them. Side by side in one run:
``batch_reads=False`` (1 GET per key) and the default (the reads of one event-loop turn share
one MGET). Repeated runs; median and range.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from benchmarks._common import machine, table, write
from lowtide import Lowtide
from lowtide.testing import ValkeyServer, ledger_total

READS = 1_000
RUNS = 7


async def one_run(url: str, batch: bool) -> tuple[int, float]:
    async with Lowtide(url, instance=f"bench-{batch}", fleet_switch=False) as lt:
        cache = lt.cache("bench", batch_reads=batch)
        await cache.set_many({f"k{i}": {"i": i} for i in range(READS)}, tenant="t")
        cache.clear_local()
        before = ledger_total(lt, component="cache")
        t0 = time.perf_counter()
        await asyncio.gather(*(cache.get(f"k{i}", tenant="t") for i in range(READS)))
        elapsed = time.perf_counter() - t0
        return ledger_total(lt, component="cache") - before, elapsed


def main() -> None:
    """Measure and report."""
    results: dict[str, dict[str, list[float]]] = {}
    with ValkeyServer() as server:
        for _ in range(RUNS):
            for batch in (False, True):
                cmds, secs = asyncio.run(one_run(server.url, batch))
                r = results.setdefault("batched" if batch else "one GET per key", {})
                r.setdefault("commands", []).append(cmds)
                r.setdefault("ms", []).append(secs * 1000)
    rows = []
    for name, r in results.items():
        c, ms = r["commands"], r["ms"]
        rows.append(
            [
                name,
                f"{statistics.median(c):,.0f} ({min(c):,.0f}-{max(c):,.0f})",
                f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})",
            ]
        )
    print(
        table(
            ["1,000 concurrent cold reads", "commands, median (range)", "ms, median (range)"],
            rows,
        )
    )
    write("read_batching", {"machine": machine(), "reads": READS, "runs": RUNS, **results})


if __name__ == "__main__":
    main()
