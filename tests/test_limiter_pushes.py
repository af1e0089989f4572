"""Fixed windows counted in one key per window, where every hub hears every reservation.

With CLIENT TRACKING or keyspace notifications (invalidation ``auto``, ``tracking``,
``keyspace``), a window's first reservation is one ``SET NX PX``, later ones ``INCRBY``, and a
hub that heard ``limit`` changes of the window under way refuses without asking (and nobody
tells it). Real servers, real pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from lowtide import Lowtide, ManualClock, RateLimiter
from lowtide.keys import build_key
from lowtide.limiter.core import window_end, window_index
from lowtide.limiter.pushes import MAX_CELLS, WindowPushes
from lowtide.limiter.reserve import JOIN_GUESS, JOIN_WEIGHT
from lowtide.testing import (
    ValkeyServer,
    changes,
    ledger_commands,
    server_commands,
)
from tests.helpers import eventually, listeners_caught_up


def heard_by(limiter: RateLimiter) -> WindowPushes:
    """What ``limiter`` heard of its window counters (it counts in one key per window)."""
    pushes = limiter._reserver.pushes
    assert pushes is not None
    return pushes


async def next_window(hub: Lowtide, clock: ManualClock, per: float) -> int:
    """Move the manual clock just past the start of the next window; returns it."""
    await hub.sync_server_clock()
    w = window_index(hub.server_time(), per) + 1
    clock.advance(w * per - hub.server_time() + 0.001)
    assert window_index(hub.server_time(), per) == w
    return w


@contextlib.asynccontextmanager
async def one_hub(
    server: ValkeyServer, name: str, *, limit: int, fleet: int, invalidation: str = "auto"
) -> AsyncIterator[tuple[Lowtide, ManualClock, RateLimiter, int]]:
    """A hub with a healthy listener (none with ``ttl`` invalidation), a 10 s limiter ``name``
    whose one-off reads are done (TIME, configuration, penalty), its manual clock just past a
    window's start, and that window."""
    clock = ManualClock()
    async with Lowtide(server.url, clock=clock, instance="a", invalidation=invalidation) as hub:
        assert invalidation == "ttl" or await hub.invalidations.wait_healthy(5)
        limiter = hub.rate_limiter(name, limit=limit, per=10, fleet_size=fleet)
        await limiter.prefetch("t1")
        yield hub, clock, limiter, await next_window(hub, clock, 10)


@contextlib.asynccontextmanager
async def two_hubs(
    server: ValkeyServer, name: str, invalidation: str
) -> AsyncIterator[tuple[Lowtide, Lowtide, RateLimiter, RateLimiter, int]]:
    """Hubs a and b (healthy listeners, one manual clock) with a limiter ``name`` of 2 calls
    per 10 s each (one-off reads done), the clock just past a window's start, and that window."""
    clock = ManualClock()
    async with (
        Lowtide(server.url, invalidation=invalidation, instance="a", clock=clock) as a,
        Lowtide(server.url, invalidation=invalidation, instance="b", clock=clock) as b,
    ):
        for hub in (a, b):
            assert await hub.invalidations.wait_healthy(5)
        la = a.rate_limiter(name, limit=2, per=10, fleet_size=2)
        lb = b.rate_limiter(name, limit=2, per=10, fleet_size=2)
        for limiter in (la, lb):
            await limiter.prefetch("t1")
        w = await next_window(a, clock, 10)
        await b.sync_server_clock()
        yield a, b, la, lb, w


async def test_a_windows_first_reservation_is_one_set_that_gives_the_key_its_life(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with one_hub(server, "first", limit=100, fleet=4) as (hub, clock, limiter, w):
        before = ledger_commands(hub, component="limiter")
        server_before = server_commands(server)
        assert (await limiter.acquire("t1")).allowed
        assert changes(before, ledger_commands(hub, component="limiter")) == {"set": 1}
        received = changes(server_before, server_commands(server), minus={"info": 1})
        received.pop("ping", None)  # the listener's keepalive (the clock moved)
        assert received == {"set": 1}
        key = build_key("lt", "limiter", "first", "t1", f"w{w}")
        life = (window_end(w, 10) - hub.server_time() + 10) * 1000
        assert 0 < server.command("PTTL", key) <= life + 1  # one window after its own ends
        taken = int(server.command("GET", key))
        # the lease is spent: the next reservation in this window adds to the same key
        for _ in range(taken - 1):
            assert (await limiter.acquire("t1")).allowed
        before = ledger_commands(hub, component="limiter")
        assert (await limiter.acquire("t1")).allowed
        assert changes(before, ledger_commands(hub, component="limiter")) == {"incrby": 1}
        assert int(server.command("GET", key)) > taken
        # the next window has its own key: again one SET
        await next_window(hub, clock, 10)
        before = ledger_commands(hub, component="limiter")
        assert (await limiter.acquire("t1")).allowed
        assert changes(before, ledger_commands(hub, component="limiter")) == {"set": 1}


@pytest.mark.parametrize("mode", ["tracking", "keyspace"])
async def test_a_hub_that_heard_limit_reservations_refuses_without_asking(
    lowtide_fresh_server: ValkeyServer, mode: str
) -> None:
    # the incident's limits: 2 calls per 10 s per (tenant, connector), a fleet of 3
    server = lowtide_fresh_server
    clock = ManualClock()
    async with (
        Lowtide(server.url, invalidation=mode, instance="a", clock=clock) as a,
        Lowtide(server.url, invalidation=mode, instance="b", clock=clock) as b,
        Lowtide(server.url, invalidation=mode, instance="c", clock=clock) as c,
    ):
        hubs = [a, b, c]
        for hub in hubs:
            assert await hub.invalidations.wait_healthy(5)
        limiters = [h.rate_limiter("slack", limit=2, per=10, fleet_size=3) for h in hubs]
        for limiter in limiters:
            await limiter.prefetch("t1")
        w = await next_window(a, clock, 10)
        for hub in (b, c):
            await hub.sync_server_clock()
        assert (await limiters[0].acquire("t1")).allowed  # SET NX PX: 1 token
        await listeners_caught_up(hubs)
        heard = [heard_by(lim) for lim in limiters]
        await eventually(lambda: all(p.heard("t1", w) >= 1 for p in heard))
        before_b = ledger_commands(b, component="limiter")
        told_before = ledger_commands(b, component="control")
        assert (await limiters[1].acquire("t1")).allowed  # heard the key exists: INCRBY
        assert changes(before_b, ledger_commands(b, component="limiter")) == {"incrby": 1}
        await eventually(lambda: heard[2].heard("t1", w) >= 2)
        # c heard both: the window is spent, c refuses without a command, nobody told it
        before = {h.settings.instance: ledger_commands(h) for h in hubs}
        decision = await limiters[2].acquire("t1")
        assert not decision.allowed
        assert 0 < decision.retry_after <= 10
        assert ledger_commands(c) == before["c"]
        assert limiters[2].info()["spent_heard"] == 1
        assert all(lim.info()["spent_told"] == 0 for lim in limiters)
        # b took the last token and told nobody (every hub hears it): no control SET
        assert "set" not in changes(told_before, ledger_commands(b, component="control"))
        assert int(server.command("GET", build_key("lt", "limiter", "slack", "t1", f"w{w}"))) == 2
        # the next window starts afresh: c's first call is admitted
        await next_window(a, clock, 10)
        assert (await limiters[2].acquire("t1")).allowed


async def test_a_first_reservation_that_finds_the_key_adds_to_it(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # two hubs' first reservations crossed (nothing heard yet): SET NX finds the key, INCRBY
    server = lowtide_fresh_server
    async with one_hub(server, "crossed", limit=10, fleet=2) as (hub, _, limiter, w):
        key = build_key("lt", "limiter", "crossed", "t1", f"w{w}")
        pushes = heard_by(limiter)
        server.command("SET", key, "3", "PX", "30000")  # the other hub's reservation
        await eventually(lambda: pushes.heard("t1", w) == 1)
        pushes._heard.clear()  # as if its push had not arrived yet
        before = ledger_commands(hub, component="limiter")
        assert (await limiter.acquire("t1")).allowed
        assert changes(before, ledger_commands(hub, component="limiter")) == {
            "set": 1,
            "incrby": 1,
        }
        assert int(server.command("GET", key)) > 3  # added to the other hub's 3


async def test_pushes_that_name_no_window_near_now_are_ignored(lowtide_url: str) -> None:
    clock = ManualClock()
    async with Lowtide(lowtide_url, clock=clock, instance="a") as hub:
        assert await hub.invalidations.wait_healthy(5)
        pushes = WindowPushes(hub, "hostile", 10.0)
        try:
            w = await next_window(hub, clock, 10)

            def key(k: str, tenant: str = "t1") -> str:
                return build_key("lt", "limiter", "hostile", tenant, k)

            planted = [
                key(f"w{w + 5}"),  # far ahead
                key(f"w{w - 3}"),  # long over (an expiry)
                key("wnope"),
                key("h12"),  # a span's hash (the other layout)
                key("rates"),  # a token bucket's key
                build_key("lt", "limiter", "other", "t1", f"w{w}"),  # another limiter
                key(f"w{w}", "t{x}") + "}",  # not a key lowtide builds
            ]
            pushes._on_keys(planted)
            assert pushes.heard("t1", w) == 0
            assert pushes.ignored == 2  # windows of ours, too far from now
            pushes._on_keys([key(f"w{w}"), key(f"w{w + 1}"), key(f"w{w}", "t:2")])
            assert (pushes.heard("t1", w), pushes.heard("t1", w + 1)) == (1, 1)
            assert pushes.heard("t:2", w) == 1  # tenant ids are unescaped, never confused
            pushes._on_keys(None)  # a flush: what was heard may be incomplete
            assert pushes.heard("t1", w) == 0
            # memory is bounded whatever a flood of pushes names
            pushes._on_keys([key(f"w{w}", f"t{i}") for i in range(MAX_CELLS + 50)])
            assert len(pushes._heard) == MAX_CELLS
        finally:
            pushes.close()


async def test_without_pushes_a_first_reservation_may_find_the_key(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # pub/sub and ttl hubs hear nothing of each other's reservations: a first reservation in
    # a window another hub began is a SET NX that finds the key, then an INCRBY
    server = lowtide_fresh_server
    async with (
        Lowtide(server.url, invalidation="ttl", instance="a") as a,
        Lowtide(server.url, invalidation="ttl", instance="b") as b,
    ):
        la = a.rate_limiter("deaf", limit=100, per=3600, fleet_size=2)
        lb = b.rate_limiter("deaf", limit=100, per=3600, fleet_size=2)
        assert la._reserver.pushes is None
        assert (await la.acquire("t1")).allowed
        assert ledger_commands(a, component="limiter") == {"set": 1}
        assert (await lb.acquire("t1")).allowed
        assert ledger_commands(b, component="limiter") == {"set": 1, "incrby": 1}
        (key,) = server.command("KEYS", "lt:r:deaf:*")
        assert key.rsplit(b":", 1)[1].startswith(b"w")


@pytest.mark.parametrize("invalidation", ["ttl", "pubsub"])
async def test_a_first_reservation_that_finds_the_window_spent_is_refused_by_its_set_alone(
    lowtide_fresh_server: ValkeyServer, invalidation: str
) -> None:
    # SET NX ... GET brings the counter it found: at the limit, nothing is added (1 command,
    # not SET + a refused INCRBY); below it, the INCRBY follows as before
    server = lowtide_fresh_server
    hub_of = one_hub(server, "found", limit=2, fleet=2, invalidation=invalidation)
    async with hub_of as (hub, clock, limiter, w):
        key = build_key("lt", "limiter", "found", "t1", f"w{w}")
        server.command("SET", key, "2", "PX", "30000")  # other hubs took both tokens
        before = ledger_commands(hub, component="limiter")
        decision = await limiter.acquire("t1")
        assert not decision.allowed
        assert 0 < decision.retry_after <= 10
        assert changes(before, ledger_commands(hub, component="limiter")) == {"set": 1}
        assert server.command("GET", key) == b"2"  # not charged: the count stays exact
        assert server.command("PTTL", key) > 20_000  # its life untouched
        # the next window: another hub took 1 of 2 tokens, this one adds to it
        w = await next_window(hub, clock, 10)
        key = build_key("lt", "limiter", "found", "t1", f"w{w}")
        server.command("SET", key, "1", "PX", "30000")
        before = ledger_commands(hub, component="limiter")
        assert (await limiter.acquire("t1")).allowed
        assert changes(before, ledger_commands(hub, component="limiter")) == {
            "set": 1,
            "incrby": 1,
        }
        assert server.command("GET", key) == b"2"


@pytest.mark.parametrize("invalidation", ["pubsub", "ttl"])
async def test_a_hub_that_keeps_finding_the_key_sends_incrby_first_where_nothing_is_heard(
    lowtide_fresh_server: ValkeyServer, invalidation: str
) -> None:
    # a cell busy on several hubs: after its first reservations found the key (SET + INCRBY
    # each), the hub guesses the key exists (INCRBY, 1 command); when the guess is wrong its
    # INCRBY created the key, and a PEXPIRE gives it its life
    server = lowtide_fresh_server
    hub_of = one_hub(server, "busy", limit=2, fleet=2, invalidation=invalidation)
    async with hub_of as (hub, clock, limiter, w):
        sent = []
        warm = 1  # windows of evidence before the guess
        while 1 - (1 - JOIN_WEIGHT) ** warm <= JOIN_GUESS:
            warm += 1
        assert 3 <= warm <= 10
        for i in range(warm + 2):
            if i:
                w = await next_window(hub, clock, 10)
            key = build_key("lt", "limiter", "busy", "t1", f"w{w}")
            if i < warm + 1:
                server.command("SET", key, "1", "PX", "30000")  # another hub's reservation
            before = ledger_commands(hub, component="limiter")
            assert (await limiter.acquire("t1")).allowed
            sent.append(changes(before, ledger_commands(hub, component="limiter")))
            assert server.command("GET", key) == (b"2" if i <= warm else b"1")
            assert 0 < server.command("PTTL", key) <= 30_000  # every window key has a life
            assert not (await limiter.acquire("t1")).allowed or i > warm  # never over the limit
        assert sent[:warm] == [{"set": 1, "incrby": 1}] * warm
        assert sent[warm] == {"incrby": 1}  # guessed right: half the commands
        assert sent[warm + 1] == {"incrby": 1, "pexpire": 1}  # guessed wrong: one more


@pytest.mark.parametrize("invalidation", ["auto", "pubsub"])
async def test_four_hubs_at_the_incidents_limits_never_exceed_them(
    lowtide_url: str, invalidation: str
) -> None:
    # many more calls than the limit, from 4 hubs at once, over several windows (pub/sub hubs
    # hear nothing: each first reservation in a window is SET NX, which may find the key)
    limit, per = 2, 0.5
    async with (
        Lowtide(lowtide_url, instance="h0", invalidation=invalidation) as h0,
        Lowtide(lowtide_url, instance="h1", invalidation=invalidation) as h1,
        Lowtide(lowtide_url, instance="h2", invalidation=invalidation) as h2,
        Lowtide(lowtide_url, instance="h3", invalidation=invalidation) as h3,
    ):
        hubs = [h0, h1, h2, h3]
        for hub in hubs:
            assert await hub.invalidations.wait_healthy(5)
        limiters = [h.rate_limiter("tight", limit=limit, per=per, fleet_size=4) for h in hubs]
        admitted: dict[int, int] = {}

        async def caller(i: int) -> None:
            for _ in range(60):
                if (await limiters[i].acquire("t1")).allowed:
                    w = window_index(hubs[i].server_time(), per)
                    admitted[w] = admitted.get(w, 0) + 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(caller(i) for i in range(4)))
        assert admitted
        assert max(admitted.values()) <= limit, admitted
        refused_on_hearing = sum(lim.info()["spent_heard"] for lim in limiters)
        # hubs that hear did refuse on what they heard; pub/sub hubs asked instead
        assert (refused_on_hearing > 0) is (invalidation == "auto")


async def test_a_listener_blip_mid_window_forgets_what_was_heard_and_asks_instead(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    # what was heard before a lost connection may be incomplete: it is forgotten, and a hub
    # that cannot prove a window spent asks Redis (refused there), never admits beyond it
    server = lowtide_fresh_server
    async with two_hubs(server, "blip", "auto") as (_, b, la, lb, w):
        assert [(await la.acquire("t1")).allowed for _ in range(2)] == [True, True]
        heard = heard_by(lb)
        await eventually(lambda: heard.heard("t1", w) >= 2)
        lost: list[object] = []
        b.invalidations.subscribe(lost.append)
        server.command("CLIENT", "KILL", "TYPE", "pubsub")  # every listener's connection dies
        await eventually(lambda: None in lost)
        assert heard.heard("t1", w) == 0  # forgotten
        before = ledger_commands(b, component="limiter")
        assert not (await lb.acquire("t1")).allowed  # asked: refused by the fleet counter
        # one SET NX ... GET that found the counter at the limit (nothing added to it)
        assert changes(before, ledger_commands(b, component="limiter")) == {"set": 1}
        key = build_key("lt", "limiter", "blip", "t1", f"w{w}")
        assert int(server.command("GET", key)) == 2
        assert lb.info()["spent_heard"] == 0


async def test_keyspace_classes_someone_else_set_are_not_counted_as_reservations() -> None:
    # with `n` (a `new` event for every key created) and `m` (key misses) set by an operator,
    # a window's first reservation is still one change: events new, set, expire
    with ValkeyServer() as server:
        server.command("CONFIG", "SET", "notify-keyspace-events", "KEAnm")
        async with two_hubs(server, "classes", "keyspace") as (a, b, la, lb, w):
            assert (await la.acquire("t1")).allowed  # SET NX PX: the key is new
            await listeners_caught_up([a, b])
            assert heard_by(lb).heard("t1", w) == 1
            assert (await lb.acquire("t1")).allowed  # the second token is b's
