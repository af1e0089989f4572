"""The ways a machine can serve the demo's workload.

* The baselines (:mod:`lowtide.demo.baselines`): :class:`Naive`, the incident's code before
  the fix; :class:`TtlFix`, the incident team's fix (verdict caches of 5-60 s, discovery keys
  pre-warmed); :class:`DropIn` (``--dropin``), the naive code on lowtide's drop-in client.
* :class:`LowtideStrategy`: this library with its defaults, in one invalidation mode
  (``tracking``: CLIENT TRACKING; ``keyspace``: keyspace notifications, the mode for Upstash;
  ``pubsub``: the backplane, for servers with neither). Each connector's per-tenant breaker
  sits under one shared by all tenants (``per_tenant=False``), as docs/breaker.md recommends
  for a dependency that fails for everyone at once.

All of them use the same "database" (the trace's history, 2 ms per query) and the same
dependency (which fails while the trace says so; both in :mod:`lowtide.demo.world`), start with
an empty cache and reach their steady state in the warm-up.

Every duration is in trace seconds and goes through :meth:`DemoConfig.wall`, so a compressed
run divides every period of every strategy (lowtide's own included) by the same factor.
"""

from __future__ import annotations

from lowtide.breaker import CircuitBreaker
from lowtide.demo.baselines import DropIn, Naive, TtlFix
from lowtide.demo.trace import Event
from lowtide.demo.world import (
    FAIL_THRESHOLD,
    HEARTBEAT,
    KEEPALIVE,
    LEASE_HORIZON,
    OPEN_FOR,
    QUOTA_FLUSH,
    WINDOW,
    Database,
    DependencyDown,
    Strategy,
    ledger_counts,
)
from lowtide.errors import CircuitOpen
from lowtide.hub import Lowtide

__all__ = [
    "Database",
    "DropIn",
    "LowtideStrategy",
    "Naive",
    "Strategy",
    "TtlFix",
    "make_strategy",
]


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
        return ledger_counts(self.hub)

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
