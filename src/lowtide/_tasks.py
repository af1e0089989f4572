"""``BackgroundTasks``: the one way lowtide runs work in the background.

A spawned task is kept (so it cannot be garbage-collected mid-flight), its outcome is always
retrieved (so asyncio never logs "exception was never retrieved"), an unexpected failure is
logged at the owner's chosen level, and :meth:`BackgroundTasks.aclose` cancels *and awaits*
every task still running, bounded by a timeout so a stuck socket cannot hold shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks"]


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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

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
