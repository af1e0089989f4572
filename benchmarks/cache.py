"""The tiered cache: async L1 hit latency and Redis commands per operation, side by side.

Latency (median of repeated runs, same process, same embedded Valkey):

* lowtide ``cache.get`` and ``cache.get_or_load`` answered from L1;
* cashews ``mem://`` and ``client_side`` (its Redis-backed near cache) ``cache.get``, and
  aiocache ``SimpleMemoryCache.get`` (their in-process hit paths; optional, skipped if absent);
* a plain redis-py asyncio ``GET`` over loopback (what every hit costs without L1).

Commands per operation come from the server (INFO commandstats deltas) for: 1,000 L1 hits, a
miss, a write, a remote write seen by a second hub (push, no re-fetch), a ``get_many`` of 10.

Run: ``python -m benchmarks.cache``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from benchmarks._common import table, write
from lowtide import Lowtide
from lowtide.testing import ValkeyServer, commandstats_delta

N = 20_000
REPEAT = 7
VALUE = {"id": 42, "name": "Ada Lovelace", "plan": "pro", "flags": ["beta", "sso"]}


async def per_op_us(op: Callable[[], Awaitable[Any]], n: int = N) -> float:
    runs = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        for _ in range(n):
            await op()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


async def latencies(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    async with Lowtide(url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        cache = lt.cache("bench")
        await cache.set("user:42", VALUE, tenant="t1")
        assert await cache.get("user:42", tenant="t1") == VALUE

        async def loader() -> dict[str, Any]:
            return VALUE

        out["lowtide get (L1 hit)"] = await per_op_us(lambda: cache.get("user:42", tenant="t1"))
        out["lowtide get_or_load (L1 hit)"] = await per_op_us(
            lambda: cache.get_or_load("user:42", loader, tenant="t1")
        )
    try:
        from cashews import Cache as CashewsCache

        cc = CashewsCache()
        cc.setup("mem://")
        await cc.set("user:42", VALUE, expire=300)
        out["cashews mem:// get"] = await per_op_us(lambda: cc.get("user:42"))
    except ImportError:
        pass
    try:
        from cashews import Cache as CashewsCache

        cs = CashewsCache()
        cs.setup(url, client_side=True)  # its Redis-backed near cache
        await cs.set("user:42", VALUE, expire=300)
        await cs.get("user:42")
        out["cashews client_side get (L1 hit)"] = await per_op_us(lambda: cs.get("user:42"))
        await cs.close()
    except ImportError:
        pass
    try:
        from aiocache import SimpleMemoryCache

        ac = SimpleMemoryCache()
        await ac.set("user:42", VALUE, ttl=300)
        out["aiocache SimpleMemoryCache get"] = await per_op_us(lambda: ac.get("user:42"))
    except ImportError:
        pass
    client = Redis.from_url(url, protocol=2)
    await client.set("plain:42", "x" * 100)
    out["redis-py GET (loopback)"] = await per_op_us(lambda: client.get("plain:42"), n=2_000)
    await client.aclose()
    return out


async def costs(server: ValkeyServer) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    async with Lowtide(server.url, instance="a") as a, Lowtide(server.url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ca, cb = a.cache("cost"), b.cache("cost")

        async def measure(label: str, fn: Callable[[], Awaitable[Any]]) -> None:
            before = server.commandstats()
            await fn()
            await asyncio.sleep(0.05)  # let pushes arrive
            delta = commandstats_delta(before, server.commandstats())
            delta["info"] = delta.get("info", 0) - 1  # the reading itself
            out[label] = {k: v for k, v in delta.items() if v}

        await measure("write (set)", lambda: ca.set("k", VALUE, tenant="t1"))

        async def hits() -> None:
            for _ in range(1000):
                await ca.get("k", tenant="t1")

        await measure("1,000 L1 hits", hits)
        await measure("miss on another machine (get)", lambda: cb.get("k", tenant="t1"))
        await measure("remote write seen by the other machine", lambda: ca.set("k", 2, tenant="t1"))
        await measure("read after the push (get)", lambda: cb.get("k", tenant="t1"))
        await ca.set_many({f"m{i}": i for i in range(10)}, tenant="t1")
        await measure(
            "get_many of 10 cold keys",
            lambda: cb.get_many([f"m{i}" for i in range(10)], tenant="t1"),
        )
    return out


async def run() -> None:
    with ValkeyServer() as server:
        lat = await latencies(server.url)
        cost = await costs(server)
    print(table(["operation", "µs/op (median)"], [[k, f"{v:.2f}"] for k, v in lat.items()]))
    print()
    print(
        table(
            ["scenario", "commands sent (server's INFO commandstats)"],
            [
                [k, ", ".join(f"{c}={n}" for c, n in sorted(v.items())) or "0"]
                for k, v in cost.items()
            ],
        )
    )
    print(f"wrote {write('cache', {'latency_us': lat, 'commands': cost})}")


if __name__ == "__main__":
    asyncio.run(run())
