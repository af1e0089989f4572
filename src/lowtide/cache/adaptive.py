"""Whether keeping copies in process memory pays, per cache, in pub/sub backplane mode.

A copy saves one GET per read it answers (an L1 hit). On the backplane it also has a price:
when its value is replaced, the writer must PUBLISH (:mod:`lowtide.cache.notify`). A cache whose
values are rewritten more often than they are re-read pays more for the messages than it saves.

:class:`CopyPolicy` measures both sides in this process, in decaying windows of
:data:`WINDOW` events (reads that went to Redis and writes):

* **benefit**: L1 hits, plus *would-be hits*: reads of a value marked "no copies" that found
  the same value this process read or wrote last time, while a copy would still have been
  fresh (so the measurement goes on while copies are off);
* **cost**: writes that replaced a different value copies may exist of (each a PUBLISH), plus
  writes that replaced a different value marked "no copies" (a PUBLISH had it been shared).

Writes of an absent key, fills and rewrites of the same bytes are left out: they cost the same
either way. Copies go off when the benefit falls below the cost and back on when it exceeds
:data:`ON_ABOVE` times the cost (hysteresis), once there is evidence (:data:`MIN_EVIDENCE`
reads and writes in the window, at least :data:`MIN_READS` of them reads: a process that only
writes knows nothing of the readers and leaves the setting alone).

The setting decides only how this process *writes*: a value written while copies are off is
marked "no copies" in its envelope, and no process keeps a copy of it (every read goes to
Redis) so that replacing it needs no message. Values written earlier keep their mark until
rewritten or expired, so a change reaches the whole cache within one ``ttl``. The decision is
local and assumes the processes share the workload; a cache whose writers and readers are
different processes should pin it (``adaptive=False``). Control-plane state (breakers,
limiters, tenants, the kill switch) always keeps copies.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from lowtide.cache.options import CacheStats

__all__ = ["MIN_EVIDENCE", "MIN_READS", "ON_ABOVE", "WINDOW", "CopyPolicy"]

log = logging.getLogger("lowtide.cache")

#: events (reads that went to Redis, and writes) per evaluation; each window halves the past
WINDOW: Final = 256
#: benefit + cost needed in the decayed window before the setting may change
MIN_EVIDENCE: Final = 32
#: reads (L1 hits and reads that went to Redis) needed in the decayed window first
MIN_READS: Final = 16
#: copies come back on when the benefit exceeds this many times the cost
ON_ABOVE: Final = 1.5


class CopyPolicy:
    """Whether this cache's writes allow copies (see module docs)."""

    __slots__ = (
        "_events",
        "_hits_seen",
        "_stats",
        "_what",
        "benefit",
        "copies",
        "cost",
        "enabled",
        "reads",
        "switches",
    )

    def __init__(self, stats: CacheStats, *, enabled: bool, what: str = "cache") -> None:
        self._stats = stats
        self._what = what
        #: False pins copies on (control-plane state, ``adaptive=False``)
        self.enabled = enabled
        #: values written now allow copies
        self.copies = True
        #: decayed measurements (see module docs)
        self.benefit = 0.0
        self.cost = 0.0
        self.reads = 0.0
        #: how often the setting changed
        self.switches = 0
        self._events = 0
        self._hits_seen = stats.hits

    def read(self, *, would_hit: bool) -> None:
        """A read went to Redis (``would_hit``: a copy, had there been one, would have
        answered it)."""
        self.reads += 1
        if would_hit:
            self.benefit += 1
        self._tick()

    def wrote(self, *, costly: bool) -> None:
        """A write happened (``costly``: it replaced a different value that copies may exist
        of, or would have had it been shared)."""
        if costly:
            self.cost += 1
        self._tick()

    def _tick(self) -> None:
        self._events += 1
        if self._events < WINDOW:
            return
        self._events = 0
        hits = self._stats.hits
        self.benefit += hits - self._hits_seen
        self.reads += hits - self._hits_seen
        self._hits_seen = hits
        self._decide()
        self.benefit /= 2
        self.cost /= 2
        self.reads /= 2

    def _decide(self) -> None:
        if not self.enabled:
            return
        if self.benefit + self.cost < MIN_EVIDENCE or self.reads < MIN_READS:
            return
        if self.copies and self.benefit < self.cost:
            self.copies = False
        elif not self.copies and self.benefit > ON_ABOVE * self.cost:
            self.copies = True
        else:
            return
        self.switches += 1
        log.info(
            "%s: copies in process memory %s (per %d events: %.0f reads saved, %.0f messages)",
            self._what,
            "on: they pay" if self.copies else "off: the messages they need cost more",
            WINDOW,
            self.benefit,
            self.cost,
        )

    def info(self) -> dict[str, Any]:
        """The setting and its measurements (for health)."""
        return {
            "copies": "on" if self.copies else "off",
            "adaptive": self.enabled,
            "copy_benefit": round(self.benefit, 1),
            "copy_cost": round(self.cost, 1),
            "copy_switches": self.switches,
        }
