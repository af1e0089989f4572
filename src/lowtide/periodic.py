"""A background job that runs every ``interval`` seconds while the hub is distributed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from lowtide.errors import LowtideError

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["Periodic"]

log = logging.getLogger("lowtide")


class Periodic:
    """Subclasses implement :meth:`tick`; failures to reach Redis are logged and retried."""

    def __init__(self, hub: HubView, interval: float) -> None:
        self._hub = hub
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        """One run of the job (sends its commands)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the job (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop the job and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            if self._hub.distributed:
                try:
                    await self.tick()
                except LowtideError as exc:
                    log.debug("%s skipped: %s", type(self).__name__, exc)
            await self._hub.clock.sleep(self.interval)
