"""``cancel_and_wait`` ends a task whose first cancellation was lost (no server)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from lowtide._tasks import cancel_and_wait


async def test_a_task_that_drops_a_cancellation_is_cancelled_again() -> None:
    # what Python 3.11's asyncio.wait_for does when its inner future completes in the same
    # loop turn as the cancellation: the task runs on, to its next await
    lost = 0

    async def drops_one() -> None:
        nonlocal lost
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            lost += 1
        await asyncio.sleep(10)

    task = asyncio.create_task(drops_one())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await cancel_and_wait([task], timeout=5)
    assert task.cancelled()
    assert lost == 1
    assert time.monotonic() - t0 < 1


async def test_the_timeout_bounds_a_task_that_never_ends() -> None:
    stubborn = True

    async def refuses() -> None:
        while stubborn:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(refuses())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await cancel_and_wait([task], timeout=0.3)
    assert not task.done()
    assert 0.25 <= time.monotonic() - t0 < 1.5
    stubborn = False
    task.cancel()
    await asyncio.wait([task])
    assert task.done()
