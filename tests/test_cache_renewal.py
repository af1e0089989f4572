"""Copies capped by ``max_staleness`` are read again in batches before they lapse
(``lowtide.cache.renew``): one MGET per look for every copy read since its fill, instead of one
GET per key per process per ``max_staleness``. Real servers, real hubs; costs from the ledger
and the server's ``INFO commandstats``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from lowtide import Cache, Lowtide
from lowtide.cache.renew import IDLE_RENEWALS
from lowtide.integrations.prometheus import LowtideCollector
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.helpers import eventually

BOUND = 1.2  # max_staleness: a look every 0.4 s
TENANTS = ("t1", "t2", "t3")
KEYS = [(t, f"k{i}") for t in TENANTS for i in range(10)]


async def keep_reading(cache: object, seconds: float, keys: list[tuple[str, str]]) -> None:
    """Read every key every 50 ms for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for tenant, key in keys:
            assert await cache.get(key, tenant=tenant) == f"{tenant}/{key}"  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def writer_and_reader(
    url: str, writer_mode: str
) -> AsyncIterator[tuple[Cache, Cache, Lowtide, Lowtide]]:
    """The caches (max_staleness ``BOUND``) of a writer hub in ``writer_mode`` (``ttl``: its
    writes publish nothing) and of a pub/sub reader hub, then the two hubs."""
    async with (
        Lowtide(url, instance="writer", invalidation=writer_mode) as writer,
        Lowtide(url, instance="reader", invalidation="pubsub") as reader,
    ):
        assert await reader.invalidations.wait_healthy(5)
        w = writer.cache("profiles", ttl=60, max_staleness=BOUND)
        r = reader.cache("profiles", ttl=60, max_staleness=BOUND)
        yield w, r, writer, reader


async def test_copies_read_since_their_fill_are_renewed_in_one_mget_per_look(
    lowtide_server: ValkeyServer, lowtide_url: str
) -> None:
    async with writer_and_reader(lowtide_url, "pubsub") as (w, r, writer, reader):
        for tenant, key in KEYS:
            await w.set(key, f"{tenant}/{key}", tenant=tenant)
        before = ledger_commands(reader, component="cache")
        server0 = server_commands(lowtide_server)
        await keep_reading(r, 3 * BOUND, KEYS)  # 30 keys, 3 bounds: 90 re-reads without renewal
        spent = changes(before, ledger_commands(reader, component="cache"))
        assert spent.get("get", 0) == len(KEYS)  # each key read once, then served from L1
        looks = spent.get("mget", 0)
        assert 3 <= looks <= 3 * 3 + 1  # at most one per look (every 0.4 s), none per key
        assert r.stats.renewed >= 2 * len(KEYS)  # every copy renewed at least twice
        assert r.stats.renewals == looks
        assert r.info()["renewed"] == r.stats.renewed
        registry = CollectorRegistry()
        LowtideCollector(reader).register(registry)
        assert registry.get_sample_value(
            "lowtide_cache_renewed_total", {"component": "cache", "cache": "profiles"}
        ) == float(r.stats.renewed)
        # the server counted the same (the writer renews the copies its writes left it, too);
        # renewals are charged to no tenant
        server = changes(server0, server_commands(lowtide_server), minus={"info": 1})
        writer_looks = ledger_commands(writer, component="cache", command="mget").get("mget", 0)
        assert w.stats.renewals == writer_looks
        assert server == {"get": len(KEYS), "mget": looks + writer_looks}
        assert ledger_commands(reader, component="cache", command="mget", tenant=None) == {
            "mget": looks
        }


async def test_a_write_nobody_announced_is_seen_within_max_staleness(lowtide_url: str) -> None:
    # a ttl-mode hub writes without publishing: the backplane hears nothing, renewal sees it
    async with writer_and_reader(lowtide_url, "ttl") as (s, r, _, reader):
        await s.set("k", "v1", tenant="t1")
        assert await r.get("k", tenant="t1") == "v1"
        reads: list[tuple[float, object]] = []  # (when the read began, what it answered)

        async def reading() -> None:
            while True:
                began = time.monotonic()
                reads.append((began, await r.get("k", tenant="t1")))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(reading())
        try:
            await asyncio.sleep(BOUND)  # renewed at least once meanwhile
            assert r.stats.renewed >= 1
            gets = ledger_commands(reader, component="cache", command="get")
            await s.set("k", "v2", tenant="t1")
            changed = time.monotonic()
            await asyncio.sleep(BOUND + 0.5)
        finally:
            task.cancel()
        # the promise: no read that began more than max_staleness after the write answers v1
        late = [value for began, value in reads if began > changed + BOUND]
        assert late
        assert set(late) == {"v2"}
        # seen through a renewal's MGET, not through a read's GET
        assert ledger_commands(reader, component="cache", command="get") == gets


async def test_copies_nobody_reads_are_renewed_a_few_times_then_left_to_lapse(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url, instance="reader", invalidation="pubsub") as hub:
        assert await hub.invalidations.wait_healthy(5)
        c = hub.cache("profiles", ttl=60, max_staleness=BOUND)
        await c.set("read-once", "a", tenant="t1")
        await c.set("never-read", "b", tenant="t1")
        assert await c.get("read-once", tenant="t1") == "a"  # a hit after the write's fill
        # each renewal buys 2/3 of the bound: IDLE_RENEWALS + 1 renewals and the last life
        await eventually(
            lambda: c.peek("read-once", tenant="t1") is None, within=(IDLE_RENEWALS + 3) * BOUND
        )
        await asyncio.sleep(BOUND)
        # "read-once" was renewed once because it was read, then IDLE_RENEWALS times unread;
        # "never-read" IDLE_RENEWALS times; both in the same MGETs (their lives are in step)
        assert c.stats.renewed == 2 * IDLE_RENEWALS + 1
        assert c.stats.renewals == IDLE_RENEWALS + 1
        assert ledger_commands(hub, component="cache", command="mget") == {
            "mget": IDLE_RENEWALS + 1
        }
        assert c.peek("never-read", tenant="t1") is None  # lapsed
        assert ledger_commands(hub, component="cache", command="get") == {}


async def test_verified_tracking_renews_nothing(lowtide_url: str) -> None:
    # with CLIENT TRACKING verified (3 keepalives within max_staleness) copies are not capped
    async with Lowtide(lowtide_url, instance="reader", invalidation="tracking") as hub:
        hub.invalidations.keepalive = 0.3
        assert await hub.invalidations.wait_healthy(5)
        await eventually(lambda: hub.invalidations.pushed_keepalive is not None)
        c = hub.cache("profiles", ttl=60, max_staleness=BOUND)
        for tenant, key in KEYS:
            await c.set(key, f"{tenant}/{key}", tenant=tenant)
        before = ledger_commands(hub, component="cache")
        await keep_reading(c, 2 * BOUND, KEYS)
        assert changes(before, ledger_commands(hub, component="cache")) == {}
        assert c.stats.renewals == 0


async def test_a_renewed_value_that_vanished_is_dropped_and_read_as_absent(
    lowtide_url: str,
) -> None:
    async with writer_and_reader(lowtide_url, "ttl") as (s, r, _, _):
        await s.set("k", "v1", tenant="t1")
        assert await r.get("k", tenant="t1") == "v1"
        assert await r.get("k", tenant="t1") == "v1"  # read since its fill
        await s.delete("k", tenant="t1")  # no message
        await eventually(lambda: r.stats.renewed >= 1, within=BOUND + 1)
        assert r.peek("k", tenant="t1") is None  # the renewal found nothing: no copy
        assert await r.get("k", tenant="t1") is None


@contextlib.asynccontextmanager
async def reading_driver(hub: Lowtide, cache: Cache) -> AsyncIterator[None]:
    """Keep a long-lived copy read on ``cache`` (so every look sends an MGET), in the
    background, while the block runs."""
    await cache.set("driver", "d", ttl=60, tenant="t1")

    async def read() -> None:
        while True:
            assert await cache.get("driver", tenant="t1") == "d"
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(read())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


LOOK_BOUND = 3.0  # max_staleness: a look every second, one look is how long "gone" holds
SHORT = 1.5  # the Redis life of the key that expires


def loader_of(value: str, calls: list[str]) -> object:
    async def load() -> str:
        calls.append(value)
        return value

    return load


async def found_gone(cache: Cache, calls: list[str]) -> None:
    """Load "k" of t1 with a Redis life of ``SHORT``; return once a look found it expired."""
    assert await cache.get_or_load("k", loader_of("v1", calls), ttl=SHORT, tenant="t1") == "v1"
    entry = cache._store.map[("t1", "k")]
    await eventually(lambda: entry.gone and entry.absent_at > 0, within=SHORT + 3)


async def test_an_expired_copy_found_gone_by_a_look_is_loaded_without_a_get(
    lowtide_server: ValkeyServer, lowtide_url: str
) -> None:
    # the copy's Redis value expires; the next look's MGET (sent anyway for other copies)
    # finds it gone, so a load before the look after skips its GET: 1 SET NX GET, not 2
    async with Lowtide(lowtide_url, instance="a", invalidation="pubsub") as hub:
        assert await hub.invalidations.wait_healthy(5)
        c = hub.cache("profiles", ttl=60, max_staleness=LOOK_BOUND)
        calls: list[str] = []
        async with reading_driver(hub, c):
            await found_gone(c, calls)
            before = ledger_commands(hub, component="cache")
            server0 = server_commands(lowtide_server)
            known = c.stats.known_absent
            assert await c.get_or_load("k", loader_of("v2", calls), ttl=SHORT, tenant="t1") == "v2"
            spent = changes(before, ledger_commands(hub, component="cache"))
            spent.pop("mget", None)  # a look may fall in between
            assert spent == {"set": 1}
            assert c.stats.known_absent == known + 1
            server = changes(server0, server_commands(lowtide_server), minus={"info": 1})
            server.pop("mget", None)
            assert server == {"set": 1}
        assert calls == ["v1", "v2"]
        assert lowtide_server.command("PTTL", c._l2.key(("t1", "k"))) > 0


async def test_a_copy_refilled_elsewhere_after_its_expiry_comes_with_the_next_look(
    lowtide_url: str,
) -> None:
    # another process loads the key after the expiry: the look's MGET brings its value, and
    # the next read here is answered from memory (no GET, no load)
    async with (
        Lowtide(lowtide_url, instance="a", invalidation="pubsub") as a,
        Lowtide(lowtide_url, instance="b", invalidation="pubsub") as b,
    ):
        for hub in (a, b):
            assert await hub.invalidations.wait_healthy(5)
        ca = a.cache("profiles", ttl=60, max_staleness=LOOK_BOUND)
        cb = b.cache("profiles", ttl=60, max_staleness=LOOK_BOUND)
        calls: list[str] = []
        async with reading_driver(a, ca):
            await found_gone(ca, calls)
            assert await cb.get_or_load("k", loader_of("v2", calls), ttl=60, tenant="t1") == "v2"
            await eventually(lambda: ca.peek("k", tenant="t1") == "v2", within=3)
            before = ledger_commands(a, component="cache")
            assert await ca.get_or_load("k", loader_of("v3", calls), tenant="t1") == "v2"
            assert changes(before, ledger_commands(a, component="cache")) == {}
        assert calls == ["v1", "v2"]


async def test_expiring_copies_send_no_mget_of_their_own(lowtide_url: str) -> None:
    # nothing else is due: the expired copy is not checked, and a load asks first as before
    async with Lowtide(lowtide_url, instance="a", invalidation="pubsub") as hub:
        assert await hub.invalidations.wait_healthy(5)
        c = hub.cache("profiles", ttl=60, max_staleness=LOOK_BOUND)
        calls: list[str] = []
        assert await c.get_or_load("k", loader_of("v1", calls), ttl=SHORT, tenant="t1") == "v1"
        await asyncio.sleep(SHORT + 2 * LOOK_BOUND / 3)  # expired, two looks later
        assert ledger_commands(hub, component="cache", command="mget") == {}
        before = ledger_commands(hub, component="cache")
        assert await c.get_or_load("k", loader_of("v2", calls), ttl=SHORT, tenant="t1") == "v2"
        assert changes(before, ledger_commands(hub, component="cache")) == {"get": 1, "set": 1}
