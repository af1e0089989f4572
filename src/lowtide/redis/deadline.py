"""A timeout that does not blame the server for the event loop's own stalls.

A plain ``asyncio.timeout(1.0)`` around a Redis command fires when one second of *loop time*
has passed, even if the reply arrived after 1 ms and only sat unread because the loop was busy
(10,000 tasks started at once, a blocking call in a request handler, a long garbage
collection). The hub would then take a healthy server for an outage and degrade.

:func:`deadline` counts only *responsive* loop time. It looks at the clock every
``timeout / STEPS`` seconds while the block runs (a command that finishes sooner never wakes
it): a look that comes on time credits the interval since the previous one; a look that comes
late by more than ``tolerance`` proves the loop was stalled somewhere in that interval, so the
interval is not counted. The block expires once ``timeout`` seconds were credited, or
``cap`` seconds after entry whatever the loop did. A stall early in the window therefore does
not eat the time the reply needs once the loop runs again (looking only once, at the end,
would have blamed the reply whenever the loop happened to be free at that moment).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

__all__ = [
    "ITEM_BYTES",
    "PER_ITEM",
    "STEPS",
    "batch_weight",
    "deadline",
    "round_trip_allowance",
    "round_trip_cap",
]

#: looks at the clock per ``timeout``: a stall shorter than ``timeout / STEPS`` can hide
#: between two looks, so at most that much of a stalled loop is ever blamed on the server
STEPS = 8


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
    step = timeout / STEPS
    late_by = tolerance if tolerance is not None else max(0.01, step / 2)
    credited = 0.0
    async with asyncio.timeout(None) as scope:
        handle: asyncio.TimerHandle | None = None

        def look(last: float, due: float) -> None:
            nonlocal handle, credited
            now = loop.time()
            if now - due <= late_by:
                credited += now - last  # on time: the loop ran freely since the last look
            if credited >= timeout or now - start >= cap:
                scope.reschedule(now)  # expire: the block gets CancelledError -> TimeoutError
                return
            nxt = min(now + max(min(step, timeout - credited), 0.001), start + cap)
            handle = loop.call_at(nxt, look, now, nxt)

        first = start + step
        handle = loop.call_at(first, look, start, first)
        try:
            yield
        finally:
            handle.cancel()


# -- how long a round trip may take ------------------------------------------------------
def round_trip_cap(op_timeout: float) -> float:
    """Longest a command may take while the event loop keeps stalling (see deadline)."""
    return max(10 * op_timeout, 5.0)


#: time a round trip may take per command (or key) it carries beyond the first, on top of
#: ``op_timeout``: encoding, the server's work and parsing grow with a batch (35-45 us per
#: ``SET`` of a ``set_many`` measured on a 2-vCPU machine under load), so a 25,000-key batch
#: on a busy machine is not an outage
PER_ITEM = 250e-6


def round_trip_allowance(items: int) -> float:
    """Extra seconds a round trip of ``items`` commands or keys may take (see PER_ITEM)."""
    return max(0, items - 1) * PER_ITEM


#: an argument this large counts as one item more per this many bytes (a PUBLISH naming
#: 10,000 keys is one command carrying ~300 KB: 0.25 ms per KB is a 4 MB/s link)
ITEM_BYTES = 1024


def batch_weight(commands: Sequence[Sequence[Any]]) -> int:
    """Items a pipeline carries: 1 per command, plus 1 per :data:`ITEM_BYTES` of any large
    argument."""
    n = len(commands)
    for cmd in commands:
        for arg in cmd:
            if isinstance(arg, bytes | str) and len(arg) > ITEM_BYTES:
                n += len(arg) // ITEM_BYTES
    return n
