"""Rate limiter and circuit breaker: billed commands per 1,000 decisions and latency, side by side.

Every row runs against the same embedded Valkey in one process; commands come from the server's
``INFO commandstats`` (which counts each ``redis.call`` inside a script, as Upstash bills them),
billed under the Upstash profile (PING, INFO, ... free).

* limiter, under the limit: 1,000 decisions on a 100,000/min budget (all allowed);
* limiter, saturating: 1,000 decisions on a 100 per 10 s budget (most denied);
* breaker, healthy: 1,000 guarded calls that succeed.

Peers (optional, skipped if absent): ``limits`` (fixed window, sliding window counter and moving
window on async redis), ``pybreaker`` (CircuitRedisStorage) and ``purgatory`` (async redis).

Run: ``python -m benchmarks.coordination``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._common import table, write
from lowtide import Lowtide
from lowtide.ledger import billing_profile
from lowtide.testing import ValkeyServer, commandstats_delta

N = 1000
UPSTASH = billing_profile("upstash")


async def measure(
    server: ValkeyServer, label: str, op: Callable[[int], Awaitable[Any]], n: int = N
) -> dict[str, Any]:
    before = server.commandstats()
    t0 = time.perf_counter()
    allowed = 0
    for i in range(n):
        if await op(i):
            allowed += 1
    elapsed = time.perf_counter() - t0
    delta = commandstats_delta(before, server.commandstats())
    delta["info"] = delta.get("info", 0) - 1
    delta = {k: v for k, v in delta.items() if v}
    return {
        "label": label,
        "billed_per_1000": round(UPSTASH.billed(delta) * 1000 / n, 1),
        "commands": delta,
        "us_per_decision": round(elapsed / n * 1e6, 2),
        "allowed": allowed,
    }


async def lowtide_limiter(
    server: ValkeyServer, algorithm: str, limit: int, per: float
) -> dict[str, Any]:
    async with Lowtide(server.url, instance="bench") as lt:
        # one machine: say so (heartbeats of the hubs this script opened and closed within the
        # same minute would otherwise count as a fleet and shrink the leases)
        limiter = lt.rate_limiter(
            f"bench-{algorithm}-{limit}",
            limit,
            per,
            algorithm=algorithm,  # type: ignore[arg-type]
            fleet_size=1,
        )
        await lt.invalidations.wait_healthy(5)
        await limiter.acquire("warm-up")  # one-time per process: listener, TIME, heartbeat

        async def op(i: int) -> bool:
            return (await limiter.acquire("t1")).allowed

        return await measure(server, f"lowtide {algorithm}", op)


async def limits_limiter(
    server: ValkeyServer, strategy: str, limit: int, per: int
) -> dict[str, Any]:
    from limits import RateLimitItemPerSecond
    from limits.aio import strategies
    from limits.aio.storage import RedisStorage

    storage = RedisStorage(f"async+redis://127.0.0.1:{server.port}", implementation="redispy")
    cls = {
        "fixed": strategies.FixedWindowRateLimiter,
        "sliding": strategies.SlidingWindowCounterRateLimiter,
        "moving": strategies.MovingWindowRateLimiter,
    }[strategy]
    limiter = cls(storage)
    item = RateLimitItemPerSecond(limit, per)
    await limiter.hit(item, "warm", strategy)  # script loading outside the measurement

    async def op(i: int) -> bool:
        return bool(await limiter.hit(item, "t1", strategy))

    return await measure(server, f"limits {strategy} window", op)


async def lowtide_breaker(server: ValkeyServer) -> dict[str, Any]:
    async with Lowtide(server.url, instance="bench") as lt:
        assert await lt.invalidations.wait_healthy(5)
        breaker = lt.circuit_breaker("bench")
        async with breaker.guard("warm-up"):
            pass

        async def op(i: int) -> bool:
            async with breaker.guard("t1"):
                return True

        return await measure(server, "lowtide circuit_breaker", op)


async def pybreaker_breaker(server: ValkeyServer) -> dict[str, Any]:
    import pybreaker
    import redis

    client = redis.Redis(port=server.port, protocol=2)
    breaker = pybreaker.CircuitBreaker(
        fail_max=5,
        reset_timeout=30,
        state_storage=pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client),
    )

    async def op(i: int) -> bool:
        return bool(breaker.call(lambda: True))

    return await measure(server, "pybreaker + CircuitRedisStorage", op)


async def purgatory_breaker(server: ValkeyServer) -> dict[str, Any]:
    from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork

    factory = AsyncCircuitBreakerFactory(
        default_threshold=5,
        default_ttl=30,
        uow=AsyncRedisUnitOfWork(f"redis://127.0.0.1:{server.port}"),
    )
    await factory.initialize()

    async def op(i: int) -> bool:
        async with await factory.get_breaker("bench"):
            return True

    return await measure(server, "purgatory + redis", op)


async def lease_latency(server: ValkeyServer) -> float:
    """Median µs per decision when the lease is already in hand (no I/O)."""
    async with Lowtide(server.url, instance="lat") as lt:
        limiter = lt.rate_limiter("latency", 10**9, 60, max_lease=100_000)
        for _ in range(5000):
            await limiter.acquire("t1")
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(10_000):
                await limiter.acquire("t1")
            runs.append((time.perf_counter() - t0) / 10_000 * 1e6)
        return statistics.median(runs)


async def optional(coro: Awaitable[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    try:
        rows.append(await coro)
    except ImportError as exc:
        print(f"(skipped: {exc})")


async def run() -> None:
    out: dict[str, Any] = {}
    with ValkeyServer() as server:
        for scenario, limit, per in (("under the limit", 100_000, 60), ("saturating", 100, 10)):
            rows: list[dict[str, Any]] = []
            rows.append(await lowtide_limiter(server, "fixed_window", limit, per))
            rows.append(await lowtide_limiter(server, "token_bucket", limit, per))
            for strategy in ("fixed", "sliding", "moving"):
                await optional(limits_limiter(server, strategy, limit, per), rows)
            out[f"limiter, {scenario}"] = rows
        rows = [await lowtide_breaker(server)]
        await optional(pybreaker_breaker(server), rows)
        await optional(purgatory_breaker(server), rows)
        out["breaker, healthy calls"] = rows
        lease_us = await lease_latency(server)
    for scenario, rows in out.items():
        print(f"\n{scenario} ({N} decisions)")
        print(
            table(
                ["library", "billed per 1,000 (Upstash)", "allowed", "µs/decision", "commands"],
                [
                    [
                        r["label"],
                        r["billed_per_1000"],
                        r["allowed"],
                        r["us_per_decision"],
                        ", ".join(f"{k}={v}" for k, v in sorted(r["commands"].items())),
                    ]
                    for r in rows
                ],
            )
        )
    print(f"\nlowtide decision with a lease in hand: {lease_us:.2f} µs (median of 7 x 10,000)")
    out["lease_in_hand_us"] = round(lease_us, 2)
    print(f"wrote {write('coordination', out)}")


if __name__ == "__main__":
    asyncio.run(run())
