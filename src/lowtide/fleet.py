"""Fleet size from heartbeats: how many hubs share the fleet's limits right now.

Used only by rate limiters that fall back to a local share (``limit / fleet size``) when Redis is
unavailable. Each hub, every ``interval`` seconds while distributed, sends one pipeline::

    INCR  <ns>:m:fleet::hb:<n>      # this interval's heartbeat counter (PEXPIRE on first)
    GET   <ns>:m:fleet::hb:<n-1>    # how many hubs beat in the previous interval

so the size is known to every hub at a cost of 2 commands per interval per hub (3 for the first
hub of an interval), independent of traffic. The last size seen is kept while Redis is down.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from lowtide.context import Attribution
from lowtide.keys import build_key, family
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["Fleet"]

log = logging.getLogger("lowtide.fleet")


class Fleet(Periodic):
    """Heartbeats and the fleet size they reveal (see module docs)."""

    def __init__(self, hub: HubView, *, interval: float = 60.0) -> None:
        super().__init__(hub, interval)
        #: hubs seen in the last complete interval (1 until a heartbeat says otherwise)
        self.size = 1
        self.beats = 0
        self._att = Attribution("fleet", family(hub.settings.namespace, "fleet", "hb"), None)

    def _key(self, index: int) -> str:
        return build_key(self._hub.settings.namespace, "fleet", "hb", None, str(index))

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

    async def tick(self) -> None:
        """One heartbeat."""
        await self.beat()
