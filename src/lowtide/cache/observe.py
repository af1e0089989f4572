"""Cache reads that left process memory, for latency histograms (Prometheus, OpenTelemetry).

:func:`observe_cache_reads` calls a callback after every L2 read (``source="l2"``: each key's
read, once however many callers a single flight served, timed as the caller waited for it;
a ``get_many`` MGET is one read) and every loader call
(``source="load"``) of every cache in the process. L1 hits are not timed: they cost about
0.4 µs (``python -m benchmarks.hot_paths``) and are counted by ``stats.hits``; timing each would
double that. With no callback a miss pays one list check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Literal, NamedTuple

__all__ = ["CacheRead", "observe_cache_reads", "report"]

log = logging.getLogger("lowtide.cache")


class CacheRead(NamedTuple):
    """One cache read that went past L1."""

    #: the reading hub's ledger (tells hubs apart)
    ledger: object
    component: str
    cache: str
    source: Literal["l2", "load"]
    seconds: float


#: the callbacks; read by the cache's miss paths (``if observers:``)
observers: list[Callable[[CacheRead], None]] = []


def observe_cache_reads(callback: Callable[[CacheRead], None]) -> Callable[[], None]:
    """Call ``callback(CacheRead)`` after every L2 read and load of every cache in this
    process; returns a function that unsubscribes. A failing callback is logged, never
    raised."""
    observers.append(callback)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            observers.remove(callback)

    return unsubscribe


def report(read: CacheRead) -> None:
    """Hand ``read`` to every callback."""
    for callback in list(observers):
        try:
            callback(read)
        except Exception:
            log.exception("cache read observer failed")
