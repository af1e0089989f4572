"""Fleet size from heartbeats: how many hubs share the fleet's limits right now.

Used only by rate limiters that fall back to a local share (``limit / fleet size``) when Redis is
unavailable. Each hub, every ``interval`` seconds while distributed, sends one pipeline::

    INCR  <ns>:m:fleet::hb:<n>      # this interval's heartbeat counter (PEXPIRE on first)
    GET   <ns>:m:fleet::hb:<n-1>    # how many hubs beat in the previous interval

so the size is known to every hub at a cost of 2 commands per interval per hub (3 for the first
hub of an interval), independent of traffic. The last size seen is kept while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from lowtide.context import Attribution
from lowtide.errors import LowtideError
from lowtide.keys import build_key, family

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["Fleet"]

log = logging.getLogger("lowtide.fleet")


class Fleet:
    """Heartbeats and the fleet size they reveal (see module docs)."""

    def __init__(self, hub: Lowtide, *, interval: float = 60.0) -> None:
        self._hub = hub
        self.interval = interval
        #: hubs seen in the last complete interval (1 until a heartbeat says otherwise)
        self.size = 1
        self.beats = 0
        self._att = Attribution("fleet", family(hub.settings.namespace, "fleet", "hb"), None)
        self._task: asyncio.Task[None] | None = None

    def _key(self, index: int) -> str:
        return build_key(self._hub.settings.namespace, "fleet", "hb", None, str(index))

    def start(self) -> None:
        """Start heartbeating (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop heartbeating."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def beat(self) -> int:
        """Send one heartbeat now; returns the fleet size it revealed."""
        now = self._hub.clock.time()
        index = math.floor(now / self.interval)
        gw = self._hub.gateway
        mine, previous = await gw.pipeline(
            self._att, [("INCR", self._key(index)), ("GET", self._key(index - 1))]
        )
        if mine == 1:
            await gw.call(self._att, "PEXPIRE", self._key(index), int(self.interval * 3000))
        prev = int(previous) if isinstance(previous, bytes | int) else 0
        self.size = max(1, prev, int(mine) if isinstance(mine, int) else 1)
        self.beats += 1
        return self.size

    async def _run(self) -> None:
        while True:
            if self._hub.distributed:
                try:
                    await self.beat()
                except LowtideError as exc:
                    log.debug("heartbeat failed: %s", exc)
            await self._hub.clock.sleep(self.interval)
