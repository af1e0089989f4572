"""Soak: steady load with periodic faults; memory, errors and commands per minute (not in CI).

One embedded Valkey behind a FaultProxy; one hub with a cache, tenant discovery, a limiter, a
breaker and quotas; ~200 operations/s over 50 tenants. Every minute: 10 s of Redis refusing
connections, 10 s of 300 ms latency, a cut of every live connection, then normal again.

Reports per minute: RSS, Python heap (tracemalloc), asyncio tasks, L1 entries, mode, commands
sent, operations done, exceptions seen by callers (must stay 0).

Run: ``python -m benchmarks.soak --minutes 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import tracemalloc
from typing import Any

from benchmarks._common import table, write
from lowtide import Lowtide
from lowtide.testing import FaultProxy, ValkeyServer


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def soak(minutes: float) -> list[dict[str, Any]]:
    tracemalloc.start()
    rows: list[dict[str, Any]] = []
    with ValkeyServer() as server, FaultProxy(server.host, server.port) as proxy:
        async with Lowtide(proxy.url, instance="soak") as lt:
            cache = lt.cache("profiles", max_entries=5_000)
            tenants = lt.tenants()
            limiter = lt.rate_limiter("api", limit=500, per=10, fleet_size=1)
            breaker = lt.circuit_breaker("api", min_calls=20)
            lt.quotas({"pro": 10**9}, lambda t: "pro")
            errors = 0
            ops = 0
            stop = asyncio.Event()

            async def load(i: int) -> dict[str, int]:
                return {"v": i}

            async def worker(w: int) -> None:
                nonlocal errors, ops
                i = 0
                while not stop.is_set():
                    t = f"tenant-{(w * 7 + i) % 50}"
                    try:
                        await cache.get_or_load(f"k{i % 300}", lambda i=i: load(i), tenant=t)
                        if i % 50 == 0:
                            await cache.set(f"k{i % 300}", {"v": i}, tenant=t)
                        await tenants.resolve("slack", f"T{i % 100}")
                        if (await limiter.acquire(t)).allowed:
                            async with breaker.guard(t):
                                pass
                        ops += 1
                    except Exception:
                        errors += 1
                    i += 1
                    await asyncio.sleep(0.02)

            async def faults() -> None:
                while not stop.is_set():
                    await asyncio.sleep(30)
                    proxy.refuse()
                    await asyncio.sleep(10)
                    proxy.pass_through()
                    proxy.set_latency(0.3)
                    await asyncio.sleep(10)
                    proxy.cut()
                    proxy.pass_through()
                    await asyncio.sleep(10)

            tasks = [asyncio.create_task(worker(w)) for w in range(4)]
            fault_task = asyncio.create_task(faults())
            end = time.monotonic() + minutes * 60
            last_cmds = lt.ledger.total
            last_ops = 0
            minute = 0
            while time.monotonic() < end:
                await asyncio.sleep(min(60.0, end - time.monotonic()))
                minute += 1
                current, _ = tracemalloc.get_traced_memory()
                cmds = lt.ledger.total
                rows.append(
                    {
                        "minute": minute,
                        "rss_mb": round(rss_mb(), 1),
                        "heap_mb": round(current / 1e6, 2),
                        "tasks": len(asyncio.all_tasks()),
                        "l1_entries": cache.info()["entries"],
                        "mode": lt.mode.value,
                        "commands": cmds - last_cmds,
                        "ops": ops - last_ops,
                        "errors": errors,
                    }
                )
                last_cmds, last_ops = cmds, ops
                print(rows[-1], flush=True)
            stop.set()
            fault_task.cancel()
            await asyncio.gather(*tasks)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    rows = asyncio.run(soak(args.minutes))
    headers = list(rows[0]) if rows else []
    print(table(headers, [[r[h] for h in headers] for r in rows]))
    growth = rows[-1]["heap_mb"] - rows[0]["heap_mb"] if len(rows) > 1 else 0.0
    print(f"heap growth from minute 1 to the end: {growth:+.2f} MB")
    print(f"wrote {write('soak', {'minutes': args.minutes, 'rows': rows})}")


if __name__ == "__main__":
    main()
