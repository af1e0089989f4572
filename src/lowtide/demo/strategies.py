"""The ways a machine can serve the demo's workload.

* :class:`Naive`: the incident's code before the fix: a quota GET and a data GET per cache
  operation, a discovery GET per webhook, a rate-limit GET and a circuit-breaker GET per
  outbound call, plus the writes that code needs (fills, the limiter's INCR, the breaker's
  failure counter).
* :class:`TtlFix`: the incident team's fix: quota read directly with its verdict cached 60 s,
  limiter verdicts cached 5 s and breaker state 10 s in process memory, discovery keys
  pre-warmed in Redis with a 1 h TTL.
* :class:`DropIn` (``--dropin``): the naive code unchanged, its redis-py client swapped for
  lowtide's drop-in (``lt.redis(cache_prefixes=...)``).
* :class:`LowtideStrategy`: this library with its defaults, in one invalidation mode
  (``tracking``: CLIENT TRACKING; ``keyspace``: keyspace notifications, the mode for Upstash;
  ``pubsub``: the backplane, for servers with neither). Each connector's per-tenant breaker
  sits under one shared by all tenants (``per_tenant=False``), as docs/breaker.md recommends
  for a dependency that fails for everyone at once.

All three use the same "database" (the trace's history, 2 ms per query) and the same dependency
(which fails while the trace says so), start with an empty cache and reach their steady state in
the warm-up. Quota usage in the baselines is counted generously: one INCRBY per tenant per
machine every 300 s (lowtide's quota flush interval), not per operation.

Every duration below is in trace seconds and goes through :meth:`DemoConfig.wall`, so a
compressed run divides every period of every strategy (lowtide's own included) by the same
factor.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Protocol

from lowtide.breaker import CircuitBreaker
from lowtide.demo.trace import DemoConfig, Event, Trace
from lowtide.errors import CircuitOpen
from lowtide.hub import Lowtide
from lowtide.redis import plain_client

__all__ = [
    "Database",
    "DropIn",
    "LowtideStrategy",
    "Naive",
    "Strategy",
    "TtlFix",
    "make_strategy",
]

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


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Baseline:
    """What naive and ttl-fix share: a plain redis-py client and the incident's key layout."""

    name = "baseline"

    def __init__(self, url: str, namespace: str, db: Database) -> None:
        self.url = url
        self.r: Any = plain_client(url)
        self.ns = namespace
        self.db = db
        self.cfg = db.cfg
        self._usage: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def setup(self, machine: int) -> None:
        info = await self.r.info("cluster")
        if str(info.get("cluster_enabled")) == "1":  # what the incident's app would use there
            await self.r.aclose()
            self.r = plain_client(self.url, cluster=True)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_usage())

    async def _flush_usage(self) -> None:
        period = self.cfg.wall(QUOTA_FLUSH)
        await asyncio.sleep(random.uniform(0, period))  # spread like lowtide's flushes
        while True:
            usage, self._usage = self._usage, {}
            for tenant, n in usage.items():
                await self.r.incrby(f"{self.ns}:quota:{tenant}:used", n)
            await asyncio.sleep(period)

    async def _quota_read(self, tenant: str) -> bool:
        self._usage[tenant] = self._usage.get(tenant, 0) + 1
        used = await self.r.get(f"{self.ns}:quota:{tenant}:used")
        return int(used or 0) < 10**9

    async def quota_ok(self, tenant: str) -> bool:
        return await self._quota_read(tenant)

    def _data_key(self, ev: Event) -> str:
        return f"{self.ns}:cache:{ev.tenant}:{ev.key}"

    async def read(self, ev: Event) -> tuple[int, bool]:
        await self.quota_ok(ev.tenant)
        raw = await self.r.get(self._data_key(ev))
        if raw is not None:
            return int(json.loads(raw)["v"]), False
        value = await self.db.value(ev.tenant, ev.key)
        px = _ms(self.cfg.wall(self.cfg.cache_ttl))
        await self.r.set(self._data_key(ev), json.dumps(value), px=px)
        return value["v"], True

    async def write(self, ev: Event) -> None:
        await self.quota_ok(ev.tenant)
        await self.r.set(
            self._data_key(ev),
            json.dumps({"v": ev.version}),
            px=_ms(self.cfg.wall(self.cfg.cache_ttl)),
        )

    def _discovery_key(self, connector: str, external_id: str) -> str:
        return f"{self.ns}:discovery:{connector}:{external_id}"

    async def webhook(self, ev: Event) -> str | None:
        key = self._discovery_key(ev.key, ev.external_id)
        raw = await self.r.get(key)
        if raw is not None:
            return str(raw.decode())
        tenant = await self.db.tenant_of(ev.key, ev.external_id)
        if tenant is not None:
            await self.r.set(key, tenant, px=_ms(self.cfg.wall(self.cfg.discovery_ttl)))
        return tenant

    async def breaker_open(self, tenant: str, connector: str) -> bool:
        return await self.r.get(f"{self.ns}:circuit_breaker:{tenant}:{connector}") is not None

    async def limiter_allows(self, tenant: str, connector: str) -> bool:
        per = self.cfg.wall(self.cfg.per)
        window = int(time.time() // per)
        key = f"{self.ns}:rate_limit:{tenant}:{connector}:{window}"
        count = await self.r.get(key)
        if int(count or 0) >= self.cfg.limit:
            return False
        n = await self.r.incr(key)
        if n == 1:
            await self.r.pexpire(key, _ms(2 * per))
        return True

    async def call(self, ev: Event) -> tuple[float, float] | None:
        """Make the outbound call if allowed; return the wall-time interval in which the
        admission was decided (asked, answered), or None when refused."""
        tenant, connector = ev.tenant, ev.key
        if await self.breaker_open(tenant, connector):
            return None
        asked = time.time()
        if not await self.limiter_allows(tenant, connector):
            return None
        decided = (asked, time.time())
        try:
            await self.db.dependency(connector)
        except DependencyDown:
            fkey = f"{self.ns}:cb_failures:{tenant}:{connector}"
            failures = await self.r.incr(fkey)
            if failures == 1:
                await self.r.pexpire(fkey, _ms(self.cfg.wall(WINDOW)))
            if failures >= FAIL_THRESHOLD:
                await self.r.set(
                    f"{self.ns}:circuit_breaker:{tenant}:{connector}",
                    "open",
                    px=_ms(self.cfg.wall(OPEN_FOR)),
                )
        return decided

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.r.aclose()


class Naive(_Baseline):
    """The incident's code before the fix."""

    name = "naive"


class TtlFix(_Baseline):
    """The incident team's fix: local verdict caches (60 s quota, 5 s limiter, 10 s breaker)."""

    name = "ttl-fix"

    def __init__(self, url: str, namespace: str, db: Database) -> None:
        super().__init__(url, namespace, db)
        self._quota: dict[str, tuple[bool, float]] = {}
        self._limits: dict[str, tuple[bool, float]] = {}
        self._breakers: dict[str, tuple[bool, float]] = {}

    async def setup(self, machine: int) -> None:
        await super().setup(machine)
        if machine == 0:  # pre-warm discovery after OAuth: 1 h TTL
            px = _ms(self.cfg.wall(self.cfg.discovery_ttl))
            for path, tenant in self.db.trace.directory.items():
                connector, external = path.split("/", 1)
                await self.r.set(self._discovery_key(connector, external), tenant, px=px)

    async def quota_ok(self, tenant: str) -> bool:
        cached = self._quota.get(tenant)
        if cached is not None and cached[1] > time.time():
            self._usage[tenant] = self._usage.get(tenant, 0) + 1
            return cached[0]
        ok = await self._quota_read(tenant)  # direct read, no recursion into the cache
        self._quota[tenant] = (ok, time.time() + self.cfg.wall(QUOTA_VERDICT))
        return ok

    async def breaker_open(self, tenant: str, connector: str) -> bool:
        key = f"{tenant}:{connector}"
        cached = self._breakers.get(key)
        if cached is not None and time.time() - cached[1] < self.cfg.wall(BREAKER_VERDICT):
            return cached[0]
        is_open = await super().breaker_open(tenant, connector)
        self._breakers[key] = (is_open, time.time())
        return is_open

    async def limiter_allows(self, tenant: str, connector: str) -> bool:
        key = f"{tenant}:{connector}"
        cached = self._limits.get(key)
        if cached is not None and time.time() - cached[1] < self.cfg.wall(LIMIT_VERDICT):
            return cached[0]  # the fix's 5 s verdict cache: admits without counting
        allowed = await super().limiter_allows(tenant, connector)
        self._limits[key] = (allowed, time.time())
        return allowed


class DropIn(_Baseline):
    """The incident's code unchanged, its client swapped for ``lt.redis(cache_prefixes=...)``:
    reads of cache entries, discovery mappings, quota counters and breaker flags are answered
    from process memory with server-pushed invalidation; the rate-limit and failure counters,
    which change on every call, go to Redis as before."""

    name = "dropin"

    def __init__(self, url: str, namespace: str, db: Database, machine: int) -> None:
        super().__init__(url, namespace, db)
        wall = db.cfg.wall
        # the hub's own keys live apart from the app's (its prefixes may not overlap them)
        self.hub = Lowtide(
            url,
            namespace=f"{namespace.replace(':', '-')}-hub",
            instance=f"demo-{machine}",
            max_staleness=wall(db.cfg.staleness_bound),
        )
        self.hub.invalidations.keepalive = wall(KEEPALIVE)
        self.hub.fleet.interval = wall(HEARTBEAT)
        self._reads = 0
        self.r = self.hub.redis(
            cache_prefixes=tuple(
                f"{namespace}:{part}:"
                for part in ("cache", "discovery", "circuit_breaker", "quota")
            )
        )

    async def setup(self, machine: int) -> None:
        await self.hub.start()
        await self.hub.ready(5)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_usage())

    async def read(self, ev: Event) -> tuple[int, bool]:
        self._reads += 1
        return await super().read(ev)

    def local_hits(self) -> int:
        """Cache reads answered from this process's memory so far (0 commands each): the
        reads made minus the GETs of cache entries the ledger saw go to Redis."""
        sent = sum(
            row.count
            for row in self.hub.ledger.snapshot().rows
            if row.command == "get" and ":cache:" in row.family
        )
        return max(0, self._reads - sent)

    def ledger_counts(self) -> dict[str, int]:
        """Commands so far by ``component command`` (lowtide's own attribution)."""
        return _ledger_counts(self.hub)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.hub.aclose()


def _ledger_counts(hub: Lowtide) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in hub.ledger.snapshot().rows:
        label = f"{row.component} {row.command}"
        out[label] = out.get(label, 0) + row.count
    return out


class LowtideStrategy:
    """This library with its defaults, in invalidation mode ``mode`` (every period scaled)."""

    name = "lowtide"

    def __init__(self, url: str, namespace: str, db: Database, machine: int, mode: str) -> None:
        self.db = db
        cfg = db.cfg
        wall = cfg.wall
        self.hub = Lowtide(
            url,
            namespace=namespace.replace(":", "-"),
            instance=f"demo-{machine}",
            invalidation=mode,
            default_ttl=wall(cfg.cache_ttl),
            max_staleness=wall(cfg.staleness_bound),
        )
        # the two periods that are not factory arguments: public attributes, set before start
        self.hub.invalidations.keepalive = wall(KEEPALIVE)
        self.hub.fleet.interval = wall(HEARTBEAT)
        self.cache = self.hub.cache(
            "data",
            ttl=wall(cfg.cache_ttl),
            max_staleness=wall(cfg.staleness_bound),
            negative_ttl=wall(30.0),
            fail_safe_max=wall(600.0),
            fail_safe_throttle=wall(5.0),
        )
        self.tenants = self.hub.tenants(
            loader=db.tenant_of, ttl=wall(cfg.discovery_ttl), negative_ttl=wall(30.0)
        )
        self.limiters = {
            c: self.hub.rate_limiter(c, cfg.limit, wall(cfg.per), lease_horizon=wall(LEASE_HORIZON))
            for c in cfg.connectors
        }

        def breaker(name: str, *, per_tenant: bool) -> CircuitBreaker:
            return self.hub.circuit_breaker(
                name,
                min_calls=FAIL_THRESHOLD,
                failure_rate=0.5,
                window=wall(WINDOW),
                open_for=wall(OPEN_FOR),
                per_tenant=per_tenant,
            )

        self.breakers = {c: breaker(c, per_tenant=True) for c in cfg.connectors}
        # a connector-wide breaker over the per-tenant ones: when the connector itself is down,
        # tenants that call it a few times a minute never reach min_calls on their own
        self.connector_down = {c: breaker(f"{c}-all", per_tenant=False) for c in cfg.connectors}

    async def setup(self, machine: int) -> None:
        cfg = self.db.cfg
        await self.hub.start()
        self.hub.quotas(
            {"standard": 10**9},
            lambda t: "standard",
            flush_interval=cfg.wall(QUOTA_FLUSH),
            plan_ttl=cfg.wall(300.0),
        )
        await self.hub.invalidations.wait_healthy(5)
        await self.hub.sync_server_clock()
        if machine == 0:  # discovery pre-warmed after OAuth
            for path, tenant in self.db.trace.directory.items():
                connector, external = path.split("/", 1)
                await self.tenants.remember(connector, external, tenant)

    async def read(self, ev: Event) -> tuple[int, bool]:
        loaded = False

        async def load() -> dict[str, int]:
            nonlocal loaded
            loaded = True
            return await self.db.value(ev.tenant, ev.key)

        value = await self.cache.get_or_load(ev.key, load, tenant=ev.tenant)
        return int(value["v"]), loaded

    async def write(self, ev: Event) -> None:
        await self.cache.set(ev.key, {"v": ev.version}, tenant=ev.tenant)

    async def webhook(self, ev: Event) -> str | None:
        return await self.tenants.resolve(ev.key, ev.external_id)

    async def call(self, ev: Event) -> tuple[float, float] | None:
        """Make the outbound call if allowed; return the interval in which the admission was
        decided (asked, answered; server time as this process sees it), or None."""
        everyone, this_tenant = self.connector_down[ev.key], self.breakers[ev.key]
        if everyone.state() == "open" or this_tenant.state(ev.tenant) == "open":
            return None  # fail fast before spending a token (0 commands)
        # judged by the clock lowtide's windows follow: the server's, as this process sees it
        asked = self.hub.server_time()
        decision = await self.limiters[ev.key].acquire(ev.tenant)
        if not decision.allowed:
            return None
        decided = (asked, self.hub.server_time())
        try:
            async with everyone.guard(), this_tenant.guard(ev.tenant):
                await self.db.dependency(ev.key)
        except (CircuitOpen, DependencyDown):
            pass
        return decided

    def local_hits(self) -> int:
        """Cache reads answered from this process's memory so far (0 commands each)."""
        return self.cache.stats.hits

    def ledger_counts(self) -> dict[str, int]:
        """Commands so far by ``component command`` (lowtide's own attribution)."""
        return _ledger_counts(self.hub)

    async def close(self) -> None:
        await self.hub.close()


def make_strategy(run: str, url: str, namespace: str, db: Database, machine: int) -> Strategy:
    """The strategy of run ``run`` (``naive``, ``ttl-fix``, ``lowtide/<mode>``)."""
    if run == "naive":
        return Naive(url, namespace, db)
    if run == "ttl-fix":
        return TtlFix(url, namespace, db)
    if run == "dropin":
        return DropIn(url, namespace, db, machine)
    name, _, mode = run.partition("/")
    if name == "lowtide" and mode in ("tracking", "keyspace", "pubsub"):
        return LowtideStrategy(url, namespace, db, machine, mode)
    raise ValueError(
        f"unknown run {run!r}; expected naive, ttl-fix, dropin, lowtide/tracking, "
        "lowtide/keyspace or lowtide/pubsub"
    )
