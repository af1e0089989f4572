"""Fleet size from heartbeats: how many hubs share the fleet's limits right now.

Used only by rate limiters that fall back to a local share (``limit / fleet size``) when Redis is
unavailable. Each hub, every ``interval`` seconds while distributed, sends one pipeline::

    INCR  <ns>:m:fleet::hb:<n>      # this interval's heartbeat counter (PEXPIRE on first)
    GET   <ns>:m:fleet::hb:<n-1>    # how many hubs beat in the previous interval

so the size is known to every hub at a cost of 2 commands per interval per hub (3 for the first
hub of an interval), independent of traffic. The last size seen is kept while Redis is down.

Both counts are untrusted (anyone with write access can plant them): a count is used only if it
is a plain decimal integer of at most :data:`MAX_FLEET_SIZE` (10,000 hubs); anything else (text,
10**12, an error reply) is ignored, counted in :attr:`Fleet.bad_heartbeats` and logged at most
once a minute. If neither count is usable the last size is kept. A planted huge count would
otherwise become the fleet size and shrink every limiter's local share to nothing.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Final

from lowtide._untrusted import Warnings, shown, whole
from lowtide.context import Attribution
from lowtide.keys import build_key, family
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["MAX_FLEET_SIZE", "Fleet", "heartbeat_count"]

log = logging.getLogger("lowtide.fleet")
#: the largest fleet size believed (hubs); larger counts are ignored
MAX_FLEET_SIZE: Final = 10_000
_DIGITS = re.compile(rb"[0-9]{1,9}")


def heartbeat_count(value: object) -> int | None:
    """The number of hubs a heartbeat counter holds: ``value`` as Redis answered it (``INCR``:
    an int; ``GET``: bytes, or None when absent, i.e. 0), if it is a count in
    ``[0, MAX_FLEET_SIZE]``; None for anything else."""
    if value is None:
        return 0
    if isinstance(value, bytes):
        if not _DIGITS.fullmatch(value):
            return None
        value = int(value)
    return whole(value, lo=0, hi=MAX_FLEET_SIZE)


class Fleet(Periodic):
    """Heartbeats and the fleet size they reveal (see module docs)."""

    def __init__(self, hub: HubView, *, interval: float = 60.0) -> None:
        super().__init__(hub, interval)
        #: hubs seen in the last complete interval (1 until a heartbeat says otherwise)
        self.size = 1
        self.beats = 0
        #: heartbeat counts read that were not a count of at most MAX_FLEET_SIZE (ignored)
        self.bad_heartbeats = 0
        self._warnings = Warnings(log)
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
        counts = []
        for raw in (mine, previous):
            n = heartbeat_count(raw)
            if n is None:
                self.bad_heartbeats += 1
                self._warnings.warn(
                    "count", "ignoring a heartbeat count that is not one: %s", shown(raw)
                )
            else:
                counts.append(n)
        if counts:  # neither usable: keep the last size
            self.size = max(1, *counts)
        self.beats += 1
        return self.size

    async def tick(self) -> None:
        """One heartbeat."""
        await self.beat()
