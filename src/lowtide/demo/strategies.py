"""The three ways a machine can serve the demo's workload.

* :class:`Naive`: the incident's code before the fix: a quota GET and a data GET per cache
  operation, a discovery GET per webhook, a rate-limit GET and a circuit-breaker GET per
  outbound call, plus the writes that code needs (fills, the limiter's INCR, the breaker's
  failure counter).
* :class:`TtlFix`: the incident team's fix: quota read directly with its verdict cached 60 s,
  limiter verdicts cached 5 s and breaker state 10 s in process memory, discovery keys
  pre-warmed in Redis with a 1 h TTL.
* :class:`LowtideStrategy`: this library with its defaults.

All three use the same "database" (the trace's history, 2 ms per query) and the same dependency
(which fails while the trace says so), and all start from a warm shared cache (every item in
Redis, as in production). Quota usage in the baselines is counted generously: one INCRBY per
tenant per machine every 300 s (lowtide's quota flush interval), not per operation.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Protocol

from lowtide.demo.trace import Event, Trace
from lowtide.errors import CircuitOpen
from lowtide.hub import Lowtide
from lowtide.redis import plain_client

__all__ = ["STRATEGIES", "Database", "LowtideStrategy", "Naive", "Strategy", "TtlFix"]

FAIL_THRESHOLD = 3  # failures in WINDOW seconds that open a breaker (all strategies)
WINDOW = 10.0
OPEN_FOR = 5.0
QUOTA_FLUSH = 300.0


class DependencyDown(Exception):
    """The simulated third-party API failed."""


class Database:
    """The source of truth behind every cache: the trace's history, 2 ms per query.

    Its clock is trace time: during the fast warm-up the time of the event being replayed, then
    ``warmup + (wall time - measured start)``.
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.queries = 0
        self.virtual: float | None = 0.0  # trace time while warming up, None once measuring
        self.measure_start = 0.0

    def now(self) -> float:
        """Trace time (seconds)."""
        if self.virtual is not None:
            return self.virtual
        return self.trace.config.warmup + time.time() - self.measure_start

    async def value(self, tenant: str, key: str) -> dict[str, int]:
        """The current value of a cached item."""
        self.queries += 1
        await asyncio.sleep(0.002)
        return {"v": self.trace.version_at(f"{tenant}/{key}", self.now())}

    async def tenant_of(self, connector: str, external_id: str) -> str | None:
        """Tenant discovery's source of truth."""
        self.queries += 1
        await asyncio.sleep(0.002)
        return self.trace.directory.get(f"{connector}/{external_id}")

    def items(self) -> list[tuple[str, str]]:
        """Every (tenant, key) the trace reads or writes."""
        seen = {(e.tenant, e.key) for e in self.trace.events if e.kind in ("read", "write")}
        return sorted(seen)

    async def dependency(self, connector: str) -> None:
        """Call the third-party API (fails during the trace's outage of one connector)."""
        cfg = self.trace.config
        t = (self.now() - cfg.warmup) / cfg.seconds  # fraction of the measured window
        await asyncio.sleep(0.001)
        if connector == cfg.failing_connector and cfg.failing_from <= t < cfg.failing_to:
            raise DependencyDown(connector)


class Strategy(Protocol):
    """What a machine does for each kind of event."""

    name: str

    async def setup(self, machine: int) -> None: ...
    async def read(self, ev: Event) -> tuple[int, bool]: ...
    async def write(self, ev: Event) -> None: ...
    async def webhook(self, ev: Event) -> str | None: ...
    async def call(self, ev: Event) -> bool: ...
    async def close(self) -> None: ...


class _Baseline:
    """What naive and ttl-fix share: a plain redis-py client and the incident's key layout."""

    name = "baseline"

    def __init__(self, url: str, namespace: str, db: Database) -> None:
        self.url = url
        self.r: Any = plain_client(url)
        self.ns = namespace
        self.db = db
        self.cfg = db.trace.config
        self._usage: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def setup(self, machine: int) -> None:
        info = await self.r.info("cluster")
        if str(info.get("cluster_enabled")) == "1":  # what the incident's app would use there
            await self.r.aclose()
            self.r = plain_client(self.url, cluster=True)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_usage())
        if machine == 0:  # a warm shared cache, as in production
            for tenant, key in self.db.items():
                await self.r.set(f"{self.ns}:cache:{tenant}:{key}", json.dumps({"v": 0}), ex=300)

    async def _flush_usage(self) -> None:
        await asyncio.sleep(random.uniform(0, QUOTA_FLUSH))  # spread like lowtide's flushes
        while True:
            usage, self._usage = self._usage, {}
            for tenant, n in usage.items():
                await self.r.incrby(f"{self.ns}:quota:{tenant}:used", n)
            await asyncio.sleep(QUOTA_FLUSH)

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
        await self.r.set(self._data_key(ev), json.dumps(value), ex=300)
        return value["v"], True

    async def write(self, ev: Event) -> None:
        await self.quota_ok(ev.tenant)
        await self.r.set(self._data_key(ev), json.dumps({"v": ev.version}), ex=300)

    async def webhook(self, ev: Event) -> str | None:
        key = f"{self.ns}:discovery:{ev.key}:{ev.external_id}"
        raw = await self.r.get(key)
        if raw is not None:
            return str(raw.decode())
        tenant = await self.db.tenant_of(ev.key, ev.external_id)
        if tenant is not None:
            await self.r.set(key, tenant, ex=3600)
        return tenant

    async def breaker_open(self, tenant: str, connector: str) -> bool:
        return await self.r.get(f"{self.ns}:circuit_breaker:{tenant}:{connector}") is not None

    async def limiter_allows(self, tenant: str, connector: str) -> bool:
        window = int(time.time() // self.cfg.per)
        key = f"{self.ns}:rate_limit:{tenant}:{connector}:{window}"
        count = await self.r.get(key)
        if int(count or 0) >= self.cfg.limit:
            return False
        n = await self.r.incr(key)
        if n == 1:
            await self.r.expire(key, int(self.cfg.per * 2))
        return True

    async def call(self, ev: Event) -> bool:
        tenant, connector = ev.tenant, ev.key
        if await self.breaker_open(tenant, connector):
            return False
        if not await self.limiter_allows(tenant, connector):
            return False
        try:
            await self.db.dependency(connector)
        except DependencyDown:
            fkey = f"{self.ns}:cb_failures:{tenant}:{connector}"
            failures = await self.r.incr(fkey)
            if failures == 1:
                await self.r.expire(fkey, int(WINDOW))
            if failures >= FAIL_THRESHOLD:
                await self.r.set(
                    f"{self.ns}:circuit_breaker:{tenant}:{connector}", "open", ex=int(OPEN_FOR)
                )
        return True

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
            for path, tenant in self.db.trace.directory.items():
                connector, external = path.split("/", 1)
                await self.r.set(f"{self.ns}:discovery:{connector}:{external}", tenant, ex=3600)

    async def quota_ok(self, tenant: str) -> bool:
        cached = self._quota.get(tenant)
        if cached is not None and cached[1] > time.time():
            self._usage[tenant] = self._usage.get(tenant, 0) + 1
            return cached[0]
        ok = await self._quota_read(tenant)  # direct read, no recursion into the cache
        self._quota[tenant] = (ok, time.time() + 60.0)
        return ok

    async def breaker_open(self, tenant: str, connector: str) -> bool:
        key = f"{tenant}:{connector}"
        cached = self._breakers.get(key)
        if cached is not None and time.time() - cached[1] < 10.0:
            return cached[0]
        is_open = await super().breaker_open(tenant, connector)
        self._breakers[key] = (is_open, time.time())
        return is_open

    async def limiter_allows(self, tenant: str, connector: str) -> bool:
        key = f"{tenant}:{connector}"
        cached = self._limits.get(key)
        if cached is not None and time.time() - cached[1] < 5.0:
            return cached[0]  # the fix's 5 s verdict cache: admits without counting
        allowed = await super().limiter_allows(tenant, connector)
        self._limits[key] = (allowed, time.time())
        return allowed


class LowtideStrategy:
    """This library, with its defaults."""

    name = "lowtide"

    def __init__(self, url: str, namespace: str, db: Database, machine: int) -> None:
        self.db = db
        cfg = db.trace.config
        self.hub = Lowtide(url, namespace=namespace.replace(":", "-"), instance=f"demo-{machine}")
        self.cache = self.hub.cache("data", ttl=300)
        self.tenants = self.hub.tenants(loader=db.tenant_of)
        self.limiters = {c: self.hub.rate_limiter(c, cfg.limit, cfg.per) for c in cfg.connectors}
        self.breakers = {
            c: self.hub.circuit_breaker(
                c,
                min_calls=FAIL_THRESHOLD,
                failure_rate=0.5,
                window=WINDOW,
                open_for=OPEN_FOR,
            )
            for c in cfg.connectors
        }

    async def setup(self, machine: int) -> None:
        await self.hub.start()
        self.hub.quotas({"standard": 10**9}, lambda t: "standard", flush_interval=QUOTA_FLUSH)
        await self.hub.invalidations.wait_healthy(5)
        await self.hub.sync_server_clock()
        if machine == 0:  # a warm shared cache, and discovery pre-warmed after OAuth
            by_tenant: dict[str, dict[str, Any]] = {}
            for tenant, key in self.db.items():
                by_tenant.setdefault(tenant, {})[key] = {"v": 0}
            for tenant, values in by_tenant.items():
                await self.cache.set_many(values, tenant=tenant)
            self.cache.clear_local()  # this process's L1 starts cold like the others
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

    async def warm_call(self, ev: Event) -> None:
        """Warm-up for a call: read the shared limiter and breaker state once."""
        await self.limiters[ev.key].prefetch(ev.tenant)
        await self.breakers[ev.key].prefetch(ev.tenant)

    async def call(self, ev: Event) -> bool:
        if self.breakers[ev.key].state(ev.tenant) == "open":
            return False  # fail fast before spending a token (0 commands)
        decision = await self.limiters[ev.key].acquire(ev.tenant)
        if not decision.allowed:
            return False
        try:
            async with self.breakers[ev.key].guard(ev.tenant):
                await self.db.dependency(ev.key)
        except (CircuitOpen, DependencyDown):
            pass
        return True

    def local_hits(self) -> int:
        """Cache reads answered from this process's memory so far (0 commands each)."""
        return self.cache.stats.hits

    def ledger_counts(self) -> dict[str, int]:
        """Commands so far by ``component command`` (lowtide's own attribution)."""
        out: dict[str, int] = {}
        for row in self.hub.ledger.snapshot().rows:
            label = f"{row.component} {row.command}"
            out[label] = out.get(label, 0) + row.count
        return out

    async def close(self) -> None:
        await self.hub.close()


STRATEGIES = ("naive", "ttl-fix", "lowtide")


def make_strategy(name: str, url: str, namespace: str, db: Database, machine: int) -> Strategy:
    """The strategy called ``name``."""
    if name == "naive":
        return Naive(url, namespace, db)
    if name == "ttl-fix":
        return TtlFix(url, namespace, db)
    if name == "lowtide":
        return LowtideStrategy(url, namespace, db, machine)
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
