"""The components a hub creates: caches, tenant discovery, limiters, breakers, quotas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from lowtide.breaker import CircuitBreaker
from lowtide.cache import Cache, CacheOptions, CacheRegistry
from lowtide.codec import Codec
from lowtide.errors import ConfigError
from lowtide.limiter import Algorithm, OnRedisError, RateLimiter
from lowtide.quotas import Period, PlanOf, Quotas
from lowtide.settings import Settings
from lowtide.tenants import TenantLoader, TenantResolver

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["Components"]


class Components:
    """Factories of the hub's components (mixed into :class:`~lowtide.hub.Lowtide`)."""

    _settings: Settings
    _registry: CacheRegistry
    _limiters: list[RateLimiter]
    _breakers: list[CircuitBreaker]
    _quotas: Quotas | None
    _started: bool
    _closed: bool

    def _hub_self(self) -> Lowtide:
        return cast("Lowtide", self)

    def cache(
        self,
        name: str,
        *,
        ttl: float | None = None,
        max_staleness: float | None = None,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_tenant_share: float = 0.1,
        negative_ttl: float = 30.0,
        eager_refresh: float | None = 0.9,
        fail_safe: bool = True,
        fail_safe_max: float = 600.0,
        fail_safe_throttle: float = 5.0,
        soft_timeout: float | None = 0.1,
        max_value_bytes: int | None = None,
        per_tenant: bool = True,
        codec: Codec | None = None,
    ) -> Cache:
        """The tiered cache ``name`` (created on first use; see :class:`CacheOptions`).

        ``ttl`` defaults to ``settings.default_ttl``, ``max_staleness`` to
        ``settings.max_staleness`` and ``max_value_bytes`` to ``settings.max_value_bytes``.
        """
        s = self._settings
        options = CacheOptions(
            ttl=s.default_ttl if ttl is None else ttl,
            max_staleness=s.max_staleness if max_staleness is None else max_staleness,
            max_entries=max_entries,
            max_bytes=max_bytes,
            max_tenant_share=max_tenant_share,
            negative_ttl=negative_ttl,
            eager_refresh=eager_refresh,
            fail_safe=fail_safe,
            fail_safe_max=fail_safe_max,
            fail_safe_throttle=fail_safe_throttle,
            soft_timeout=soft_timeout,
            max_value_bytes=s.max_value_bytes if max_value_bytes is None else max_value_bytes,
            per_tenant=per_tenant,
        )
        return self._registry.cache(name, options, component="cache", codec=codec)

    def rate_limiter(
        self,
        name: str,
        limit: int,
        per: float,
        *,
        algorithm: Algorithm = "fixed_window",
        on_redis_error: OnRedisError = "local_share",
        fleet_size: int | None = None,
        max_lease: int = 1000,
        lease_horizon: float = 1.0,
        per_tenant: bool = True,
        max_tenants: int = 10_000,
    ) -> RateLimiter:
        """A fleet-wide limit of ``limit`` calls per ``per`` seconds, one budget per tenant
        (see :class:`~lowtide.limiter.RateLimiter`)."""
        limiter = RateLimiter(
            self._hub_self(),
            name,
            limit,
            per,
            algorithm=algorithm,
            on_redis_error=on_redis_error,
            fleet_size=fleet_size,
            max_lease=max_lease,
            lease_horizon=lease_horizon,
            per_tenant=per_tenant,
            max_tenants=max_tenants,
        )
        self._limiters.append(limiter)
        return limiter

    def circuit_breaker(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        min_calls: int = 20,
        window: float = 30.0,
        open_for: float = 30.0,
        slow_call: float | None = None,
        quorum: int = 1,
        max_open: float | None = None,
        failure_on: tuple[type[BaseException], ...] = (Exception,),
        ignore: tuple[type[BaseException], ...] = (),
        per_tenant: bool = True,
        max_tenants: int = 10_000,
    ) -> CircuitBreaker:
        """A fleet-wide circuit breaker, one state per tenant (see
        :class:`~lowtide.breaker.CircuitBreaker`)."""
        breaker = CircuitBreaker(
            self._hub_self(),
            name,
            failure_rate=failure_rate,
            min_calls=min_calls,
            window=window,
            open_for=open_for,
            slow_call=slow_call,
            quorum=quorum,
            max_open=max_open,
            failure_on=failure_on,
            ignore=ignore,
            per_tenant=per_tenant,
            max_tenants=max_tenants,
        )
        self._breakers.append(breaker)
        return breaker

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
        decided = sum(
            max(0, lim.stats["decisions"] - lim.stats["reservations"]) for lim in self._limiters
        )
        if decided:
            out["limiter"] = decided
        return out

    def quotas(
        self,
        plans: Mapping[str, int],
        plan_of: PlanOf,
        *,
        period: Period = "day",
        flush_interval: float = 300.0,
        early_fraction: float = 0.1,
        plan_ttl: float = 300.0,
        spool: str | None = None,
    ) -> Quotas:
        """Per-tenant budgets of billed commands (one per hub; see :class:`~lowtide.quotas.Quotas`).

        Starts the background flusher when called inside a running event loop, else at
        :meth:`start`.
        """
        if self._quotas is not None:
            raise ConfigError("quotas() was already configured for this hub")
        self._quotas = Quotas(
            self._hub_self(),
            plans,
            plan_of,
            period=period,
            flush_interval=flush_interval,
            early_fraction=early_fraction,
            plan_ttl=plan_ttl,
            spool=spool,
        )
        if self._started and not self._closed:
            self._quotas.start()
        return self._quotas

    def tenants(
        self,
        loader: TenantLoader | None = None,
        *,
        ttl: float = 3600.0,
        negative_ttl: float = 30.0,
        max_entries: int = 100_000,
    ) -> TenantResolver:
        """Tenant discovery: ``(connector, external id) -> tenant id`` (see
        :class:`~lowtide.tenants.TenantResolver`)."""
        return TenantResolver(
            self._hub_self(), loader, ttl=ttl, negative_ttl=negative_ttl, max_entries=max_entries
        )
