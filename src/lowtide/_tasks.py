"""``BackgroundTasks``: the one way lowtide runs work in the background.

A spawned task is kept (so it cannot be garbage-collected mid-flight), its outcome is always
retrieved (so asyncio never logs "exception was never retrieved"), an unexpected failure is
logged at the owner's chosen level, and :meth:`BackgroundTasks.aclose` cancels *and awaits*
every task still running, bounded by a timeout so a stuck socket cannot hold shutdown.

A cancellation can be lost: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses around a
socket write when a socket timeout is set) returns the inner result and drops the cancellation
when both arrive in the same loop turn, and the task runs on. :func:`cancel_and_wait` cancels
again until the task ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks", "cancel_and_wait"]

#: how long a cancelled task may run on before it is cancelled again
RECANCEL = 0.05


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout: float | None = 5.0) -> None:  # noqa: ASYNC109
    """Cancel ``tasks`` and wait until they end (at most ``timeout`` seconds), cancelling again
    any that runs on (see module docs)."""
    loop = asyncio.get_running_loop()
    end = None if timeout is None else loop.time() + timeout
    pending = [t for t in tasks if not t.done()]
    while pending:
        for task in pending:
            task.cancel()
        wait = RECANCEL if end is None else min(RECANCEL, end - loop.time())
        if wait <= 0:
            return
        await asyncio.wait(pending, timeout=wait)
        pending = [t for t in pending if not t.done()]


class BackgroundTasks:
    """The background tasks of one owner (see module docs)."""

    __slots__ = ("_level", "_log", "_tasks", "_what")

    def __init__(self, log: logging.Logger, what: str, *, level: int = logging.ERROR) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log
        self._what = what
        self._level = level

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned here; returns the task."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.log(self._level, "%s: background task failed: %r", self._what, exc)

    async def aclose(self, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109
        """Cancel every task and wait for them to finish (at most ``timeout`` seconds)."""
        await cancel_and_wait(list(self._tasks), timeout)

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109
        """Let running tasks finish for up to ``timeout`` seconds, then cancel the rest."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await self.aclose()

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<BackgroundTasks {self._what!r} running={len(self._tasks)}>"
