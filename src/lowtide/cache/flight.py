"""Single-flight: concurrent callers of one key in this process share one read or one load.

:meth:`SingleFlight.join` starts the flight (an asyncio task) for a key, or joins the one
already running; a caller that is cancelled never cancels the shared flight (it is shielded).
With ``soft=True`` and a last good value in L1, a caller is not held past ``soft_timeout``:
:class:`SoftTimeout` carries that value back, and the flight goes on and fills L1 when it lands.

Background refreshes (:meth:`SingleFlight.in_background`) join the same flights, so a refresh
and a caller's load of one key are one load; their tasks are owned by a
:class:`~lowtide._tasks.BackgroundTasks` and cancelled by :meth:`SingleFlight.aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lowtide._tasks import BackgroundTasks
from lowtide.cache.options import CacheStats
from lowtide.cache.store import Entry, Key
from lowtide.errors import LowtideError

__all__ = ["SingleFlight", "SoftTimeout"]


class SoftTimeout(Exception):
    """A read or load outlived the soft timeout while a last good value was available."""

    def __init__(self, value: Any) -> None:
        super().__init__("soft timeout")
        self.value = value


class SingleFlight:
    """The flights of one kind of work (L2 reads, or loads) of one cache, by key."""

    __slots__ = ("_background", "_flights", "_has_stale", "_lookup", "_soft_timeout", "_stats")

    def __init__(
        self,
        stats: CacheStats,
        *,
        soft_timeout: float | None,
        lookup: Callable[[Key], Entry | None],
        has_stale: Callable[[Key], bool],
        log: logging.Logger,
        what: str,
    ) -> None:
        self._flights: dict[Key, asyncio.Future[Any]] = {}
        self._stats = stats
        self._soft_timeout = soft_timeout
        #: the L1 entry of a key, and whether it holds a value fail-safe may serve
        self._lookup = lookup
        self._has_stale = has_stale
        self._background = BackgroundTasks(log, what, level=logging.DEBUG)

    def __contains__(self, k: object) -> bool:
        return k in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    def _flight(self, k: Key, start: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        flights = self._flights
        fut = flights.get(k)
        if fut is not None:
            self._stats.coalesced += 1
            return fut
        fut = asyncio.ensure_future(start())
        flights[k] = fut

        def done(f: asyncio.Future[Any], k: Key = k) -> None:
            if flights.get(k) is f:
                del flights[k]
            if not f.cancelled():
                f.exception()  # retrieved here so an unawaited failure is not logged

        fut.add_done_callback(done)
        return fut

    async def join(self, k: Key, start: Callable[[], Awaitable[Any]], *, soft: bool = False) -> Any:
        """The result of the flight of ``k``, started with ``start()`` unless one is running.

        ``soft``: when L1 holds a last good value, raise :class:`SoftTimeout` with it after
        ``soft_timeout`` seconds (unless the entry was replaced or invalidated meanwhile: then
        wait for the answer).
        """
        fut = self._flight(k, start)
        soft_timeout = self._soft_timeout
        if soft and soft_timeout is not None and self._has_stale(k):
            # a last good value exists: do not hold the caller past the soft timeout; the
            # flight goes on in the background and fills L1 when it lands. The value is taken
            # now: a push or an eviction during the wait must not turn it into None.
            entry = self._lookup(k)
            last_good = entry.value if entry is not None else None
            try:
                return await asyncio.wait_for(_outcome(fut), soft_timeout)
            except TimeoutError:
                now = self._lookup(k)
                if now is not entry or (now is not None and now.superseded):
                    return await _outcome(fut)  # replaced or pushed meanwhile: wait
                self._stats.soft_timeouts += 1
                self._stats.stale_served += 1
                raise SoftTimeout(last_good) from None
        return await _outcome(fut)

    def in_background(self, k: Key, start: Callable[[], Awaitable[Any]]) -> None:
        """Join (or start) the flight of ``k`` from a background task owned here."""
        self._background.spawn(self.join(k, start))

    async def aclose(self) -> None:
        """Cancel the background tasks and every flight still running (a load a soft timeout
        left behind included), and wait for them: nothing runs on after the cache is closed."""
        await self._background.aclose()
        flights = list(self._flights.values())
        for fut in flights:
            fut.cancel()
        if flights:
            await asyncio.wait(flights, timeout=5.0)


async def _outcome(fut: asyncio.Future[Any]) -> Any:
    """The result of a shared flight; a caller is not cancelled with it.

    A flight cancelled because its cache closed raises :class:`LowtideError` in the callers
    still waiting (their own cancellation still propagates as CancelledError).
    """
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if fut.cancelled() and (task is None or not task.cancelling()):
            raise LowtideError("the cache was closed while this read or load ran") from None
        raise
