"""The lag-tolerant deadline (no server: asyncio only).

These tests call ``time.sleep`` inside loop callbacks on purpose: a blocked event loop is the
condition under test, and no injected clock can block a real loop.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lowtide.redis.deadline import deadline


async def test_expires_on_time_when_the_loop_is_responsive() -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadline(0.1, cap=5.0):
            await asyncio.sleep(10)
    assert 0.09 <= time.monotonic() - t0 < 0.5


async def test_a_stalled_loop_is_not_blamed_on_the_awaited_reply() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.01, reply.set_result, "pong")  # the reply arrives after 10 ms ...
    loop.call_later(0.005, time.sleep, 0.3)  # ... but the loop is blocked for 300 ms
    async with deadline(0.1, cap=5.0):
        assert await reply == "pong"


async def test_a_plain_timeout_blames_the_reply_in_the_same_situation() -> None:
    # the failure the deadline exists for, shown with asyncio.timeout
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.05, reply.set_result, "pong")
    loop.call_later(0.005, time.sleep, 0.3)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await reply


async def test_the_cap_bounds_a_loop_that_never_recovers() -> None:
    loop = asyncio.get_running_loop()
    stalling = True

    def stall() -> None:
        time.sleep(0.05)
        if stalling:
            loop.call_soon(stall)

    loop.call_soon(stall)
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            async with deadline(0.05, cap=0.4):
                await asyncio.sleep(10)
    finally:
        stalling = False
    elapsed = time.monotonic() - t0
    assert 0.35 <= elapsed < 1.5


async def test_a_stall_early_in_the_window_does_not_eat_the_replys_time() -> None:
    # the loop is blocked for 0.45 s of a 0.5 s deadline, then the awaited work needs 0.2 s of
    # a free loop: looking only at the end (on time, the loop is free then) would expire it
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, time.sleep, 0.45)
    t0 = time.monotonic()
    async with deadline(0.5, cap=5.0):
        await asyncio.sleep(0.02)  # wakes when the stall ends
        await asyncio.sleep(0.2)
    assert time.monotonic() - t0 >= 0.6


async def test_after_a_stall_it_still_expires_once_the_loop_ran_freely_for_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, time.sleep, 0.3)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadline(0.2, cap=5.0):
            await asyncio.sleep(10)
    # 0.3 s stalled (not counted), then 0.2 s of a free loop; a look may lose one step
    assert 0.45 <= time.monotonic() - t0 < 1.0
