"""Fleet size from heartbeats: how many hubs share the fleet's limits right now.

Used by rate limiters that fall back to a local share (``limit / fleet size``) when Redis is
unavailable. Each hub, every ``interval`` seconds while distributed, sends **one** command to a
ring of eight 16-bit counters, one per interval (``n`` counts intervals since the epoch on the
server's clock)::

    BITFIELD <ns>:m:fleet::hb:ring.<interval> OVERFLOW SAT
        INCRBY u16 #(n % 8) 1          # this interval's heartbeat count, this hub included
        GET    u16 #((n - 1) % 8)      # how many hubs beat in the previous interval
        SET    u16 #((n + 2) % 8) 0    # ... SET #((n + 5) % 8) 0: clear the slots of the
                                       # intervals after next, before anyone beats into them

so the size is known to every hub at a cost of 1 command per interval per hub, independent of
traffic (plus 1 ``PEXPIRE`` on a hub's first beat and once every 60 beats, so a ring nobody
beats into goes away after a day). A slot is cleared 2 to 5 intervals before it is used, so a
hub whose clock runs a little ahead never loses a beat to another's clearing. After a silence of
more than 5 intervals a slot may still hold an old count: the size then errs high, which only
makes an outage's local shares smaller, never larger. The last size seen is kept while Redis is
down.

Both counts are untrusted (anyone with write access can plant them): a count is used only if it
is an integer of at most :data:`MAX_FLEET_SIZE` (10,000 hubs); anything else (a planted value of
another type, 65,535, an error reply) is ignored, counted in :attr:`Fleet.bad_heartbeats` and
logged at most once a minute. If neither count is usable the last size is kept. A planted huge
count would otherwise become the fleet size and shrink every limiter's local share to nothing.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Final

from lowtide._untrusted import Warnings, shown, whole
from lowtide.context import Attribution
from lowtide.errors import RedisCommandError
from lowtide.keys import build_key, family
from lowtide.periodic import Periodic

if TYPE_CHECKING:
    from lowtide.redis.gateway import Gateway
    from lowtide.runtime import HubView

__all__ = ["MAX_FLEET_SIZE", "Fleet", "heartbeat_count"]

log = logging.getLogger("lowtide.fleet")
#: the largest fleet size believed (hubs); larger counts are ignored
MAX_FLEET_SIZE: Final = 10_000
_DIGITS = re.compile(rb"[0-9]{1,9}")
_SLOTS = 8  # the ring: this interval, the previous one, the next, and 5 being cleared
_EXPIRE_EVERY = 60  # beats between two PEXPIREs of the ring


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
        #: True once a heartbeat read the count of a whole interval this hub beat in; before
        #: that, ``size`` counts only the hubs that beat before this one (a lower bound)
        self.settled = False
        self._first: int | None = None  # the interval of this hub's first counted beat
        self.beats = 0
        #: heartbeat counts read that were not a count of at most MAX_FLEET_SIZE (ignored)
        self.bad_heartbeats = 0
        self._warnings = Warnings(log)
        self._att = Attribution("fleet", family(hub.settings.namespace, "fleet", "hb"), None)

    def _key(self) -> str:
        ring = f"ring.{self.interval:g}"
        return build_key(self._hub.settings.namespace, "fleet", "hb", None, ring)

    async def beat(self) -> int:
        """Send one heartbeat now; returns the fleet size it revealed."""
        now = self._hub.clock.time()
        n = math.floor(now / self.interval)
        gw = self._hub.gateway
        try:
            reply = await self._ring(gw, n)
        except RedisCommandError as exc:  # e.g. WRONGTYPE: something else planted at the key
            reply = exc
        if self.beats % _EXPIRE_EVERY == 0:
            ttl = max(86_400.0, 100 * self.interval)
            await gw.call(self._att, "PEXPIRE", self._key(), int(ttl * 1000))
        raw = reply[:2] if isinstance(reply, list) and len(reply) >= 2 else [reply]
        counts: list[int] = []
        for i, value in enumerate(raw):
            count = heartbeat_count(value)
            if count is None:
                self.bad_heartbeats += 1
                self._warnings.warn(
                    "count", "ignoring a heartbeat count that is not one: %s", shown(value)
                )
                continue
            counts.append(count)
            if i == 0 and self._first is None:
                self._first = n
            elif i == 1 and self._first is not None and n - 1 >= self._first:
                self.settled = True  # the previous interval's count includes this hub
        if counts:  # neither usable: keep the last size
            self.size = max(1, *counts)
        self.beats += 1
        return self.size

    async def _ring(self, gw: Gateway, n: int) -> object:
        """The heartbeat itself: count this hub in interval ``n``, read ``n - 1``, clear the
        slots of ``n + 2`` to ``n + 5`` (one command)."""
        clear = [arg for k in range(2, 6) for arg in ("SET", "u16", f"#{(n + k) % _SLOTS}", 0)]
        return await gw.call(
            self._att,
            "BITFIELD",
            self._key(),
            "OVERFLOW",
            "SAT",
            "INCRBY",
            "u16",
            f"#{n % _SLOTS}",
            1,
            "GET",
            "u16",
            f"#{(n - 1) % _SLOTS}",
            *clear,
        )

    async def tick(self) -> None:
        """One heartbeat."""
        await self.beat()
