"""The lower bound: billed commands any correct protocol must send for the measured window.

Pure functions of the trace (no server, no I/O). Every count is attributed to the trace time of
the event that needs it (a read, a write, an admission) and only those inside the measured
window ``[warmup, warmup + seconds)`` are counted, so the bound is a steady-state rate like the
measurements it is compared with. What it counts (docs/demo.md says why each is necessary):

* **writes**: 1 per write of a cached value (the new version has to reach Redis).
* **cache fetches**: 1 per (machine, key, copy) a machine needs: a machine reading a key must
  hold a copy of the current version that is younger than the cache TTL; when it holds none, it
  needs 1 command (a GET, or the SET that shares what it loaded from the database). A copy
  fetched at ``t`` is credited with the longest life any protocol could give it, ``t + ttl``
  (real copies live at most until their L2 value expires, which is never later), and ends when
  another machine writes the key. The writer holds the version it wrote for free.
* **discovery fetches**: the same rule for webhook id -> tenant mappings (written at OAuth time,
  before the trace, with their own TTL; never written again).
* **limiter**: 1 per (machine, tenant, connector, window) in which that machine admits a call,
  where admissions are those of an exact fleet-wide fixed-window limit over the trace's calls
  (the first ``limit`` calls of each window). Calls to the failing connector during its outage
  are left out (a breaker may refuse them without a token).
* **notifications** (``pubsub`` only, where the server pushes nothing by itself): 1 per write
  while another machine holds a copy of the key that it would read again before the copy
  expires. Per key, the cheaper of that protocol and plain cache-aside (1 command per read and
  per write, no copies) is counted.

Not counted (a protocol may spend 0 on them, so leaving them out keeps it a bound): quota
accounting, breaker state, heartbeats, keepalives, start-up commands, cache fills of keys read
only by the writer.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lowtide.demo.trace import DemoConfig, Event

__all__ = ["KeyCosts", "LowerBound", "key_costs", "limiter_windows", "lower_bound"]

_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class KeyCosts:
    """What one key needs inside the measured window."""

    reads: int = 0
    writes: int = 0
    fetches: int = 0
    notifications: int = 0

    @property
    def tracking(self) -> int:
        """Commands with server-pushed invalidation (a push costs nothing)."""
        return self.writes + self.fetches

    @property
    def pubsub(self) -> int:
        """Commands without it: copies plus notifications, or cache-aside, whichever is less."""
        return min(self.writes + self.fetches + self.notifications, self.writes + self.reads)


@dataclass(frozen=True, slots=True)
class LowerBound:
    """The bound for one invalidation mode, by part (counts in the measured window)."""

    mode: str
    seconds: float
    writes: int
    cache_fetches: int
    discovery: int
    limiter: int
    #: pub/sub only: notifications counted (0 in tracking mode)
    notifications: int = 0
    #: pub/sub only: keys for which plain cache-aside is the cheaper protocol
    cache_aside_keys: int = 0

    @property
    def total(self) -> int:
        """Billed commands in the measured window (each counted command bills 1 unit)."""
        return self.writes + self.cache_fetches + self.discovery + self.limiter + self.notifications

    @property
    def per_day(self) -> float:
        """``total`` projected to a day of trace time."""
        return self.total / self.seconds * _DAY if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "mode": self.mode,
            "seconds": self.seconds,
            "writes": self.writes,
            "cache_fetches": self.cache_fetches,
            "discovery": self.discovery,
            "limiter": self.limiter,
            "notifications": self.notifications,
            "cache_aside_keys": self.cache_aside_keys,
            "total": self.total,
            "per_day": self.per_day,
        }


def key_costs(
    timeline: Iterable[tuple[float, int, str]], ttl: float, start: float, end: float
) -> KeyCosts:
    """Costs of one key from its ``(t, machine, "read" | "write")`` events in time order.

    See the module docs: a read without a valid copy is a fetch (the copy then lives until
    ``t + ttl`` or another machine's write); a write gives the writer a copy; in pub/sub mode a
    write needs a notification when another machine holds a copy it reads again in time.
    """
    events = list(timeline)
    reads_of: dict[int, list[float]] = defaultdict(list)
    for t, m, kind in events:
        if kind == "read":
            reads_of[m].append(t)
    valid: dict[int, float] = {}  # machine -> end of life of its copy of the current version
    reads = writes = fetches = notifications = 0
    for t, m, kind in events:
        counted = start <= t < end
        if kind == "write":
            writes += counted
            if counted and _copy_read_again(valid, reads_of, m, t):
                notifications += 1
            valid = {m: t + ttl}
        else:
            reads += counted
            if valid.get(m, -math.inf) <= t:
                fetches += counted
                valid[m] = t + ttl
    return KeyCosts(reads, writes, fetches, notifications)


def _copy_read_again(
    valid: dict[int, float], reads_of: dict[int, list[float]], writer: int, t: float
) -> bool:
    """True if a machine other than ``writer`` holds a live copy at ``t`` and reads the key
    again while that copy would still be served."""
    for m, until in valid.items():
        if m == writer or until <= t:
            continue
        times = reads_of.get(m, [])
        i = bisect.bisect_right(times, t)
        if i < len(times) and times[i] < until:
            return True
    return False


def limiter_windows(
    calls: Iterable[Event],
    config: DemoConfig,
    window_of: Callable[[float], int],
    start: float,
    end: float,
) -> int:
    """(machine, tenant, connector, window)s in which an exact fleet-wide limit admits a call
    of that machine, counted when the machine's first admission there is in ``[start, end)``."""
    taken: dict[tuple[str, str, int], int] = defaultdict(int)
    first: dict[tuple[int, str, str, int], float] = {}
    for ev in sorted(calls, key=lambda e: e.t):
        if config.failing(ev.key, ev.t):
            continue  # a breaker may refuse it without a token
        window = window_of(ev.t)
        cell = (ev.tenant, ev.key, window)
        if taken[cell] >= config.limit:
            continue
        taken[cell] += 1
        first.setdefault((ev.machine, ev.tenant, ev.key, window), ev.t)
    return sum(1 for t in first.values() if start <= t < end)


def lower_bound(
    events: list[Event],
    config: DemoConfig,
    mode: str,
    window_of: Callable[[float], int] | None = None,
) -> LowerBound:
    """The bound for ``mode`` (``tracking``, ``keyspace`` or ``pubsub``) over the measured
    window (keyspace notifications are pushed by the server as tracking's are: same bound).

    ``window_of`` maps a trace time to the limiter window it falls in (by default
    ``floor(t / per)``; a run passes its own alignment to the wall clock).
    """
    if mode not in ("tracking", "keyspace", "pubsub"):
        raise ValueError(f"unknown invalidation mode {mode!r}")
    start, end = config.warmup, config.warmup + config.seconds
    per = config.per
    windows = window_of or (lambda t: math.floor(t / per))
    cache: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    discovery: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    calls: list[Event] = []
    for ev in events:
        if ev.kind in ("read", "write"):
            cache[f"{ev.tenant}/{ev.key}"].append((ev.t, ev.machine, ev.kind))
        elif ev.kind == "webhook":
            discovery[f"{ev.key}/{ev.external_id}"].append((ev.t, ev.machine, "read"))
        else:
            calls.append(ev)
    writes = fetches = notifications = aside = 0
    for timeline in cache.values():
        timeline.sort(key=lambda e: e[0])
        costs = key_costs(timeline, config.cache_ttl, start, end)
        writes += costs.writes
        if mode != "pubsub":
            fetches += costs.fetches
        elif costs.writes + costs.reads < costs.writes + costs.fetches + costs.notifications:
            fetches += costs.reads  # cache-aside: every read asks Redis
            aside += 1
        else:
            fetches += costs.fetches
            notifications += costs.notifications
    resolved = 0
    for timeline in discovery.values():
        timeline.sort(key=lambda e: e[0])
        resolved += key_costs(timeline, config.discovery_ttl, start, end).fetches
    return LowerBound(
        mode=mode,
        seconds=config.seconds,
        writes=writes,
        cache_fetches=fetches,
        discovery=resolved,
        limiter=limiter_windows(calls, config, windows, start, end),
        notifications=notifications,
        cache_aside_keys=aside,
    )
