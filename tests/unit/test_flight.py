"""Single-flight with no server: one flight per key, shielded from cancelled callers, and the
soft timeout that answers with the last good value."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lowtide.cache.flight import SingleFlight, SoftTimeout
from lowtide.cache.options import CacheStats
from lowtide.cache.store import Entry, Key
from lowtide.errors import LowtideError

K: Key = ("t", "k")


def flights(
    entries: dict[Key, Entry] | None = None, soft_timeout: float | None = 0.01
) -> tuple[SingleFlight, CacheStats]:
    stats = CacheStats()
    held = entries if entries is not None else {}
    sf = SingleFlight(
        stats,
        soft_timeout=soft_timeout,
        lookup=held.get,
        has_stale=lambda k: k in held,
        log=logging.getLogger("test"),
        what="test",
    )
    return sf, stats


def entry(value: object) -> Entry:
    return Entry(value, size=0, epoch=0, fresh_until=0, stale_until=1e9)


async def test_concurrent_callers_share_one_flight() -> None:
    sf, stats = flights()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "v"

    assert await asyncio.gather(*(sf.join(K, work) for _ in range(20))) == ["v"] * 20
    assert calls == 1
    assert stats.coalesced == 19
    assert K not in sf  # forgotten once done: the next caller starts a new flight
    assert await sf.join(K, work) == "v"
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_flight() -> None:
    sf, _ = flights()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "v"

    first = asyncio.ensure_future(sf.join(K, work))
    second = asyncio.ensure_future(sf.join(K, work))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "v"


async def test_a_failed_flight_fails_every_caller_and_is_forgotten() -> None:
    sf, _ = flights()

    async def work() -> str:
        await asyncio.sleep(0)
        raise RuntimeError("down")

    results = await asyncio.gather(sf.join(K, work), sf.join(K, work), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(sf) == 0


async def test_soft_timeout_answers_with_the_last_good_value_and_the_flight_goes_on() -> None:
    held = {K: entry("old")}
    sf, stats = flights(held)
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "new"

    with pytest.raises(SoftTimeout) as slow:
        await sf.join(K, work, soft=True)
    assert slow.value.value == "old"
    assert stats.soft_timeouts == stats.stale_served == 1
    assert K in sf  # still running
    gate.set()
    assert await sf.join(K, work) == "new"


async def test_soft_timeout_waits_when_the_entry_changed_meanwhile() -> None:
    held = {K: entry("old")}
    sf, stats = flights(held)

    async def work() -> str:
        held[K] = entry("pushed")  # an invalidation or a fill replaced it during the wait
        await asyncio.sleep(0.05)
        return "new"

    assert await sf.join(K, work, soft=True) == "new"
    assert stats.soft_timeouts == 0


async def test_no_soft_timeout_without_a_last_good_value() -> None:
    sf, _ = flights({})

    async def work() -> str:
        await asyncio.sleep(0.03)
        return "v"

    assert await sf.join(K, work, soft=True) == "v"


async def test_a_background_join_shares_the_flight_and_is_cancelled_on_close() -> None:
    sf, stats = flights()
    gate = asyncio.Event()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "v"

    sf.in_background(K, work)  # an eager refresh
    await asyncio.sleep(0)
    caller = asyncio.ensure_future(sf.join(K, work))
    await asyncio.sleep(0)
    assert calls == 1
    assert stats.coalesced == 1
    await sf.aclose()  # cancels the background join and the flight itself
    gate.set()
    with pytest.raises(LowtideError, match="closed"):  # a typed error, not a CancelledError
        await caller
    assert calls == 1
