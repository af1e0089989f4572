"""What the demo measured, computed from the server's counts and the machines' observations.

Pure functions: no I/O. Definitions:

* **stale read**: a read that returned a version older than the newest write *completed before
  the read began* (across all machines); its staleness is the time since the first newer write
  completed. ``stale_beyond_bound`` counts stale reads older than the staleness bound.
* **overshoot**: admissions beyond the limit, summed over every (tenant, connector, window).
* **hit ratio**: share of measured reads answered without asking the database;
  **local hit ratio**: share answered from process memory, without any Redis command.
* **lower bound**: what any correct protocol must spend for the measured part of the trace:
  1 command per write, 1 per (machine, key, version) a machine reads without having read or
  written it before, 1 per (machine, external id) first resolved, and 1 per (machine, tenant,
  connector, window) in which the machine admitted calls.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from lowtide.demo.trace import Trace
from lowtide.ledger import billing_profile

__all__ = ["StrategyResult", "analyse", "lower_bound_per_day"]

_UPSTASH = billing_profile("upstash")
_DAY = 86_400.0


@dataclass(slots=True)
class StrategyResult:
    """One strategy's measured numbers (the JSON shape of ``lowtide demo --json``)."""

    name: str
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
    #: lowtide's own attribution of what it sent ("component command" -> count), all machines
    attribution: dict[str, int] = field(default_factory=dict)
    series: list[tuple[float, float, float]] = field(default_factory=list)

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


def analyse(
    name: str,
    trace: Trace,
    machines: list[dict[str, Any]],
    commands: dict[str, int],
    series: list[tuple[float, float, float]],
) -> StrategyResult:
    """Combine the server's command delta (measured window) with every machine's log."""
    cfg = trace.config
    seconds = cfg.seconds
    reads = [tuple(r) for m in machines for r in m["reads"]]
    writes = [tuple(w) for m in machines for w in m["writes"]]
    measured = [r for r in reads if r[2] >= cfg.warmup]
    stale = _staleness(measured, writes)
    stale_only = [s for s in stale if s > 0]
    per_window: Counter[tuple[str, str, int]] = Counter()
    for m in machines:
        for tenant, connector, wall in m["admissions"]:
            per_window[(tenant, connector, math.floor(wall / cfg.per))] += 1
    overshoot = sum(max(0, n - cfg.limit) for n in per_window.values())
    loaded = sum(1 for r in measured if r[3])
    errors: Counter[str] = Counter()
    for m in machines:
        errors.update(m["errors"])
    billed = _UPSTASH.billed(commands)
    attribution: Counter[str] = Counter()
    for m in machines:
        attribution.update(m.get("ledger", {}))
    return StrategyResult(
        name=name,
        seconds=seconds,
        commands=dict(sorted(commands.items())),
        gets_per_day=commands.get("get", 0) / seconds * _DAY,
        commands_per_day=sum(commands.values()) / seconds * _DAY,
        billed_per_day=billed / seconds * _DAY,
        usd_per_month=_UPSTASH.usd(billed / seconds * _DAY * 30),
        hit_ratio=1 - loaded / len(measured) if measured else 0.0,
        local_hit_ratio=(
            min(1.0, sum(int(m.get("local_hits", 0)) for m in machines) / len(measured))
            if measured
            else 0.0
        ),
        reads=len(measured),
        stale_reads=len(stale_only),
        stale_beyond_bound=sum(1 for s in stale_only if s > cfg.staleness_bound),
        max_staleness_s=max(stale_only, default=0.0),
        p99_staleness_s=_percentile(stale, 0.99),
        overshoot=overshoot,
        admitted=sum(per_window.values()),
        db_queries=sum(int(m["db_queries"]) for m in machines),
        errors=dict(errors),
        series=series,
        attribution=dict(attribution.most_common()),
    )


def lower_bound_per_day(trace: Trace) -> float:
    """Commands/day any correct protocol needs for the measured part of ``trace``."""
    cfg = trace.config
    known: set[tuple[int, str, int]] = set()
    resolved: set[tuple[int, str]] = set()
    windows: set[tuple[int, str, str, int]] = set()
    needed = 0
    for ev in trace.events:
        measured = ev.t >= cfg.warmup
        key_id = f"{ev.tenant}/{ev.key}"
        if ev.kind == "write":
            known.add((ev.machine, key_id, ev.version))
            needed += measured
        elif ev.kind == "read":
            item = (ev.machine, key_id, trace.version_at(key_id, ev.t))
            if item not in known:
                known.add(item)
                needed += measured
        elif ev.kind == "webhook":
            ident = (ev.machine, f"{ev.key}/{ev.external_id}")
            if ident not in resolved:
                resolved.add(ident)
                needed += measured
        else:
            window = (ev.machine, ev.tenant, ev.key, math.floor(ev.t / cfg.per))
            if window not in windows:
                windows.add(window)
                needed += measured
    return needed / cfg.seconds * _DAY
