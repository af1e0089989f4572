"""Hostile data on a real server (issue 19, items 2 and 3): pushed messages and planted values.

Whatever is PUBLISHed on lowtide's channel or planted in its keys is checked for type, range and
size before use; bad data is counted and ignored, never a stalled loop or a value returned.
Each test plants with the harness's raw client (no lowtide code on the write side).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from lowtide import (
    Lowtide,
    SerializationError,
    ValueTooLarge,
    build_key,
)
from lowtide.cache.envelope import unwrap, wrap
from lowtide.testing import ValkeyServer, ledger_total
from tests.helpers import eventually
from tests.production.hostile import CODEC, plant, plant_heard

MAX_GAP = 0.2  # seconds a 10 ms ticker may be held up


class Ticker:
    """A task that sleeps 10 ms at a time and records the longest gap between wake-ups."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now


@asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.get_running_loop().create_task(ticker.run())
    await asyncio.sleep(0.05)
    try:
        yield ticker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- item 2: pushed messages -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "channel"), [("pubsub", "lt:invalidate"), ("tracking", "__redis__:invalidate")]
)
async def test_huge_pushed_messages_do_not_stall_the_loop_and_the_hub_stays_correct(
    lowtide_fresh_server: ValkeyServer, mode: str, channel: str
) -> None:
    server = lowtide_fresh_server
    async with (
        Lowtide(server.url, invalidation=mode, instance="a") as a,
        Lowtide(server.url, invalidation=mode, instance="b") as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ca, cb = a.cache("profiles"), b.cache("profiles")
        await ca.set("k", 1, tenant="t")
        assert await ca.get("k", tenant="t") == 1
        inv = a.invalidations
        hostile = [
            b"\n" * (8 << 20),  # 8 MB of newlines
            "\n".join(f"lt:c:profiles:t:k{i}" for i in range(100_000)).encode(),  # 100K keys
        ]
        for n, payload in enumerate(hostile, start=1):
            async with ticking() as ticker:
                await asyncio.to_thread(server.command, "PUBLISH", channel, payload)
                await eventually(lambda n=n: inv.info()["oversized_messages"] == n)
                await asyncio.sleep(0.05)
            assert ticker.max_gap < MAX_GAP, ticker.max_gap
        info = inv.info()
        assert info["oversized_messages"] == 2
        assert inv.healthy
        # read as a flush: the copy is demoted and read again (1 GET), never trusted blindly
        spent = ledger_total(a, component="cache")
        assert await ca.get("k", tenant="t") == 1
        assert ledger_total(a, component="cache") == spent + 1
        # and pushes keep working: another hub's write reaches a
        await cb.set("k", 2, tenant="t")
        await eventually(lambda: ca.peek("k", tenant="t") is None)
        assert await ca.get("k", tenant="t") == 2


async def test_keys_that_are_not_lowtides_are_skipped_and_counted(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, invalidation="pubsub") as lt:
        inv = lt.invalidations
        assert await inv.wait_healthy(5)
        cache = lt.cache("profiles")
        await cache.set("k", 1, tenant="t")
        await cache.set("other", 1, tenant="t")
        assert cache.peek("other", tenant="t") == 1
        server.command(
            "PUBLISH",
            "lt:invalidate",
            b"not-ours\n\n\xff\xfe\nlt:c:profiles:t:k\n" + b"lt:c:" + b"x" * 100_000,
        )
        await eventually(lambda: inv.info()["malformed_messages"] == 1)
        assert inv.info()["skipped_keys"] == 4
        assert inv.info()["oversized_messages"] == 0
        assert cache.peek("k", tenant="t") is None  # the one real key was applied
        assert cache.peek("other", tenant="t") == 1  # and nothing else was flushed


async def test_a_large_set_many_is_published_in_batches_a_reader_never_takes_for_a_flush(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with (
        Lowtide(server.url, invalidation="pubsub", instance="a") as a,
        Lowtide(server.url, invalidation="pubsub", instance="b") as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ca, cb = a.cache("bulk"), b.cache("bulk")
        await cb.set("unrelated", "v", tenant="t")
        await ca.set("k3", "old", tenant="t")
        assert await cb.get("k3", tenant="t") == "old"
        received = b.invalidations.received
        await ca.set_many({f"k{i}": i for i in range(25_000)}, tenant="t")
        await eventually(lambda: b.invalidations.received >= received + 3)
        assert b.invalidations.info()["oversized_messages"] == 0
        assert cb.peek("k3", tenant="t") is None  # every key reached b
        assert cb.peek("unrelated", tenant="t") == "v"  # and nothing else was flushed
        assert await cb.get("k3", tenant="t") == 3


# -- item 3: oversized and invalid planted values ------------------------------------------------
def gets(hub: Lowtide, component: str) -> int:
    return ledger_total(hub, component=component, command="get")


async def test_a_planted_value_over_the_limit_is_refused_once_and_not_downloaded_again(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        cache = lt.cache("profiles")  # max_value_bytes: 1 MiB (the settings' default)
        rk = build_key("lt", "cache", "profiles", "t", "big")
        await plant_heard(lt, server, rk, "x" * (32 << 20))  # 32 MiB
        for _ in range(5):
            with pytest.raises(ValueTooLarge) as info:
                await cache.get("big", tenant="t")
            assert info.value.size > info.value.limit == 1 << 20
        assert gets(lt, "cache") == 1  # downloaded once, not five times
        stats = cache.info()
        assert (stats["unreadable"], stats["oversized"], stats["unreadable_hits"]) == (1, 1, 4)
        # get_or_load loads and overwrites it, like any unreadable value
        loaded = await cache.get_or_load("big", _const("small"), tenant="t")
        assert loaded == "small"
        assert unwrap(server.command("GET", rk))[1] == CODEC.encode("small")
        assert await cache.get("big", tenant="t") == "small"
        # exactly at the limit is a value like any other
        at_limit = "y" * ((1 << 20) - 3)  # tag + two quotes
        assert len(CODEC.encode(at_limit)) == 1 << 20
        plant(server, build_key("lt", "cache", "profiles", "t", "edge"), at_limit)
        assert await cache.get("edge", tenant="t") == at_limit


async def test_a_push_makes_a_refused_key_readable_again(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        cache = lt.cache("small", max_value_bytes=100)
        rk = build_key("lt", "cache", "small", "t", "k")
        await plant_heard(lt, server, rk, "x" * 1000)
        with pytest.raises(ValueTooLarge):
            await cache.get("k", tenant="t")
        with pytest.raises(ValueTooLarge):
            await cache.get("k", tenant="t")  # remembered: no command
        received = lt.invalidations.received
        server.command("SET", rk, b"garbage")  # still unreadable, and the push is heard
        await eventually(lambda: lt.invalidations.received > received)
        with pytest.raises(SerializationError):
            await cache.get("k", tenant="t")
        await plant_heard(lt, server, rk, "fine")
        assert await cache.get("k", tenant="t") == "fine"
        assert gets(lt, "cache") == 3
        assert cache.info()["unreadable"] == 2


@pytest.mark.parametrize(
    "planted",
    [
        "t" * (4 << 20),
        "",
        "t" * 257,
        42,
        ["t1"],
        {"tenant": "t1"},
        None,
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
    ids=["4MiB", "empty", "257-chars", "int", "list", "dict", "null", "bad-utf8"],
)
async def test_tenant_ids_read_back_are_validated_like_ids_written(
    lowtide_fresh_server: ValkeyServer, planted: object
) -> None:
    server = lowtide_fresh_server
    calls: list[str] = []

    async def find(connector: str, external_id: str) -> str | None:
        calls.append(external_id)
        return "t-real"

    async with Lowtide(server.url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        rk = build_key("lt", "tenants", "slack", None, "T1")
        if isinstance(planted, bytes):
            server.command("SET", rk, wrap(b'j"' + planted + b'"', 0))
        else:
            plant(server, rk, planted)
        plain = lt.tenants()
        assert await plain.resolve("slack", "T1") is None  # never the planted value
        assert plain.stats["unreadable"] == 1
        assert plain.cache("slack").info()["unreadable"] == 1
        with_loader = Lowtide(server.url, instance="other")
        async with with_loader:
            assert await with_loader.invalidations.wait_healthy(5)
            resolver = with_loader.tenants(loader=find)
            assert await resolver.resolve("slack", "T1") == "t-real"  # loaded again
            assert calls == ["T1"]
        assert unwrap(server.command("GET", rk))[1] == CODEC.encode("t-real")  # overwritten
        await asyncio.sleep(0.05)
        assert await plain.resolve("slack", "T1") == "t-real"


def _const(value: object) -> Callable[[], Awaitable[object]]:
    async def load() -> object:
        return value

    return load
