"""The limiter under production conditions: a blip mid-window never admits more than the limit;
a listener blip does not strand the tokens a hub holds; planted spent-window pushes refuse at
most until the window under way ends."""

from __future__ import annotations

import asyncio
from collections import Counter

from lowtide import Lowtide, ManualClock, Mode, build_key
from lowtide.limiter.core import window_index
from lowtide.testing import FaultProxy, ValkeyServer
from tests.helpers import eventually

LIMIT, PER = 20, 3600.0  # an hour: the window under way outlasts the scenario


async def test_a_blip_mid_window_never_admits_a_fresh_share(
    proxied: tuple[ValkeyServer, FaultProxy],
) -> None:
    _, proxy = proxied
    async with Lowtide(proxy.url, instance="web-1") as lt:
        # leases of one token: every decision is a reservation, so the blip is met by one
        limiter = lt.rate_limiter("hubspot", limit=LIMIT, per=PER, fleet_size=1, max_lease=1)
        await lt.sync_server_clock()
        # not in a window's last minute, so the whole scenario fits in one window
        into = lt.server_time() % PER
        if into > PER - 60:
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
        assert await lt.wait_for(Mode.DEGRADED, 6)  # the failed reservation was noticed
        assert limiter.stats["local"] > 0
        proxy.pass_through()
        assert await lt.wait_for(Mode.DISTRIBUTED, 6)
        await ask(30)  # Redis is back in the same window
        assert max(admitted.values()) <= LIMIT
        assert sum(admitted.values()) >= LIMIT  # and the limit itself was available


async def test_a_listener_blip_keeps_the_tokens_in_hand(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # the invalidation listener reconnects: every cached answer (penalties included) is dropped.
    # The tokens this hub holds were charged to the fleet counter; in a spent window, dropping
    # them would refuse the tenant until the window ends. They wait for one re-read instead.
    server = lowtide_fresh_server
    async with Lowtide(server.url, instance="web-1") as lt:
        assert await lt.invalidations.wait_healthy(5)
        limiter = lt.rate_limiter("slack", limit=30, per=3600, fleet_size=1, lease_horizon=600)
        into = lt.server_time() % 3600
        if into > 3600 - 60:
            await asyncio.sleep(3600 - into + 0.05)
        first = await asyncio.gather(*(limiter.acquire("t1") for _ in range(10)))
        assert all(d.allowed for d in first)  # one reservation for the ten callers waiting
        assert (await limiter.acquire("t1")).allowed  # a burst: the next lease doubles, to 20
        assert limiter.stats["reservations"] == 2
        window = window_index(lt.server_time(), 3600)
        counter = build_key("lt", "limiter", "slack", "t1", f"w{window}")  # the window's key
        charged = server.command("GET", counter)
        assert int(charged) >= 30  # the window is spent fleet-wide
        seen: list[object] = []
        lt.invalidations.subscribe(seen.append)
        server.command("CLIENT", "KILL", "TYPE", "pubsub")  # the listener's connection dies
        await eventually(lambda: None in seen)  # every cached answer was dropped
        assert await lt.invalidations.wait_healthy(10)
        assert await lt.wait_for(Mode.DISTRIBUTED, 10)
        later = [await limiter.acquire("t1") for _ in range(20)]
        assert [d.allowed for d in later] == [True] * 19 + [False]  # the 19 held, then the limit
        assert limiter.stats["reservations"] == 2  # not one more reservation
        assert server.command("GET", counter) == charged


async def test_planted_spent_windows_block_at_most_the_window_under_way(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    clock = ManualClock()  # the window under way does not move during the test
    async with Lowtide(server.url, clock=clock) as lt:
        assert await lt.invalidations.wait_healthy(5)
        limiter = lt.rate_limiter("crm", 100, 60.0, fleet_size=1)
        await limiter.prefetch("t1")
        assert (await limiter.acquire("t1")).allowed  # this hub holds a lease for t1
        w = window_index(lt.server_time(), 60.0)

        async def plant(key: str) -> None:
            received = lt.invalidations.received
            server.command("SET", build_key("lt", "control", "crm.spent", "t1", key), "1")
            await eventually(lambda: lt.invalidations.received > received)

        for key in (f"w{w + 10**6}", f"w{w - 1}", "garbage", "w" + "9" * 40):
            await plant(key)
        limiter.drop_lease("t1")
        assert (await limiter.acquire("t1")).allowed  # none of them names the window under way
        assert limiter.info()["bad_spent"] == 2  # the two that name no window at all
        await plant(f"w{w}")  # the window under way: refused until it ends, no longer
        limiter.drop_lease("t1")
        d = await limiter.acquire("t1")
        assert not d.allowed
        assert 0 < d.retry_after <= 60.0
        clock.advance(d.retry_after + 0.001)
        assert (await limiter.acquire("t1")).allowed


async def test_a_failed_lease_renewal_leaves_the_local_bucket_usable(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    clock = ManualClock()
    # no listener: moving the manual clock 45 s would look like a lost one, and a lost listener
    # drops every lease (a penalty may have been missed)
    async with Lowtide(server.url, clock=clock, invalidation="ttl") as lt:
        bucket = lt.rate_limiter(
            "tb", 600, 60.0, algorithm="token_bucket", on_redis_error="deny", fleet_size=1
        )
        await bucket.prefetch("t1")
        for _ in range(20):  # this hub now holds a rate lease (a minute) and a local bucket
            assert (await bucket.acquire("t1")).allowed
        clock.advance(45)  # a renewal is due, and the local bucket has refilled
        key = build_key("lt", "limiter", "tb", "t1", "rates")
        server.command("DEL", key)
        server.command("HSET", key, "n", "1")  # the renewal fails: WRONGTYPE
        d = await bucket.acquire("t1")
        assert d.allowed  # from the local bucket: its tokens were the fleet's grant
        assert bucket.info()["bad_state"] == 1


async def test_a_penalty_stops_a_token_bucket_s_local_bucket_at_once(lowtide_url: str) -> None:
    clock = ManualClock()
    async with (
        Lowtide(lowtide_url, clock=clock, instance="a") as a,
        Lowtide(lowtide_url, clock=clock, instance="b") as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        la = a.rate_limiter("tbp", 1000, 10.0, algorithm="token_bucket", fleet_size=2)
        lb = b.rate_limiter("tbp", 1000, 10.0, algorithm="token_bucket", fleet_size=2)
        for _ in range(30):  # a now holds a rate lease: its local bucket refills on its own
            assert (await la.acquire("t1")).allowed
        await lb.penalize("t1", retry_after=5)  # b got a 429
        await eventually(lambda: la.penalty_cache.stats.invalidations >= 1)
        clock.advance(2)  # a's local bucket has refilled meanwhile
        d = await la.acquire("t1")
        assert not d.allowed  # the penalty is read before the local bucket is spent again
        assert 2 < d.retry_after <= 3.1  # the two hubs measured the server clock apart
