"""What lowtide exports as metrics, read from a hub's public views; Prometheus and
OpenTelemetry turn the same :class:`Family` records into their own types.

Everything comes from the process's own counters (ledger, caches, limiters, breakers, the link
and the invalidation listener): reading costs no Redis command. Cost per reading is bounded
whatever the number of tenants (see :class:`TenantSeries`).

Label cardinality is bounded: components, commands, key families, cache, limiter and breaker
names come from code (families never contain ids), and the tenant label takes at most
``top_tenants`` tenant ids plus :data:`OTHER` and :data:`NO_TENANT`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Literal, TypeVar

from lowtide import __version__
from lowtide.ledger import OTHER_TENANT

if TYPE_CHECKING:
    from lowtide.breaker import CircuitBreaker
    from lowtide.hub import Lowtide
    from lowtide.limiter import RateLimiter

__all__ = ["NO_TENANT", "OTHER", "Family", "Reader", "TenantSeries", "read_families", "readers"]

#: the tenant label of commands for tenants outside the exported top ones
OTHER = "~other"
#: the tenant label of commands sent for no tenant
NO_TENANT = "~none"

Kind = Literal["counter", "gauge"]
#: how a gauge of several worker processes adds up (prometheus-client multiprocess mode)
Merge = Literal["livesum", "livemax", "livemin"]
_Row = tuple[str, str, str, str]  # component, command, family, tenant label
try:
    _REDIS_PY = version("redis")
except PackageNotFoundError:  # pragma: no cover - redis-py is a dependency
    _REDIS_PY = "unknown"
T = TypeVar("T")
C = TypeVar("C")


@dataclass(slots=True)
class Family:
    """One metric: ``name`` without prefix, unit or ``_total`` (``redis_commands``)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    #: ``seconds``, ``bytes`` or "" (Prometheus suffix; OpenTelemetry unit)
    unit: str = ""
    #: how workers' values combine in multiprocess mode (gauges only)
    merge: Merge = "livesum"
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, value: float, *labels: str) -> None:
        """Add one sample."""
        self.samples.append((labels, float(value)))


def _retry(read: Callable[[], T]) -> T:
    """``read()``, again if another thread changed a dict it was iterating (a scrape from
    prometheus-client's or OpenTelemetry's thread while the event loop counts)."""
    for _ in range(3):
        try:
            return read()
        except RuntimeError:
            continue
    return read()


class TenantSeries:
    """The ledger's command counts as series, with at most ``top_tenants`` tenant labels.

    Membership is stable: the heaviest tenants (billed units under the hub's provider profile)
    join while there is room and then stay, and a member's series starts from its count at
    joining (what it had before stays in :data:`OTHER`), so no series ever decreases: no false
    counter resets for ``rate()``. A reading looks at the per-(component, command, family)
    totals and the members' rows only; choosing new members while there is room looks at every
    tenant through a per-tenant total (one ``heapq.nlargest``).
    """

    def __init__(self, hub: Lowtide, top_tenants: int = 20) -> None:
        self._hub = hub
        self.top_tenants = top_tenants
        #: (component, command, family, tenant) -> count when the tenant joined the export
        self._base: dict[_Row, int] = {}
        self._members: set[str] = set()
        #: what each series last gave (it never goes down)
        self._last: dict[_Row, int] = {}
        self._generation = hub.ledger.generation

    def _admit(self) -> None:
        room = self.top_tenants - len(self._members)
        if room <= 0:
            return
        ledger = self._hub.ledger
        # the ledger's own overflow row is not a tenant: it is summed under OTHER
        skip = self._members | {OTHER_TENANT}
        for tenant, _ in ledger.top_tenants(room, exclude=skip):
            self._members.add(tenant)
            for (c, cmd, fam), n in ledger.tenant_rows(tenant).items():
                self._base[(c, cmd, fam, tenant)] = n

    def read(self) -> dict[_Row, int]:
        """Commands by (component, command, family, tenant label)."""
        ledger = self._hub.ledger
        if ledger.generation != self._generation:  # the ledger was reset: start over
            self._generation = ledger.generation
            self._base.clear()
            self._members.clear()
            self._last.clear()
        self._admit()
        out: dict[_Row, int] = {}
        for (c, cmd, fam, has_tenant), n in ledger.groups().items():
            out[(c, cmd, fam, OTHER if has_tenant else NO_TENANT)] = n
        for t in self._members:
            for (c, cmd, fam), n in ledger.tenant_rows(t).items():
                since = n - self._base.get((c, cmd, fam, t), 0)
                out[(c, cmd, fam, t)] = since
                other = (c, cmd, fam, OTHER)
                out[other] = out.get(other, 0) - since
        # the event loop may count commands while another thread reads: a series read a moment
        # apart from its group total can lag by a few commands, never go down
        last = self._last
        for key, n in out.items():
            prev = last.get(key, 0)
            if n < prev:
                out[key] = prev
            else:
                last[key] = n
        return out


def _commands(tenants: TenantSeries) -> list[Family]:
    commands = Family(
        "redis_commands",
        "counter",
        "Redis commands this process sent, by component, command, key family and tenant",
        ("component", "command", "family", "tenant"),
    )
    for (c, cmd, fam, t), n in sorted(_retry(tenants.read).items()):
        commands.add(n, c, cmd, fam, t)
    return [commands]


def _billed(hub: Lowtide) -> list[Family]:
    ledger = hub.ledger
    billed = Family(
        "redis_billed_commands",
        "counter",
        "Commands as the provider bills them (free ones 0, Global writes once per region)",
        ("component", "provider"),
    )
    by_component: dict[str, int] = {}
    units = ledger.profile.units
    for (component, cmd, _, _), n in _retry(ledger.groups).items():
        by_component[component] = by_component.get(component, 0) + units(cmd) * n
    for component, n in sorted(by_component.items()):
        billed.add(n, component, hub.settings.provider)
    return [billed]


def _saved(hub: Lowtide) -> list[Family]:
    saved = Family(
        "redis_commands_saved",
        "counter",
        "Commands a per-operation design would have sent (L1 hits, lease-covered decisions)",
        ("component",),
    )
    for component, n in sorted(_retry(hub.saved).items()):
        saved.add(n, component)
    return [saved]


def _link(hub: Lowtide) -> list[Family]:
    status = _retry(hub.status)
    mode = Family(
        "mode",
        "gauge",
        "1 for the hub's current mode (summed over workers: how many are in each mode)",
        ("mode",),
    )
    for m in ("distributed", "degraded", "suspended", "local"):
        mode.add(1.0 if status.link.mode.value == m else 0.0, m)
    attempts = Family(
        "redis_connect_attempts", "counter", "Reconnection attempts (PINGs while away)", ()
    )
    attempts.add(status.link.connect_attempts)
    out = [mode, attempts]
    inv = status.invalidation
    if inv is not None:
        up = Family(
            "invalidation_listener_up",
            "gauge",
            "1 while the invalidation listener is subscribed and self-tested",
            (),
        )
        up.add(1.0 if inv.get("healthy") else 0.0)
        received = Family("invalidation_messages", "counter", "Invalidation messages received", ())
        received.add(int(inv.get("received") or 0))
        refused = Family(
            "invalidation_refused_messages",
            "counter",
            "Pushed messages refused: over the bounds (read as a flush) or malformed",
            ("reason",),
        )
        refused.add(int(inv.get("oversized_messages") or 0), "oversized")
        refused.add(int(inv.get("malformed_messages") or 0), "malformed")
        out += [up, received, refused]
    return out


#: cache counters exported, by CacheStats field
_CACHE_COUNTERS = (
    ("hits", "cache_hits", "Reads answered from process memory (L1): 0 commands"),
    ("misses", "cache_misses", "Reads not fresh in L1 (get, get_many, get_or_load, drop-in reads)"),
    ("l2_hits", "cache_l2_hits", "Reads answered by Redis (L2)"),
    ("l2_misses", "cache_l2_misses", "Reads Redis had no value for"),
    ("loads", "cache_loads", "Loader calls"),
    ("load_errors", "cache_load_errors", "Loader calls that raised"),
    ("stale_served", "cache_stale_served", "Fail-safe answers (last good value)"),
    ("invalidations", "cache_invalidations", "L1 entries dropped by a push"),
    ("evictions", "cache_evictions", "L1 entries evicted by the size bounds"),
    ("renewed", "cache_renewed", "Copies renewed before they lapsed (pub/sub and ttl modes)"),
)


def _caches(hub: Lowtide) -> list[Family]:
    """Every cache's L1 and counters, drop-in clients' included. Caches with the same
    (component, name), e.g. two drop-in clients of one component, are summed: one series."""
    infos: Sequence[dict[str, object]] = _retry(hub.cache_info)
    labels = ("component", "cache")
    entries = Family("cache_entries", "gauge", "L1 entries", labels)
    size = Family("cache_size", "gauge", "L1 size", labels, unit="bytes")
    counters = [(key, Family(name, "counter", text, labels)) for key, name, text in _CACHE_COUNTERS]
    sums: dict[tuple[str, str], dict[str, float]] = {}
    for info in infos:
        into = sums.setdefault((str(info["component"]), str(info["name"])), {})
        for key in ("entries", "bytes", *(key for key, _ in counters)):
            into[key] = into.get(key, 0.0) + _number(info.get(key))
    for lb, values in sums.items():
        entries.add(values["entries"], *lb)
        size.add(values["bytes"], *lb)
        for key, fam in counters:
            fam.add(values[key], *lb)
    return [entries, size, *(fam for _, fam in counters)]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _limiters(limiters: Iterable[RateLimiter]) -> list[Family]:
    lb = ("limiter",)
    decisions = Family("limiter_decisions", "counter", "acquire() answers", ("limiter", "decision"))
    reservations = Family(
        "limiter_reservations", "counter", "Reservations sent to Redis (1 command each)", lb
    )
    local = Family("limiter_local_decisions", "counter", "Decisions made locally (Redis away)", lb)
    tokens = Family(
        "limiter_reserved_tokens",
        "counter",
        "Tokens granted by fixed-window reservations (mean lease size: its rate / reservations')",
        lb,
    )
    limit = Family(
        "limiter_limit",
        "gauge",
        "Calls allowed per window (the fleet's agreed limit)",
        lb,
        merge="livemin",
    )
    window = Family("limiter_window", "gauge", "The limit's period", lb, "seconds", "livemax")
    tenants = Family("limiter_tenants", "gauge", "Tenants with a lease held here", lb)
    for lim in limiters:
        info = _retry(lim.info)
        name = str(info["name"])
        decisions.add(_number(info.get("allowed")), name, "allowed")
        decisions.add(_number(info.get("denied")), name, "denied")
        reservations.add(_number(info.get("reservations")), name)
        tokens.add(_number(info.get("reserved_tokens")), name)
        local.add(_number(info.get("local")), name)
        limit.add(_number(info.get("enforced_limit")), name)
        window.add(_number(info.get("per")), name)
        tenants.add(_number(info.get("tenants")), name)
    return [decisions, reservations, tokens, local, limit, window, tenants]


_BREAKER_COUNTERS = (
    ("calls", "breaker_calls", "Guarded calls admitted"),
    ("rejected", "breaker_rejections", "Calls refused while open (CircuitOpen)"),
    ("probes", "breaker_probes", "Half-open probes this process ran"),
    ("trips", "breaker_trips", "Times this process opened the breaker"),
    ("failures", "breaker_failures", "Guarded calls that counted as failures"),
)


#: gauges of tenants by state, by breaker info() key; each combines over workers as the
#: largest (every worker reads the fleet's state)
_BREAKER_STATES = (
    (
        "open",
        "breaker_open_tenants",
        "Tenants whose breaker is open or half-open as this process sees it",
    ),
    (
        "half_open",
        "breaker_half_open_tenants",
        "Tenants whose breaker is half-open as this process sees it",
    ),
    (
        "forced",
        "breaker_forced_tenants",
        "Tenants held open or closed by open()/close() (until automatic() or their end)",
    ),
)


def _breakers(breakers: Iterable[CircuitBreaker]) -> list[Family]:
    lb = ("breaker",)
    counters = [(key, Family(name, "counter", text, lb)) for key, name, text in _BREAKER_COUNTERS]
    gauges = [
        (key, Family(name, "gauge", text, lb, merge="livemax"))
        for key, name, text in _BREAKER_STATES
    ]
    for b in breakers:
        info = _retry(b.info)
        name = str(info["name"])
        for key, fam in (*counters, *gauges):
            fam.add(_number(info.get(key)), name)
    return [*(fam for _, fam in counters), *(fam for _, fam in gauges)]


def build_info() -> Family:
    """``lowtide_build_info{version, python, redis_py}`` = 1."""
    fam = Family(
        "build_info",
        "gauge",
        "lowtide's version (always 1)",
        ("version", "python", "redis_py"),
        merge="livemax",
    )
    fam.add(1.0, __version__, platform.python_version(), _REDIS_PY)
    return fam


#: a function that reads some families now
Reader = Callable[[], list[Family]]


def readers(
    hub: Lowtide,
    tenants: TenantSeries,
    limiters: Sequence[RateLimiter] = (),
    breakers: Sequence[CircuitBreaker] = (),
) -> list[Reader]:
    """Every metric lowtide exports for ``hub``, in groups that read together (no Redis
    command). Every limiter and breaker the hub made is exported, plus ``limiters`` and
    ``breakers`` given (e.g. made on another hub); both are read when a reader runs, so
    components made later are followed."""
    return [
        lambda: [build_info()],
        lambda: _commands(tenants),
        lambda: _billed(hub),
        lambda: _saved(hub),
        lambda: _link(hub),
        lambda: _caches(hub),
        lambda: _limiters(_every(hub.limiters, limiters)),
        lambda: _breakers(_every(hub.breakers, breakers)),
    ]


def _every(made: Sequence[C], given: Sequence[C]) -> list[C]:
    """``made`` and then each of ``given`` not in it (each once)."""
    out = list(made)
    out += [c for c in given if c not in out]
    return out


def read_families(
    hub: Lowtide,
    tenants: TenantSeries,
    limiters: Sequence[RateLimiter] = (),
    breakers: Sequence[CircuitBreaker] = (),
) -> list[Family]:
    """Every metric lowtide exports for ``hub``, read now (no Redis command)."""
    return [fam for read in readers(hub, tenants, limiters, breakers) for fam in read()]
