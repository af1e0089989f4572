"""The drop-in client and the @cached decorator: latency of an answer from process memory and
Redis commands per workload, side by side in one run.

Latency (median and range of 7 runs, same process, same embedded Valkey):

* ``lt.redis()`` GET, HGETALL (10 fields) and MGET (10 keys) answered from L1, next to plain
  redis-py over loopback (what each costs without the drop-in);
* ``@cache.cached()`` answered from L1, next to ``cache.get_or_load`` (what it wraps) and the
  decorators of cashews (``mem://``) and aiocache (``SimpleMemoryCache``).

Commands (the server's INFO commandstats): 1,000 reads of 10 hot keys through the drop-in and
through plain redis-py; a plain client's write and the read after it; a tenant purge with 10 and
with 10,000 entries.

Run: ``python -m benchmarks.dropin``. Timings on a shared 2-CPU machine are noisy: compare the
columns of one run, not runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from benchmarks._common import table, write
from lowtide import Lowtide, tenant_scope
from lowtide.testing import ValkeyServer, changes, server_commands

N = 5_000
REPEAT = 7


async def per_op(op: Callable[[], Awaitable[Any]], n: int = N) -> tuple[float, float, float]:
    """(median, min, max) microseconds per call over REPEAT runs of ``n`` calls."""
    runs = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        for _ in range(n):
            await op()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs), min(runs), max(runs)


async def latencies(url: str) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    plain = Redis.from_url(url, protocol=2, driver_info=None)
    await plain.set("d:s", "x" * 100)
    await plain.hset("d:h", mapping={f"f{i}": f"v{i}" for i in range(10)})
    await plain.mset({f"d:m{i}": i for i in range(10)})
    keys = [f"d:m{i}" for i in range(10)]
    lt = Lowtide(url)
    r = lt.redis(("d:",), decode_responses=True)
    await lt.start()
    assert await lt.ready(10)
    await r.get("d:s"), await r.hgetall("d:h"), await r.mget(keys)
    out["lt.redis() GET (L1)"] = await per_op(lambda: r.get("d:s"))
    out["redis-py GET (loopback)"] = await per_op(lambda: plain.get("d:s"), n=1_000)
    out["lt.redis() HGETALL 10 fields (L1)"] = await per_op(lambda: r.hgetall("d:h"))
    out["redis-py HGETALL (loopback)"] = await per_op(lambda: plain.hgetall("d:h"), n=1_000)
    out["lt.redis() MGET 10 keys (L1)"] = await per_op(lambda: r.mget(keys))
    out["redis-py MGET (loopback)"] = await per_op(lambda: plain.mget(keys), n=1_000)

    users = lt.cache("users")

    @users.cached(tenant="org")
    async def get_user(org: str, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "org": org}

    async def loader() -> dict[str, Any]:
        return {"id": 42, "org": "acme"}

    await get_user("acme", 42)
    await users.get_or_load("u42", loader, tenant="acme")
    out["@cache.cached() (L1)"] = await per_op(lambda: get_user("acme", 42))
    out["cache.get_or_load (L1)"] = await per_op(
        lambda: users.get_or_load("u42", loader, tenant="acme")
    )
    await lt.aclose()
    await plain.aclose()
    try:
        from cashews import Cache as CashewsCache

        cc = CashewsCache()
        cc.setup("mem://")

        @cc(ttl="5m")
        async def cashews_user(org: str, user_id: int) -> dict[str, Any]:
            return {"id": user_id, "org": org}

        await cashews_user("acme", 42)
        out["cashews @cache mem:// (hit)"] = await per_op(lambda: cashews_user("acme", 42))
    except ImportError:
        pass
    try:
        from aiocache import cached

        @cached(ttl=300)
        async def aiocache_user(org: str, user_id: int) -> dict[str, Any]:
            return {"id": user_id, "org": org}

        await aiocache_user("acme", 42)
        out["aiocache @cached memory (hit)"] = await per_op(lambda: aiocache_user("acme", 42))
    except ImportError:
        pass
    return out


async def costs(server: ValkeyServer) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    plain = Redis.from_url(server.url, protocol=2, driver_info=None)
    hot = [f"discovery:slack:T{i}" for i in range(10)]
    for k in hot:
        await plain.set(k, "tenant-" + k[-1])

    async def measure(label: str, fn: Callable[[], Awaitable[Any]]) -> None:
        before = server_commands(server)
        await fn()
        await asyncio.sleep(0.05)  # let pushes arrive
        out[label] = changes(before, server_commands(server), minus={"info": 1})

    async def reads(client: Redis) -> None:
        for i in range(1000):
            await client.get(hot[i % 10])

    await measure("1,000 GETs of 10 hot keys: redis-py", lambda: reads(plain))
    lt = Lowtide(server.url)
    r = lt.redis(("discovery:",))
    await lt.start()
    assert await lt.ready(10)
    await measure("1,000 GETs of 10 hot keys: lt.redis()", lambda: reads(r))
    await measure("1,000 more: lt.redis()", lambda: reads(r))
    await measure("a plain client's write (pushed to the hub)", lambda: plain.set(hot[0], "x"))
    await measure("1,000 GETs after it: lt.redis()", lambda: reads(r))
    c = lt.cache("offboard", purgeable=True)
    for n in (10, 10_000):
        t = f"tenant{n}"
        await c.set_many({f"k{i}": i for i in range(n)}, tenant=t)
        with tenant_scope(t):
            await measure(f"purge(tenant=) of {n:,} entries", lambda t=t: c.purge(tenant=t))
    await lt.aclose()
    await plain.aclose()
    return out


async def run() -> None:
    with ValkeyServer() as server:
        lat = await latencies(server.url)
        cost = await costs(server)
    print(
        table(
            ["operation", "µs/op median", "range (7 runs)"],
            [[k, f"{m:.2f}", f"{lo:.2f}-{hi:.2f}"] for k, (m, lo, hi) in lat.items()],
        )
    )
    print()
    print(
        table(
            ["scenario", "commands the server received (INFO commandstats)"],
            [
                [k, ", ".join(f"{c}={n}" for c, n in sorted(v.items())) or "0"]
                for k, v in cost.items()
            ],
        )
    )
    lat_json = {k: {"median": m, "min": lo, "max": hi} for k, (m, lo, hi) in lat.items()}
    print(f"wrote {write('dropin', {'latency_us': lat_json, 'commands': cost})}")


if __name__ == "__main__":
    asyncio.run(run())
