"""The demo's baselines: the incident's code as it was, as its team fixed it, and unchanged
behind lowtide's drop-in client.

* :class:`Naive`: the incident's code before the fix: a quota GET and a data GET per cache
  operation, a discovery GET per webhook, a rate-limit GET and a circuit-breaker GET per
  outbound call, plus the writes that code needs (fills, the limiter's INCR, the breaker's
  failure counter).
* :class:`TtlFix`: the incident team's fix: quota read directly with its verdict cached 60 s,
  limiter verdicts cached 5 s and breaker state 10 s in process memory, discovery keys
  pre-warmed in Redis with a 1 h TTL.
* :class:`DropIn` (``--dropin``): the naive code unchanged, its redis-py client swapped for
  lowtide's drop-in (``lt.redis(cache_prefixes=...)``).

Quota usage in the baselines is counted generously: one INCRBY per tenant per machine every
300 s (lowtide's quota flush interval), not per operation.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from lowtide.demo.trace import Event
from lowtide.demo.world import (
    BREAKER_VERDICT,
    FAIL_THRESHOLD,
    HEARTBEAT,
    KEEPALIVE,
    LIMIT_VERDICT,
    OPEN_FOR,
    QUOTA_FLUSH,
    QUOTA_VERDICT,
    WINDOW,
    Database,
    DependencyDown,
    ledger_counts,
    to_ms,
)
from lowtide.hub import Lowtide
from lowtide.redis import plain_client

__all__ = ["DropIn", "Naive", "TtlFix"]


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
        px = to_ms(self.cfg.wall(self.cfg.cache_ttl))
        await self.r.set(self._data_key(ev), json.dumps(value), px=px)
        return value["v"], True

    async def write(self, ev: Event) -> None:
        await self.quota_ok(ev.tenant)
        await self.r.set(
            self._data_key(ev),
            json.dumps({"v": ev.version}),
            px=to_ms(self.cfg.wall(self.cfg.cache_ttl)),
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
            await self.r.set(key, tenant, px=to_ms(self.cfg.wall(self.cfg.discovery_ttl)))
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
            await self.r.pexpire(key, to_ms(2 * per))
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
                await self.r.pexpire(fkey, to_ms(self.cfg.wall(WINDOW)))
            if failures >= FAIL_THRESHOLD:
                await self.r.set(
                    f"{self.ns}:circuit_breaker:{tenant}:{connector}",
                    "open",
                    px=to_ms(self.cfg.wall(OPEN_FOR)),
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
            px = to_ms(self.cfg.wall(self.cfg.discovery_ttl))
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
        return ledger_counts(self.hub)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.hub.aclose()
