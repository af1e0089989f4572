"""The hub: one object per process that owns every connection to Redis and every component.

:class:`Lowtide` builds the components (caches, tenant discovery, limiters, breakers, quotas)
and owns their lifecycle. Components never see this class: they are typed against the narrow
:class:`~lowtide.runtime.HubView` protocol, which :class:`Lowtide` implements. The link to
Redis and the mode machine (distributed / degraded / suspended / local) live in
:class:`~lowtide.connectivity.Connectivity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Unpack

from lowtide._named import Named
from lowtide.blocklist import TenantBlockList
from lowtide.breaker import BreakerKwargs, CircuitBreaker
from lowtide.cache import Cache, CacheKwargs, CacheOptions, CacheRegistry
from lowtide.clock import Clock, SystemClock
from lowtide.codec import Codec
from lowtide.connectivity import Connectivity, ModeListener
from lowtide.control import FleetSwitch
from lowtide.dropin import DropInEngine, DropInRedis, drop_in
from lowtide.errors import ConfigError, LowtideError
from lowtide.fleet import Fleet
from lowtide.fleetview import FleetPublisher
from lowtide.health import HubStatus, hub_health, metrics_log_loop
from lowtide.invalidation import Invalidations
from lowtide.ledger import Ledger, profile_for_provider
from lowtide.limiter import LimiterKwargs, RateLimiter
from lowtide.modes import Mode, ModeChange
from lowtide.quotas import PlanOf, QuotaEvent, Quotas, QuotasKwargs
from lowtide.redis import Gateway
from lowtide.redis.client import check_url
from lowtide.settings import Settings
from lowtide.tenants import TenantLoader, TenantResolver, TenantsKwargs

__all__ = ["Lowtide"]

log = logging.getLogger("lowtide")

#: cache options whose default comes from the hub's settings when not given
_FROM_SETTINGS = ("ttl", "max_staleness", "max_value_bytes")


class Lowtide:
    """The lowtide hub. Use it as ``async with Lowtide(url) as lt: ...``.

    ``url=None`` runs local-only. Any other :class:`~lowtide.settings.Settings` field can be
    passed as a keyword argument, or a whole ``settings`` object can be given.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            settings = Settings(url=url, **options)
        else:
            if url is not None:
                options["url"] = url
            if options:
                settings = settings.with_(**options)
        check_url(settings)  # a URL redis-py cannot use is a ConfigError now, not at start
        self._settings = settings
        self._clock: Clock = clock or SystemClock()
        self.ledger = Ledger(
            profile_for_provider(settings.provider, settings.read_regions),
            instance=settings.instance,
            provider=settings.provider,
            clock=self._clock,
        )
        self._link = Connectivity(settings, self._clock, self.ledger)
        self._started = False
        self._closed = False
        self._invalidations: Invalidations | None = None
        self._registry = CacheRegistry(self)
        self._fleet: Fleet | None = None
        #: limiters and breakers by name, with the arguments each was created with
        self._limiters: Named[RateLimiter] = Named("rate_limiter", RateLimiter)
        self._breakers: Named[CircuitBreaker] = Named("circuit_breaker", CircuitBreaker)
        self._quotas: Quotas | None = None
        self._publisher: FleetPublisher | None = None
        self._switch: FleetSwitch | None = None
        #: drop-in clients made by :meth:`redis`, closed with the hub
        self._dropins: list[tuple[DropInRedis, DropInEngine]] = []

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> Lowtide:
        """A hub configured from environment variables (see :meth:`Settings.from_env`)."""
        return cls(settings=Settings.from_env(env, **overrides), clock=clock)

    def __repr__(self) -> str:
        return (
            f"<Lowtide {self._settings.instance!r} mode={self.mode.value} "
            f"url={self._settings.redacted_url!r} namespace={self._settings.namespace!r}>"
        )

    # -- the HubView members ----------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        """The frozen settings this hub runs with."""
        return self._settings

    @property
    def clock(self) -> Clock:
        """The clock every component of this hub uses."""
        return self._clock

    @property
    def mode(self) -> Mode:
        """The current :class:`Mode`."""
        return self._link.mode

    @property
    def distributed(self) -> bool:
        """True while Redis is in use."""
        return self._link.mode is Mode.DISTRIBUTED

    @property
    def gateway(self) -> Gateway:
        """The gateway to Redis; raises :class:`RedisUnavailable` when there is none."""
        return self._link.gateway

    @property
    def invalidations(self) -> Invalidations:
        """The process's invalidation listener (started on first use once the hub started)."""
        if self._invalidations is None:
            self._invalidations = Invalidations(self)
            if self._started and not self._closed:
                self._invalidations.start()
        return self._invalidations

    @property
    def fleet(self) -> Fleet:
        """Heartbeats and fleet size (started by limiters that need a local share)."""
        if self._fleet is None:
            self._fleet = Fleet(self)
        return self._fleet

    @property
    def caches(self) -> CacheRegistry:
        """Every tiered cache of this hub (application caches and control-plane state)."""
        return self._registry

    @property
    def quota_blocked(self) -> TenantBlockList:
        """Tenants over their command quota: their commands are refused without I/O."""
        return self._link.quota_blocked

    @property
    def server_clock_offset(self) -> float:
        """Seconds to add to this machine's wall clock to get the server's (one TIME)."""
        return self._link.server_clock_offset

    def server_time(self) -> float:
        """Wall-clock seconds aligned to the server's clock (see :meth:`sync_server_clock`)."""
        return self._link.server_time()

    async def sync_server_clock(self) -> None:
        """Measure the server's clock once (1 TIME) so fleet windows align across machines."""
        await self._link.sync_server_clock()

    @property
    def fleet_suspended(self) -> bool:
        """True while the fleet-wide switch (``lowtide suspend``) holds this hub suspended."""
        return self._link.fleet_suspended

    @property
    def quota_manager(self) -> Quotas | None:
        """The quotas configured with :meth:`quotas` (None until then)."""
        return self._quotas

    @property
    def switch(self) -> FleetSwitch | None:
        """The fleet-wide kill switch watcher (None when ``fleet_switch`` is off or not started)."""
        return self._switch

    @property
    def publisher(self) -> FleetPublisher | None:
        """The fleet-view snapshot publisher (None unless ``fleet_view`` is on and started)."""
        return self._publisher

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Lowtide:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect (unless suspended or local-only), start background tasks, and wait (at most
        ``settings.start_wait``, 2 s by default) until the hub is :meth:`ready`.

        An unreachable server does not raise: the hub starts ``degraded`` and reconnects.
        """
        if self._closed:
            raise LowtideError("this hub was closed; create a new one")
        if self._started:
            return
        self._started = True
        s = self._settings
        if s.url is not None and s.fleet_switch and not s.suspend:
            self._switch = FleetSwitch(self)
            await self._link.start(gate=self._switch.suspension)
            self._switch.start()
        else:
            await self._link.start()
        if self._invalidations is not None:
            self._invalidations.start()
        if self._quotas is not None:
            self._quotas.start()
        if s.fleet_view and s.url is not None:
            self._publisher = FleetPublisher(self)
            self._publisher.start()
        if s.track_metrics:
            self._link.spawn(metrics_log_loop(self))
        if s.start_wait > 0 and self.distributed and self._invalidations is not None:
            await self.ready(s.start_wait)
        log.info("lowtide started: %r", self)

    async def ready(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Wait until process memory can be used: True once the hub is distributed and its
        invalidation listener is subscribed and self-tested (or at once when there is nothing
        to wait for: local-only, suspended, ``invalidation="ttl"``); False if ``timeout`` (real
        seconds) passes first. Before that, caches still work but read through to Redis and
        keep nothing in L1.
        """
        s = self._settings
        if s.url is None or self.mode is Mode.SUSPENDED:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await self.wait_for(Mode.DISTRIBUTED, timeout):
            return False
        if s.invalidation == "ttl":
            return True
        return await self.invalidations.wait_healthy(max(0.0, deadline - loop.time()))

    async def aclose(self) -> None:
        """Stop background tasks and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._quotas is not None:
            await self._quotas.aclose()
        for breaker in self._breakers:
            await breaker.aclose()
        await self._registry.aclose()
        for client, engine in self._dropins:
            await engine.aclose()
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)
        for job in (self._fleet, self._publisher, self._switch, self._invalidations):
            if job is not None:
                await job.aclose()
        await self._link.aclose()

    async def close(self) -> None:
        """Same as :meth:`aclose` (kept for existing code)."""
        await self.aclose()

    # -- mode switch ----------------------------------------------------------------------
    def suspend(self, reason: str = "runtime") -> None:
        """Stop using Redis now; components keep working on local state.

        Open connections are closed in the background. No-op when local-only.
        """
        self._link.suspend(reason)

    def suspend_for_fleet(self, detail: str) -> None:
        """Apply the fleet-wide switch: suspended, but the listener stays to hear the resume."""
        self._link.suspend("fleet", detail)

    def resume(self) -> None:
        """Undo :meth:`suspend`: reconnect now and go back to distributed once Redis answers.

        The hub is ``degraded`` until the first PING succeeds; :meth:`wait_for` waits for it.
        """
        if self._started and not self._closed:
            self._link.resume()

    def on_mode_change(self, listener: ModeListener) -> Callable[[], None]:
        """Call ``listener(change)`` on every mode change; returns a function that unsubscribes."""
        return self._link.on_mode_change(listener)

    async def wait_for(self, mode: Mode, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the hub is in ``mode``; False if ``timeout`` (real seconds) passes first."""
        return await self._link.wait_for(mode, timeout)

    @property
    def history(self) -> tuple[ModeChange, ...]:
        """The last mode changes, oldest first."""
        return self._link.history

    # -- components -----------------------------------------------------------------------
    def cache(
        self, name: str, *, codec: Codec | None = None, **options: Unpack[CacheKwargs]
    ) -> Cache:
        """The tiered cache ``name`` (created on first use; see :class:`CacheOptions`).

        ``ttl`` defaults to ``settings.default_ttl``, ``max_staleness`` to
        ``settings.max_staleness`` and ``max_value_bytes`` to ``settings.max_value_bytes``;
        every other option to its :class:`CacheOptions` default.
        """
        s = self._settings
        given: dict[str, Any] = dict(options)
        defaults = {
            "ttl": s.default_ttl,
            "max_staleness": s.max_staleness,
            "max_value_bytes": s.max_value_bytes,
        }
        for field in _FROM_SETTINGS:
            if given.get(field) is None:
                given[field] = defaults[field]
        return self._registry.cache(name, CacheOptions(**given), component="cache", codec=codec)

    def redis(
        self,
        cache_prefixes: Iterable[str] = (),
        *,
        component: str = "app",
        max_staleness: float | None = None,
        local_ttl: float | None = None,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        **redis_options: Any,
    ) -> DropInRedis:
        """A drop-in ``redis.asyncio.Redis`` on this hub's server (see docs/dropin.md).

        Reads of keys under ``cache_prefixes`` (GET, MGET, HGET, HGETALL, SMEMBERS, LRANGE,
        ZRANGE, ...) are answered from process memory with the tiered cache's push
        invalidation and staleness bound (``max_staleness``, default the hub's; ``local_ttl``
        caps a copy's life, default ``max_staleness``); everything else goes to Redis as
        redis-py sends it. Every command is in the ledger under ``component``. Other keyword
        arguments are redis-py's (``decode_responses``, ``socket_timeout``, ...); options
        naming another server or database are refused. Create it before :meth:`start` when
        you can: made later, it restarts the invalidation listener once (1-2 s without
        process memory) so the server tracks its prefixes.
        """
        if self._closed:
            raise LowtideError("this hub was closed; create a new one")
        client, engine = drop_in(
            self,
            cache_prefixes,
            component=component,
            max_staleness=max_staleness,
            local_ttl=local_ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            redis_options=redis_options,
        )
        self._dropins.append((client, engine))
        return client

    def rate_limiter(
        self, name: str, limit: int, per: float, **options: Unpack[LimiterKwargs]
    ) -> RateLimiter:
        """The fleet-wide limit ``name``: ``limit`` calls per ``per`` seconds, one budget per
        tenant (see :class:`~lowtide.limiter.RateLimiter`).

        Asking again for the same name returns the same object; asking with other arguments
        is a :class:`ConfigError` naming the difference. Processes that disagree about a name
        are reconciled fleet-wide (see :mod:`lowtide.limiter.agreement`).
        """
        return self._limiters.get_or_create(self, name, limit, per, **options)

    def circuit_breaker(self, name: str, **options: Unpack[BreakerKwargs]) -> CircuitBreaker:
        """The fleet-wide circuit breaker ``name``, one state per tenant (see
        :class:`~lowtide.breaker.CircuitBreaker`).

        Asking again for the same name returns the same object; asking with other arguments
        is a :class:`ConfigError` naming the difference.
        """
        return self._breakers.get_or_create(self, name, **options)

    @property
    def limiters(self) -> tuple[RateLimiter, ...]:
        """Every rate limiter this hub made, in the order they were made."""
        return tuple(self._limiters)

    @property
    def breakers(self) -> tuple[CircuitBreaker, ...]:
        """Every circuit breaker this hub made, in the order they were made."""
        return tuple(self._breakers)

    def quotas(
        self, plans: Mapping[str, int], plan_of: PlanOf, **options: Unpack[QuotasKwargs]
    ) -> Quotas:
        """Per-tenant budgets of billed commands (one per hub; see :class:`~lowtide.quotas.Quotas`).

        Starts the background flusher when called inside a running event loop, else at
        :meth:`start`.
        """
        if self._quotas is not None:
            raise ConfigError("quotas() was already configured for this hub")
        self._quotas = Quotas(self, plans, plan_of, **options)
        self._quotas.on_event(self._quota_event)
        if self._started and not self._closed:
            self._quotas.start()
        return self._quotas

    def _quota_event(self, event: QuotaEvent) -> None:
        if not event.over:  # back from local-only: its local writes never reached Redis
            self._registry.forget_tenant(event.tenant)

    def tenants(
        self, loader: TenantLoader | None = None, **options: Unpack[TenantsKwargs]
    ) -> TenantResolver:
        """Tenant discovery: ``(connector, external id) -> tenant id`` (see
        :class:`~lowtide.tenants.TenantResolver`)."""
        return TenantResolver(self, loader, **options)

    # -- observability --------------------------------------------------------------------
    def saved(self) -> dict[str, int]:
        """Commands a per-operation design would have sent and lowtide did not, by component.

        Every cache, tenant-discovery, breaker-state and penalty read answered from process
        memory saved one GET; every limiter decision made from a lease in hand or a cached
        denial saved at least one command.
        """
        out: dict[str, int] = {}
        for cache in self._registry:
            if cache.stats.hits:
                out[cache.component] = out.get(cache.component, 0) + cache.stats.hits
        for _, engine in self._dropins:
            if engine.stats.hits:
                out[engine.component] = out.get(engine.component, 0) + engine.stats.hits
        decided = sum(
            max(0, lim.stats["decisions"] - lim.stats["reservations"]) for lim in self._limiters
        )
        if decided:
            out["limiter"] = decided
        return out

    def cache_info(self) -> list[dict[str, Any]]:
        """``info()`` of every tiered cache (:attr:`caches`) and of every drop-in client's
        memory (``name="redis"``, its ``component``): what health and metrics report."""
        return self._registry.info() + [engine.info() for _, engine in self._dropins]

    def status(self) -> HubStatus:
        """A read-only record of everything health reports are made from."""
        inv = self._invalidations
        return HubStatus(
            settings=self._settings,
            link=self._link.status(),
            invalidation=None if inv is None else inv.info(),
            caches=self.cache_info(),
            saved=self.saved(),
            ledger=self.ledger.totals(),
        )

    def health(self) -> dict[str, Any]:
        """Status for health endpoints (see :func:`lowtide.health.hub_health`). No secrets."""
        return hub_health(self.status())
