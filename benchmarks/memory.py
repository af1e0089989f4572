"""Memory with many tenants: L1 entries, limiter leases and breaker windows stay within caps.

A local-only hub (no server: memory is what is measured) gets 100,000 active tenants: each has
one cached value (a small profile), one rate-limiter decision and one guarded breaker call.
``tracemalloc`` measures the Python heap, once with the default caps (cache 10,000 entries,
limiter and breaker state for 10,000 tenants) and once with every cap at 100,000 (no eviction).

Run: ``python -m benchmarks.memory``.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

from benchmarks._common import table, write
from lowtide import Lowtide

TENANTS = 100_000
VALUE = {"id": 42, "name": "Ada Lovelace", "plan": "pro"}


async def measure(cap: int | None) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    async with Lowtide(None) as lt:
        kw = {} if cap is None else {"max_tenants": cap}
        cache = lt.cache("profiles", **({} if cap is None else {"max_entries": cap}))
        limiter = lt.rate_limiter("api", limit=100, per=10, **kw)
        breaker = lt.circuit_breaker("api", **kw)
        for i in range(TENANTS):
            t = f"tenant-{i:06d}"
            await cache.set("profile", VALUE, tenant=t)
            await limiter.acquire(t)
            async with breaker.guard(t):
                pass
        gc.collect()
        used, _ = tracemalloc.get_traced_memory()
        row = {
            "caps": "defaults" if cap is None else f"all {cap:,}",
            "l1_entries": len(cache._store),
            "limiter_tenants": len(limiter._leases),
            "breaker_tenants": len(breaker._cores),
            "heap_mb": round((used - base) / 1e6, 1),
            "bytes_per_tenant": round((used - base) / TENANTS),
        }
    tracemalloc.stop()
    return row


async def run() -> None:
    rows = [await measure(None), await measure(100_000)]
    headers = list(rows[0])
    print(f"{TENANTS:,} active tenants (one cached value, one limiter decision, one breaker call)")
    print(table(headers, [[r[h] for h in headers] for r in rows]))
    print(f"wrote {write('memory', {'tenants': TENANTS, 'rows': rows})}")


if __name__ == "__main__":
    asyncio.run(run())
