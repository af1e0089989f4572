"""The demo's world, shared by every strategy: the database, the third-party dependency, what a
strategy does per event, and the periods every strategy uses.

The database is the trace's history (2 ms per query); the dependency fails while the trace says
so. Every duration is in trace seconds and goes through :meth:`DemoConfig.wall`, so a compressed
run divides every period of every strategy (lowtide's own included) by the same factor.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from lowtide.demo.trace import DemoConfig, Event, Trace

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["Database", "DependencyDown", "Strategy", "ledger_counts", "to_ms"]

FAIL_THRESHOLD = 3  # failures in WINDOW seconds that open a breaker (all strategies)
WINDOW = 10.0
OPEN_FOR = 5.0
QUOTA_FLUSH = 300.0
#: the incident team's verdict caches (ttl-fix)
QUOTA_VERDICT, LIMIT_VERDICT, BREAKER_VERDICT = 60.0, 5.0, 10.0
#: lowtide's fixed periods that are not arguments of its factories (scaled in compressed runs)
KEEPALIVE, HEARTBEAT, LEASE_HORIZON = 15.0, 60.0, 1.0
#: latency of the database and of the third-party API (real time)
DB_LATENCY, API_LATENCY = 0.002, 0.001


class DependencyDown(Exception):
    """The simulated third-party API failed."""


class Database:
    """The source of truth behind every cache: the trace's history, 2 ms per query.

    Its clock is trace time: ``(wall time - start) * speedup`` once the replay has started.
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.cfg: DemoConfig = trace.config
        self.queries = 0
        #: wall time of trace time 0 (None until the runner says go)
        self.start: float | None = None

    def now(self) -> float:
        """Trace time (seconds)."""
        if self.start is None:
            return 0.0
        return (time.time() - self.start) * self.cfg.time_scale

    async def value(self, tenant: str, key: str) -> dict[str, int]:
        """The current value of a cached item."""
        self.queries += 1
        await asyncio.sleep(self.cfg.wall(DB_LATENCY))
        return {"v": self.trace.version_at(f"{tenant}/{key}", self.now())}

    async def tenant_of(self, connector: str, external_id: str) -> str | None:
        """Tenant discovery's source of truth."""
        self.queries += 1
        await asyncio.sleep(self.cfg.wall(DB_LATENCY))
        return self.trace.directory.get(f"{connector}/{external_id}")

    async def dependency(self, connector: str) -> None:
        """Call the third-party API (fails during the trace's outage of one connector)."""
        await asyncio.sleep(self.cfg.wall(API_LATENCY))
        if self.cfg.failing(connector, self.now()):
            raise DependencyDown(connector)


class Strategy(Protocol):
    """What a machine does for each kind of event."""

    name: str

    async def setup(self, machine: int) -> None: ...
    async def read(self, ev: Event) -> tuple[int, bool]: ...
    async def write(self, ev: Event) -> None: ...
    async def webhook(self, ev: Event) -> str | None: ...
    async def call(self, ev: Event) -> tuple[float, float] | None: ...
    async def close(self) -> None: ...


def to_ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds, at least 1 (a PX argument)."""
    return max(1, round(seconds * 1000))


def ledger_counts(hub: Lowtide) -> dict[str, int]:
    """Commands so far by ``component command`` (lowtide's own attribution)."""
    out: dict[str, int] = {}
    for row in hub.ledger.snapshot().rows:
        label = f"{row.component} {row.command}"
        out[label] = out.get(label, 0) + row.count
    return out
