"""The demo's workload: one seeded trace, calibrated to the incident report, replayed by every
strategy.

At ``scale=1`` the fleet sees, per minute, 500 cache operations, 125 inbound webhooks and 200
outbound integration calls. The incident's code spends 2 GETs per cache operation, 1 per webhook and
2 per call, so those rates are their ~1,525 GETs/min (~2.2M/day). Tenants and keys have skewed
(Zipf) popularity, 2% of cache operations are writes (each a new version of the value), each
(tenant, connector) may make ``limit`` calls per ``per`` seconds (busy tenants want more), and
one connector fails for a stretch of the run so breakers trip. Events are spread over the
machines at random, as a load balancer would.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALL_INVALIDATION_RUNS",
    "DEFAULT_SPEEDUP",
    "INVALIDATION_RUNS",
    "DemoConfig",
    "Event",
    "Trace",
    "generate",
]


#: lowtide's invalidation modes the demo can measure (each is its own run and column)
INVALIDATION_RUNS: tuple[str, ...] = ("tracking", "keyspace")
#: every mode lowtide has (the pub/sub backplane is for servers with neither CLIENT TRACKING
#: nor configurable keyspace notifications)
ALL_INVALIDATION_RUNS: tuple[str, ...] = ("tracking", "keyspace", "pubsub")
#: the default time compression at ``scale <= 1`` (event rates x20, every period / 20)
DEFAULT_SPEEDUP = 20.0


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Everything that shapes the trace and the run.

    Durations are **trace seconds** (the incident's time). A run replays the trace ``speedup``
    times faster than real time, with every period of every strategy (cache TTLs, the staleness
    bound, limiter windows, breaker periods, flush, heartbeat and keepalive periods, verdict
    caches) divided by the same factor, so each strategy sees the trace exactly as it would in
    real time, only sooner. Per-day figures are per day of trace time.
    """

    #: measured trace seconds per run (after the warm-up): 1,000 s is over three cache TTLs
    #: (the limiter's counter hashes begin at each tenant's own window, so their expiries are
    #: spread over time and need no particular window)
    seconds: float = 1000.0
    #: trace seconds replayed before measuring, at the same speed (caches, TTLs, flushes and
    #: windows reach their steady state; nothing of it is measured)
    warmup: float = 600.0
    #: time compression; ``None``: 20 at ``scale <= 1``, ``20 / scale`` above (at least 1)
    speedup: float | None = None
    machines: int = 4
    scale: float = 1.0
    seed: int = 7
    tenants: int = 30
    keys_per_tenant: int = 20
    connectors: tuple[str, ...] = ("slack", "salesforce", "hubspot")
    cache_ops_per_min: float = 500.0
    webhooks_per_min: float = 125.0
    calls_per_min: float = 200.0
    write_fraction: float = 0.02
    #: per (tenant, connector): calls per window
    limit: int = 2
    per: float = 10.0
    #: this connector fails between these fractions of the measured window
    failing_connector: str = "salesforce"
    failing_from: float = 0.3
    failing_to: float = 0.6
    #: staleness bound used to judge every strategy (lowtide's max_staleness)
    staleness_bound: float = 60.0
    #: life of a cached value in Redis (every strategy)
    cache_ttl: float = 300.0
    #: life of a webhook id -> tenant mapping written at OAuth time (every strategy)
    discovery_ttl: float = 3600.0
    #: lowtide's invalidation modes to measure, each as its own run
    invalidation: tuple[str, ...] = INVALIDATION_RUNS
    #: also run the naive code with only its client swapped for lowtide's drop-in
    dropin: bool = False

    @property
    def total_seconds(self) -> float:
        """Length of the trace: warm-up plus measured time."""
        return self.warmup + self.seconds

    @property
    def time_scale(self) -> float:
        """How many times faster than real time the trace is replayed."""
        if self.speedup is not None:
            return float(self.speedup)
        return min(DEFAULT_SPEEDUP, max(1.0, DEFAULT_SPEEDUP / self.scale))

    def wall(self, trace_seconds: float) -> float:
        """Real seconds that ``trace_seconds`` of trace take in a run."""
        return trace_seconds / self.time_scale

    @property
    def runs(self) -> tuple[str, ...]:
        """The runs, in order: ``naive``, ``ttl-fix``, ``dropin`` (if asked for), then
        ``lowtide/<mode>`` per mode."""
        dropin = ("dropin",) if self.dropin else ()
        return ("naive", "ttl-fix", *dropin, *(f"lowtide/{m}" for m in self.invalidation))

    @property
    def naive_gets_per_min(self) -> float:
        """GETs per minute the incident's code spends on this workload."""
        return self.scale * (
            2 * self.cache_ops_per_min + self.webhooks_per_min + 2 * self.calls_per_min
        )

    def failing(self, connector: str, t: float) -> bool:
        """True when ``connector`` is down at trace time ``t``."""
        if connector != self.failing_connector or self.seconds <= 0:
            return False
        fraction = (t - self.warmup) / self.seconds
        return self.failing_from <= fraction < self.failing_to


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happens at ``t`` seconds after the start, on machine ``machine``."""

    t: float
    machine: int
    kind: str  # read | write | webhook | call
    tenant: str
    key: str = ""  # cache key, or the connector of a webhook/call
    version: int = 0  # for writes: the new version
    external_id: str = ""  # for webhooks


@dataclass(slots=True)
class Trace:
    """The events plus what the "database" knows (the source of truth the loaders read)."""

    config: DemoConfig
    events: list[Event] = field(default_factory=list)
    #: external id -> tenant, per connector ("<connector>/<external id>")
    directory: dict[str, str] = field(default_factory=dict)
    #: "tenant/key" -> [(t, version)] in time order (version 0 at t=0 for every key)
    history: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    def version_at(self, key_id: str, t: float) -> int:
        """The newest version of ``key_id`` written (in the trace) at or before ``t``."""
        v = 0
        for when, version in self.history.get(key_id, ()):
            if when <= t:
                v = version
            else:
                break
        return v

    def for_machine(self, machine: int) -> list[Event]:
        """The events one machine replays."""
        return [e for e in self.events if e.machine == machine]

    def save(self, path: Path) -> None:
        """Write the trace as JSON."""
        data = {
            "config": {
                **asdict(self.config),
                "connectors": list(self.config.connectors),
                "invalidation": list(self.config.invalidation),
            },
            "events": [asdict(e) for e in self.events],
            "directory": self.directory,
            "history": self.history,
        }
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Trace:
        """Read a trace written by :meth:`save`."""
        data: dict[str, Any] = json.loads(path.read_text())
        cfg = dict(data["config"])
        cfg["connectors"] = tuple(cfg["connectors"])
        cfg["invalidation"] = tuple(cfg["invalidation"])
        return cls(
            DemoConfig(**cfg),
            [Event(**e) for e in data["events"]],
            data["directory"],
            {k: [(float(t), int(v)) for t, v in h] for k, h in data["history"].items()},
        )


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def external_id(connector: str, tenant_index: int) -> str:
    """The id a provider uses for a tenant (a Slack team id, a HubSpot portal id...)."""
    return f"{connector[:2].upper()}{tenant_index:05d}X"


def generate(config: DemoConfig) -> Trace:
    """The seeded trace for ``config``."""
    rnd = random.Random(config.seed)
    tenants = [f"tenant-{i:03d}" for i in range(config.tenants)]
    tenant_w = _zipf_weights(config.tenants, 1.1)
    key_w = _zipf_weights(config.keys_per_tenant, 1.0)
    trace = Trace(config)
    for i, tenant in enumerate(tenants):
        for c in config.connectors:
            trace.directory[f"{c}/{external_id(c, i)}"] = tenant
    rates = {
        "cache": config.cache_ops_per_min * config.scale / 60,
        "webhook": config.webhooks_per_min * config.scale / 60,
        "call": config.calls_per_min * config.scale / 60,
    }
    last_write: dict[str, float] = {}
    versions: dict[str, int] = {}
    for kind, rate in rates.items():
        t = 0.0
        while True:
            t += rnd.expovariate(rate)
            if t >= config.warmup + config.seconds:
                break
            machine = rnd.randrange(config.machines)
            ti = rnd.choices(range(config.tenants), tenant_w)[0]
            tenant = tenants[ti]
            if kind == "cache":
                key = f"item-{rnd.choices(range(config.keys_per_tenant), key_w)[0]}"
                key_id = f"{tenant}/{key}"
                # writes to one key at least 1 s apart, so version order is completion order
                if rnd.random() < config.write_fraction and t - last_write.get(key_id, -9) > 1:
                    versions[key_id] = versions.get(key_id, 0) + 1
                    last_write[key_id] = t
                    trace.history.setdefault(key_id, []).append((t, versions[key_id]))
                    trace.events.append(Event(t, machine, "write", tenant, key, versions[key_id]))
                else:
                    trace.events.append(Event(t, machine, "read", tenant, key))
            elif kind == "webhook":
                c = rnd.choice(config.connectors)
                trace.events.append(
                    Event(t, machine, "webhook", tenant, c, external_id=external_id(c, ti))
                )
            else:
                c = rnd.choice(config.connectors)
                trace.events.append(Event(t, machine, "call", tenant, c))
    trace.events.sort(key=lambda e: e.t)
    for h in trace.history.values():
        h.sort()
    return trace
