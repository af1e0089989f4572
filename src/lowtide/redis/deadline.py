"""A timeout that does not blame the server for the event loop's own stalls.

A plain ``asyncio.timeout(1.0)`` around a Redis command fires when one second of *loop time*
has passed, even if the reply arrived after 1 ms and only sat unread because the loop was busy
(10,000 tasks started at once, a blocking call in a request handler). The hub would then take
a healthy server for an outage and degrade.

:func:`deadline` checks, when it is due, whether it fired on time. If it fired late by more
than ``tolerance``, the loop was stalled, so the wait proves nothing about the server: it gives
the task another slice (the reply, if it arrived, is then read) and checks again. It expires
only when it fires on time, or when ``cap`` seconds have passed in total.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["deadline"]


@asynccontextmanager
async def deadline(
    timeout: float,  # noqa: ASYNC109
    *,
    cap: float,
    tolerance: float | None = None,
) -> AsyncIterator[None]:
    """Raise ``TimeoutError`` in the block after ``timeout`` seconds of responsive loop time
    (see module docs); never later than ``cap`` seconds after entry."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    late_by = tolerance if tolerance is not None else max(0.05, timeout / 10)
    async with asyncio.timeout(None) as scope:
        handle: asyncio.TimerHandle | None = None

        def check(due: float) -> None:
            nonlocal handle
            now = loop.time()
            if now - due > late_by and now - start < cap:
                # fired late: the loop was stalled; let the task run, then look again
                again = now + max(late_by, min(timeout, now - due))
                handle = loop.call_at(again, check, again)
            else:
                scope.reschedule(now)  # expire: the block gets CancelledError -> TimeoutError

        first = start + timeout
        handle = loop.call_at(first, check, first)
        try:
            yield
        finally:
            handle.cancel()
