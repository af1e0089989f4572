"""More concurrent callers than connections: a healthy server is never an outage.

10,000 concurrent operations (cache loads, writes and reads, limiter decisions, guarded calls)
on one hub whose pool has 32 connections, against a real server.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

from lowtide import Lowtide, Mode
from lowtide.keys import build_key
from lowtide.testing import ValkeyServer

LIMIT = 20
TENANTS = 100


async def test_ten_thousand_concurrent_operations_complete_without_error(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    async with Lowtide(lowtide_fresh_server.url, instance="busy") as lt:
        assert await lt.invalidations.wait_healthy(5)
        changes: list[Any] = []
        lt.on_mode_change(changes.append)
        cache = lt.cache("profiles", ttl=600)
        limiter = lt.rate_limiter("api", limit=LIMIT, per=3600)
        breaker = lt.circuit_breaker("crm", min_calls=50)
        admitted: Counter[str] = Counter()
        await lt.sync_server_clock()
        window_before = math.floor(lt.server_time() / 3600)

        async def load(i: int) -> None:
            async def loader() -> dict[str, int]:
                await asyncio.sleep(0)
                return {"i": i}

            value = await cache.get_or_load(f"load:{i}", loader, tenant=f"t{i % TENANTS}")
            assert value == {"i": i}

        async def write_then_read(i: int) -> None:
            await cache.set(f"write:{i}", i, tenant=f"t{i % TENANTS}")
            assert await cache.get(f"write:{i}", tenant=f"t{i % TENANTS}") == i

        async def acquire(i: int) -> None:
            tenant = f"t{i % TENANTS}"
            if (await limiter.acquire(tenant)).allowed:
                admitted[tenant] += 1

        async def guarded(i: int) -> None:
            async with breaker.guard(f"t{i % TENANTS}"):
                await asyncio.sleep(0)

        ops = (
            [load(i) for i in range(4_000)]
            + [write_then_read(i) for i in range(2_000)]
            + [acquire(i) for i in range(3_000)]  # 30 asks per tenant for a limit of 20
            + [guarded(i) for i in range(1_000)]
        )
        assert len(ops) == 10_000
        results = await asyncio.gather(*ops, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert changes == []  # never degraded
        assert lt.mode is Mode.DISTRIBUTED
        assert lt.gateway.max_queued > 0  # callers really did outnumber connections
        windows = math.floor(lt.server_time() / 3600) - window_before + 1
        assert len(admitted) == TENANTS
        assert max(admitted.values()) <= LIMIT * windows
        if windows == 1:
            assert set(admitted.values()) == {LIMIT}, str(limiter.info())
        # every loaded value was stored in Redis
        keys = [
            build_key("lt", "cache", "profiles", f"t{i % TENANTS}", f"load:{i}")
            for i in range(4_000)
        ]
        stored = lowtide_fresh_server.command("MGET", *keys)
        assert sum(v is not None for v in stored) == 4_000
