"""A background job that runs every ``interval`` seconds while the hub is distributed.

The job survives anything :meth:`Periodic.tick` raises: Redis being away is routine (logged
at debug); any other exception (a bug, or a value planted in Redis that a tick did not expect)
is counted in :attr:`Periodic.failures` and logged at most once a minute, and the next tick
runs on schedule. Only cancellation (:meth:`Periodic.aclose`) stops it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lowtide._tasks import cancel_and_wait
from lowtide._untrusted import Warnings, shown
from lowtide.errors import LowtideError

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["Periodic"]

log = logging.getLogger("lowtide")


class Periodic:
    """Subclasses implement :meth:`tick`; failures are logged and the job goes on."""

    def __init__(self, hub: HubView, interval: float) -> None:
        self._hub = hub
        self.interval = interval
        #: ticks that raised something other than a Redis error (logged; the job went on)
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._warnings = Warnings(log)

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
            await cancel_and_wait([task], None)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the job's own failures were logged by _run

    async def _run(self) -> None:
        while True:
            if self._hub.distributed:
                try:
                    await self.tick()
                except LowtideError as exc:
                    log.debug("%s skipped: %s", type(self).__name__, exc)
                except Exception as exc:  # the job must outlive any one tick
                    self.failures += 1
                    self._warnings.warn(
                        "tick",
                        "%s failed, will run again in %gs: %s",
                        type(self).__name__,
                        self.interval,
                        shown(exc, 200),
                    )
            await self._hub.clock.sleep(self.interval)
