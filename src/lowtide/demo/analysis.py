"""What the demo measured, computed from the server's counts and the machines' observations.

Pure functions: no I/O. Definitions:

* **stale read**: a read that returned a version older than the newest write *completed before
  the read began* (across all machines); its staleness is the time since the first newer write
  completed. ``stale_beyond_bound`` counts stale reads older than the staleness bound.
* **overshoot**: admissions beyond the limit, summed over every (tenant, connector, window).
  An admission belongs to the window of the wall time it was decided at; one decided across a
  boundary (asked before it, answered after: a reservation in flight) belongs to whichever of
  the two windows has room (see :func:`overshoot`), so the judge does not charge a limiter for
  its round trip.
* **hit ratio**: share of measured reads answered without asking the database;
  **local hit ratio** ("reads served in process"): share answered from process memory, without
  any Redis command.
* **per day**: counts in the measured window divided by its length in trace seconds (a
  compressed run measures the same trace time in less wall time), times 86,400.
* **lower bound**: see :mod:`lowtide.demo.bound`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from lowtide.demo.bound import LowerBound
from lowtide.demo.trace import Trace
from lowtide.ledger import billing_profile

__all__ = ["UPSTASH", "StrategyResult", "analyse", "overshoot"]

#: the incident's provider: PUBLISH and SUBSCRIBE are billed like any command (they are not in
#: its free list); messages delivered to subscribers are not commands and are not billed
UPSTASH = billing_profile("upstash")
_DAY = 86_400.0


@dataclass(slots=True)
class StrategyResult:
    """One run's measured numbers (the JSON shape of ``lowtide demo --json``)."""

    #: the run: ``naive``, ``ttl-fix``, ``lowtide/tracking`` or ``lowtide/pubsub``
    name: str
    #: measured trace seconds (wall seconds times the speedup)
    seconds: float
    commands: dict[str, int]
    gets_per_day: float
    commands_per_day: float
    billed_per_day: float
    usd_per_month: float
    hit_ratio: float
    #: share of measured reads answered from process memory (0 commands)
    local_hit_ratio: float
    reads: int
    stale_reads: int
    stale_beyond_bound: int
    max_staleness_s: float
    p99_staleness_s: float
    overshoot: int
    admitted: int
    db_queries: int
    errors: dict[str, int]
    reduction_vs_naive: float | None = None
    #: lowtide's invalidation mode (None for the baselines)
    invalidation: str | None = None
    #: the lower bound for this run's mode, by part (lowtide runs only)
    lower_bound: dict[str, Any] | None = None
    #: billed per day / lower bound per day (lowtide runs only)
    bound_ratio: float | None = None
    #: how late the machines started measured events (wall milliseconds): p99, worst
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    #: lowtide's own attribution of what it sent ("component command" -> count), all machines
    attribution: dict[str, int] = field(default_factory=dict)
    #: (trace seconds, billed commands per trace minute, GETs per trace minute), warm-up included
    series: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def strategy(self) -> str:
        """``naive``, ``ttl-fix`` or ``lowtide``."""
        return self.name.partition("/")[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def _staleness(
    reads: list[tuple[str, int, float, bool]], writes: list[tuple[str, int, float]]
) -> list[float]:
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for key, version, done in writes:
        by_key[key].append((version, done))
    out: list[float] = []
    for key, version, started, _ in reads:
        newer_done = [done for v, done in by_key.get(key, ()) if v > version and done < started]
        out.append(started - min(newer_done) if newer_done else 0.0)
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def overshoot(
    admissions: list[tuple[str, str, float, float]], limit: int, per: float
) -> tuple[int, int]:
    """(admissions beyond ``limit`` per window of ``per`` wall seconds, admissions) for
    ``(tenant, connector, asked, answered)`` admissions (wall times; see the module docs)."""
    counts: Counter[tuple[str, str, int]] = Counter()
    straddling: list[tuple[str, str, int]] = []
    for tenant, connector, asked, answered in admissions:
        first, last = math.floor(asked / per), math.floor(answered / per)
        if first == last:
            counts[(tenant, connector, first)] += 1
        else:
            straddling.append((tenant, connector, first))
    for tenant, connector, first in sorted(straddling):
        early, late = (tenant, connector, first), (tenant, connector, first + 1)
        counts[early if counts[early] < limit else late] += 1
    return sum(max(0, n - limit) for n in counts.values()), len(admissions)


def analyse(
    name: str,
    trace: Trace,
    machines: list[dict[str, Any]],
    commands: dict[str, int],
    series: list[tuple[float, float, float]],
    seconds: float,
    bound: LowerBound | None = None,
) -> StrategyResult:
    """Combine the server's command delta (``seconds`` of measured trace time) with every
    machine's log and, for lowtide runs, the lower bound of the run's mode."""
    cfg = trace.config
    seconds = seconds if seconds > 0 else cfg.seconds
    per_wall = cfg.wall(cfg.per)
    reads = [tuple(r) for m in machines for r in m["reads"]]
    writes = [tuple(w) for m in machines for w in m["writes"]]
    measured = [r for r in reads if r[2] >= cfg.warmup]
    stale = _staleness(measured, writes)
    stale_only = [s for s in stale if s > 0]
    over, admitted = overshoot(
        [tuple(a) for m in machines for a in m["admissions"]], cfg.limit, per_wall
    )
    loaded = sum(1 for r in measured if r[3])
    errors: Counter[str] = Counter()
    for m in machines:
        errors.update(m["errors"])
    billed = UPSTASH.billed(commands)
    billed_per_day = billed / seconds * _DAY
    attribution: Counter[str] = Counter()
    for m in machines:
        attribution.update(m.get("ledger", {}))
    local = sum(int(m.get("local_hits", 0)) for m in machines)
    return StrategyResult(
        name=name,
        seconds=seconds,
        commands=dict(sorted(commands.items())),
        gets_per_day=commands.get("get", 0) / seconds * _DAY,
        commands_per_day=sum(commands.values()) / seconds * _DAY,
        billed_per_day=billed_per_day,
        usd_per_month=UPSTASH.usd(billed_per_day * 30),
        hit_ratio=1 - loaded / len(measured) if measured else 0.0,
        local_hit_ratio=min(1.0, local / len(measured)) if measured else 0.0,
        reads=len(measured),
        stale_reads=len(stale_only),
        stale_beyond_bound=sum(1 for s in stale_only if s > cfg.staleness_bound),
        max_staleness_s=max(stale_only, default=0.0),
        p99_staleness_s=_percentile(stale, 0.99),
        overshoot=over,
        admitted=admitted,
        db_queries=sum(int(m["db_queries"]) for m in machines),
        errors=dict(errors),
        invalidation=name.partition("/")[2] or None,
        lower_bound=bound.to_dict() if bound is not None else None,
        bound_ratio=(
            billed_per_day / bound.per_day if bound is not None and bound.per_day > 0 else None
        ),
        lag_p99_ms=1000 * max((float(m.get("lag_wall_p99", 0.0)) for m in machines), default=0),
        lag_max_ms=1000 * max((float(m.get("lag_wall_max", 0.0)) for m in machines), default=0),
        series=series,
        attribution=dict(attribution.most_common()),
    )
