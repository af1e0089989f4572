"""The limiter through a blip: a brief outage mid-window never admits more than the limit."""

from __future__ import annotations

import asyncio
from collections import Counter

from lowtide import Lowtide, Mode
from lowtide.limiter.core import window_index
from lowtide.testing import FaultProxy, ValkeyServer

LIMIT, PER = 20, 10.0


async def test_a_blip_mid_window_never_admits_a_fresh_share(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    _, proxy = proxied
    async with Lowtide(proxy.url, instance="web-1") as lt:
        limiter = lt.rate_limiter("hubspot", limit=LIMIT, per=PER, fleet_size=1)
        await lt.sync_server_clock()
        # start early in a window so the whole scenario fits in it
        into = lt.server_time() % PER
        if into > 2.0:
            await asyncio.sleep(PER - into + 0.05)
        admitted: Counter[int] = Counter()

        async def ask(n: int) -> None:
            for _ in range(n):
                if (await limiter.acquire("t1")).allowed:
                    admitted[window_index(lt.server_time(), PER)] += 1

        await ask(18)  # through Redis
        proxy.refuse()
        proxy.cut()  # the blip: every connection drops, new ones are refused
        await ask(30)  # local decisions while Redis is away
        assert lt.mode is Mode.DEGRADED
        assert limiter.stats["local"] > 0
        proxy.pass_through()
        assert await lt.wait_for(Mode.DISTRIBUTED, 6)
        await ask(30)  # Redis is back in the same window
        assert max(admitted.values()) <= LIMIT
        assert sum(admitted.values()) >= LIMIT  # and the limit itself was available
