"""The fleet-wide rate limiter: reserve-ahead leases, spent locally, that never over-admit.

One budget per (limiter, tenant), shared by every hub. A hub reserves a block of tokens with
one atomic command and spends it locally, so a decision costs ~1/B commands:

* ``fixed_window``: ``INCRBY <ns>:r:<name>:<tenant>:w<index> B`` (``PEXPIRE`` only after the
  window's first reservation); the grant is whatever was left below the limit. Windows are
  aligned to the server's clock (one ``TIME`` per hub).
* ``token_bucket``: one GCRA script (GET + SET inside) takes up to B tokens. Local tokens expire
  ``lease_horizon`` after the request was sent, and the bucket's burst is reduced by what that
  horizon could refill, so admissions obey ``burst + rate x elapsed`` exactly.

A refusal is cached until the window ends (or the bucket refills): repeated denials cost 0
commands. ``penalize()`` shares a provider's 429/Retry-After with one ``SET PX`` on a tracked
key; other hubs drop their leases on the push and read it once. A penalty is at most
``max_penalty`` long (default: an hour, or ten windows if longer), written or read back.

Shared state read back is checked (:mod:`lowtide.limiter.state`): a penalty that is not a
deadline within ``max_penalty`` is ignored (``bad_penalties``); a counter or bucket reply that
no lowtide writer could have caused, or an error reply, makes this decision local, as when Redis
is away (``bad_state``). Never over the limit, never an exception to the caller.

When Redis is unavailable (or the hub is suspended) the limiter follows ``on_redis_error``:
``local_share`` admits ``limit / fleet size`` per window locally (and charges what it admitted to
the fleet counter when Redis returns within the same window), ``allow`` admits everything,
``deny`` refuses everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from lowtide._untrusted import CLOCK_SLACK, Warnings
from lowtide._validate import integer, optional_seconds, seconds
from lowtide.cache.store import Key
from lowtide.errors import (
    ConfigError,
    LowtideError,
    RateLimited,
    RedisCommandError,
    RedisUnavailable,
)
from lowtide.keys import build_key, family
from lowtide.limiter.agreement import FleetConfig, LimitConfig
from lowtide.limiter.core import (
    Decision,
    fallback_budget,
    fixed_window_grant,
    next_lease_size,
    window_end,
    window_index,
)
from lowtide.limiter.state import (
    BadState,
    Penalties,
    check_bucket_reply,
    check_window_reply,
    default_max_penalty,
)
from lowtide.modes import Mode, ModeChange
from lowtide.redis.scripts import Script
from lowtide.tenancy import Attributions, TenantLRU, resolve_tenant, tenant_kwargs

if TYPE_CHECKING:
    from lowtide.cache import Cache
    from lowtide.cache.registry import CacheHub

__all__ = ["Algorithm", "LimiterKwargs", "OnRedisError", "RateLimiter"]

log = logging.getLogger("lowtide.limiter")
Algorithm = Literal["fixed_window", "token_bucket"]
OnRedisError = Literal["local_share", "allow", "deny"]
GCRA = Script.from_package("gcra_take")


class LimiterKwargs(TypedDict, total=False):
    """The optional :class:`RateLimiter` arguments, as :meth:`Lowtide.rate_limiter` takes them
    (each default lives in :class:`RateLimiter`)."""

    algorithm: Algorithm
    on_redis_error: OnRedisError
    fleet_size: int | None
    max_lease: int
    lease_horizon: float
    per_tenant: bool
    max_tenants: int
    max_penalty: float | None


class _Lease:
    """What one hub holds for one tenant of one limiter."""

    __slots__ = (
        "blocked_until",
        "expires",
        "fleet_remaining",
        "granted_at",
        "local_used",
        "local_window",
        "pending",
        "reserved_window",
        "size",
        "tokens",
        "unreported",
        "waiting",
        "window",
    )

    def __init__(self) -> None:
        self.tokens = 0
        self.window = -1  # fixed window the tokens belong to
        self.expires = 0.0  # token bucket: tokens unusable after this wall time
        self.size = 1
        self.granted_at = -math.inf
        self.blocked_until = 0.0
        self.fleet_remaining = 0
        self.reserved_window = -1  # window of the last reservation (fleet_remaining's window)
        self.local_used = 0  # admissions while Redis was unavailable, in local_window
        self.local_window = -1
        self.unreported = 0  # of those, not yet charged to the fleet counter
        self.pending: asyncio.Future[None] | None = None
        self.waiting = 0  # callers waiting for the reservation in flight: visible demand


class RateLimiter:
    """A fleet-wide limit of ``limit`` calls per ``per`` seconds per tenant.

    Create it with :meth:`Lowtide.rate_limiter`.
    """

    def __init__(
        self,
        hub: CacheHub,
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
        max_penalty: float | None = None,
    ) -> None:
        integer("limit", limit)
        seconds("per", per)
        if algorithm not in ("fixed_window", "token_bucket"):
            raise ConfigError(f"algorithm: fixed_window or token_bucket, got {algorithm!r}")
        if on_redis_error not in ("local_share", "allow", "deny"):
            raise ConfigError(f"on_redis_error: local_share, allow or deny, got {on_redis_error!r}")
        if fleet_size is not None:
            integer("fleet_size", fleet_size)
        integer("max_lease", max_lease)
        seconds("lease_horizon", lease_horizon)
        integer("max_tenants", max_tenants)
        optional_seconds("max_penalty", max_penalty)
        ns = hub.settings.namespace
        build_key(ns, "limiter", name, None, "")  # validates the name
        self.name = name
        self.limit = limit
        self.per = float(per)
        self.algorithm = algorithm
        self.on_redis_error = on_redis_error
        self.fleet_size = fleet_size
        self.max_lease = max_lease
        self.horizon = min(lease_horizon, self.per / 10)
        self.per_tenant = per_tenant
        self.family = family(ns, "limiter", name)
        self._hub = hub
        self._ns = ns
        #: per-tenant state, bounded by ``max_tenants`` (dropping an idle tenant's lease only
        #: strands its unspent tokens: under-use, never overshoot); a lease with a reservation
        #: in flight is kept
        self._leases: TenantLRU[_Lease] = TenantLRU(
            max_tenants, _Lease, keep_if=lambda lease: lease.pending is not None
        )
        self.max_tenants = max_tenants
        self._att = Attributions("limiter", self.family)
        # token bucket: one token every `interval` s; burst reduced by what a lease horizon
        # refills, so tokens spent up to `horizon` after their grant never exceed the bound
        self._interval = self.per / limit
        self._burst = max(1.0, limit * (1 - self.horizon / self.per))
        #: the fleet's agreement on this name's configuration (stricter limit wins)
        self._agreement = FleetConfig(
            hub, name, LimitConfig(algorithm, limit, self.per), self._limit_changed
        )
        #: the longest penalty written or honoured (seconds)
        self.max_penalty = float(max_penalty or default_max_penalty(self.per))
        self._penalties = Penalties(
            hub,
            name,
            per_tenant=per_tenant,
            max_penalty=self.max_penalty,
            on_change=self._on_penalty_change,
        )
        self.stats = {"decisions": 0, "allowed": 0, "denied": 0, "reservations": 0, "local": 0}
        #: reservations decided locally because Redis held impossible limiter state
        self.stats["bad_state"] = 0
        self._warnings = Warnings(log)
        self._needs_fleet = on_redis_error == "local_share" and fleet_size is None
        #: server time at which Redis became unavailable (None while distributed): the window
        #: under way then may already be in use by other hubs (see fallback_budget)
        self._outage_began: float | None = None if hub.distributed else hub.server_time()
        self._unsubscribe_mode = hub.on_mode_change(self._on_mode)

    @property
    def _what(self) -> str:
        return f"rate limiter {self.name!r}"

    def __repr__(self) -> str:
        return f"<RateLimiter {self.name!r} {self.limit}/{self.per:g}s {self.algorithm}>"

    # -- public API ---------------------------------------------------------------------------
    async def acquire(self, tenant: str | None = None, *, wait: float = 0.0) -> Decision:
        """Take one token for ``tenant``; with ``wait`` > 0, wait up to that long for one.

        Never raises for a denial (see :meth:`hold`); raises TenantRequired without a tenant.
        """
        tenant = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        decision = await self._decide(tenant)
        deadline = self._hub.clock.monotonic() + wait if wait > 0 and not decision.allowed else 0.0
        while not decision.allowed and wait > 0:
            left = deadline - self._hub.clock.monotonic()
            if decision.retry_after > left:
                break
            await self._hub.clock.sleep(decision.retry_after)
            decision = await self._decide(tenant)
        self.stats["decisions"] += 1
        self.stats["allowed" if decision.allowed else "denied"] += 1
        return decision

    @contextlib.asynccontextmanager
    async def hold(
        self, tenant: str | None = None, *, wait: float = 0.0
    ) -> AsyncIterator[Decision]:
        """``async with limiter.hold(tenant): ...`` runs the block or raises RateLimited."""
        decision = await self.acquire(tenant, wait=wait)
        if not decision.allowed:
            raise RateLimited(
                f"rate limit {self.name!r} reached for this tenant; retry in "
                f"{decision.retry_after:.3f}s",
                retry_after=decision.retry_after,
            )
        yield decision

    async def penalize(self, tenant: str | None, retry_after: float) -> None:
        """Stop calls for ``tenant`` fleet-wide for ``retry_after`` seconds (a provider's 429),
        at most ``max_penalty`` (a longer ``retry_after`` is cut to it).

        1 SET PX; this hub stops at once, the others when the push reaches them.
        """
        retry_after = min(seconds("retry_after", retry_after), self.max_penalty)
        tenant = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        lease = self._lease(tenant)
        until = self._server_now() + retry_after
        lease.blocked_until = max(lease.blocked_until, until)
        lease.tokens = 0
        with contextlib.suppress(RedisUnavailable):
            await self._penalties.write(self._tenant_kw(tenant), until, retry_after)

    async def prefetch(self, tenant: str | None = None) -> None:
        """Read ``tenant``'s shared penalty state now (at most 1 GET), so the first decision
        does not wait for it: e.g. right after a tenant connects an integration."""
        t = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        await self._penalties.read(self._tenant_kw(t), self._server_now())

    @property
    def penalty_cache(self) -> Cache:
        """The tiered cache holding shared penalties (component ``control``)."""
        return self._penalties.cache

    def drop_lease(self, tenant: str | None = None) -> None:
        """Give up the tokens this hub holds for ``tenant`` (0 commands): the next decision
        reserves again. Unspent tokens are under-use, never overshoot."""
        tenant = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        lease = self._leases.peek(tenant)
        if lease is not None:
            lease.tokens = 0

    def info(self) -> dict[str, Any]:
        """Configuration and counters (decisions, reservations, local decisions)."""
        return {
            "name": self.name,
            "limit": self.limit,
            "enforced_limit": self._agreement.limit,
            "config_conflict": (
                None if self._agreement.conflict is None else self._agreement.conflict.text()
            ),
            "per": self.per,
            "algorithm": self.algorithm,
            "tenants": len(self._leases),
            "max_penalty": self.max_penalty,
            "bad_penalties": self._penalties.bad,
            "bad_config": self._agreement.bad,
            **self.stats,
        }

    # -- decisions ----------------------------------------------------------------------------
    def _server_now(self) -> float:
        return self._hub.server_time()

    def _lease(self, tenant: str | None) -> _Lease:
        return self._leases.get(tenant)

    def _tenant_kw(self, tenant: str | None) -> dict[str, Any]:
        return tenant_kwargs(tenant, per_tenant=self.per_tenant)

    async def _decide(self, tenant: str | None) -> Decision:
        lease = self._lease(tenant)
        reservations = 0
        while True:
            now = self._server_now()
            if lease.blocked_until > now:
                return Decision(False, 0, lease.blocked_until - now)
            if lease.tokens > 0 and self._usable(lease, now):
                lease.tokens -= 1
                return Decision(True, lease.tokens + lease.fleet_remaining, 0.0)
            if lease.pending is not None:
                lease.waiting += 1
                try:
                    await asyncio.shield(lease.pending)
                finally:
                    lease.waiting -= 1
                continue
            if reservations >= 3:  # the window kept moving under slow replies
                return Decision(False, 0, min(self._interval, 1.0))
            if not self._hub.distributed:
                return self._fallback(lease, now)
            reservations += 1
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lease.pending = fut
            try:
                await self._reserve(tenant, lease, now)
            except RedisUnavailable:
                return self._fallback(lease, self._server_now())
            except (RedisCommandError, BadState) as exc:  # impossible state: decide locally
                self.stats["bad_state"] += 1
                self._warnings.warn("state", "%s: deciding locally: %s", self._what, exc)
                return self._fallback(lease, self._server_now())
            finally:
                lease.pending = None
                fut.set_result(None)

    def _usable(self, lease: _Lease, now: float) -> bool:
        if self.algorithm == "fixed_window":
            return lease.window == window_index(now, self.per)
        return now < lease.expires

    def _fallback(self, lease: _Lease, now: float) -> Decision:
        self.stats["local"] += 1
        if self.on_redis_error == "allow":
            return Decision(True, 0, 0.0)
        if self.on_redis_error == "deny":
            return Decision(False, 0, self._hub.settings.reconnect_min)
        w = window_index(now, self.per)
        if lease.local_window != w:
            lease.local_window, lease.local_used, lease.unreported = w, 0, 0
        began = self._outage_began if self._outage_began is not None else now
        budget = fallback_budget(
            limit=self._agreement.limit,
            fleet=self.fleet_size or self._hub.fleet.size,
            window=w,
            outage_window=window_index(began, self.per),
            reserved_window=lease.reserved_window,
            remaining=lease.fleet_remaining,
        )
        if lease.local_used < budget:
            lease.local_used += 1
            lease.unreported += 1
            return Decision(True, budget - lease.local_used, 0.0)
        return Decision(False, 0, window_end(w, self.per) - now)

    def _on_mode(self, change: ModeChange) -> None:
        if change.new is Mode.DISTRIBUTED:
            self._outage_began = None
        elif self._outage_began is None:
            self._outage_began = self._server_now()

    async def _reserve(self, tenant: str | None, lease: _Lease, now: float) -> None:
        if self._needs_fleet:
            self._needs_fleet = False
            self._hub.fleet.start()
        await self._hub.sync_server_clock()
        await self._agreement.settle()
        now = self._server_now()
        if self._agreement.conflict is not None:  # cannot share a budget: refuse
            lease.blocked_until = now + min(self.per, 1.0)
            return
        until = await self._penalties.read(self._tenant_kw(tenant), now)
        if until is not None:
            lease.blocked_until = until
            return
        fleet = self.fleet_size or self._hub.fleet.size
        limit = self._agreement.limit
        cap = min(self.max_lease, max(1, limit // max(1, fleet)))
        remaining = lease.fleet_remaining if lease.granted_at > -math.inf else limit
        size = next_lease_size(
            lease.size,
            lasted=now - lease.granted_at,
            horizon=self.horizon,
            remaining=remaining,
            fleet=fleet,
            cap=cap,
        )
        # callers already queued behind this reservation are demand we can see
        size = max(size, min(lease.waiting + 1, cap, max(1, remaining // (2 * fleet))))
        self.stats["reservations"] += 1
        if self.algorithm == "fixed_window":
            await self._reserve_window(tenant, lease, now, size)
        else:
            await self._reserve_bucket(tenant, lease, now, size)
        lease.size = size
        lease.granted_at = now
        lease.reserved_window = window_index(now, self.per)

    async def _reserve_window(
        self, tenant: str | None, lease: _Lease, now: float, size: int
    ) -> None:
        w = window_index(now, self.per)
        # what this hub admitted on its own share while Redis was away, in this same window,
        # is charged now so the fleet counter stays an upper bound of admissions
        owed = lease.unreported if lease.local_window == w else 0
        charge = size + owed
        key = build_key(self._ns, "limiter", self.name, tenant, f"w{w}")
        gw = self._hub.gateway
        att = self._att(tenant)
        counter = check_window_reply(await gw.call(att, "INCRBY", key, charge), charge)
        lease.unreported = 0
        if counter == charge:  # first reservation of the window: give the key a lifetime
            ttl_ms = math.ceil((window_end(w, self.per) - now + self.per) * 1000)
            with contextlib.suppress(LowtideError):
                await gw.call(att, "PEXPIRE", key, ttl_ms)
        limit = self._agreement.limit
        granted = max(0, fixed_window_grant(counter, charge, limit) - owed)
        lease.fleet_remaining = max(0, limit - counter)
        lease.window = w
        lease.tokens = granted
        if granted == 0:
            lease.blocked_until = window_end(w, self.per)

    async def _reserve_bucket(
        self, tenant: str | None, lease: _Lease, now: float, size: int
    ) -> None:
        key = build_key(self._ns, "limiter", self.name, tenant, "tat")
        reply = await self._hub.gateway.run_script(
            self._att(tenant),
            GCRA,
            [key],
            [
                f"{now * 1000:.3f}",
                f"{self._interval * 1000:.6f}",
                f"{self._burst:.6f}",
                size,
            ],
        )
        max_wait_ms = (self._interval + self.horizon + CLOCK_SLACK) * 1000
        granted, retry_ms, left = check_bucket_reply(reply, max_wait_ms)
        lease.tokens = granted
        lease.expires = now + self.horizon
        lease.fleet_remaining = left
        if granted == 0:
            lease.blocked_until = now + retry_ms / 1000

    def _limit_changed(self) -> None:
        # the fleet agreed on another limit: token-bucket pacing follows it, and tokens taken
        # under the old rule are given up (under-use, never overshoot)
        limit = self._agreement.limit
        self._interval = self.per / limit
        self._burst = max(1.0, limit * (1 - self.horizon / self.per))
        for lease in self._leases.values():
            lease.tokens = 0

    def _on_penalty_change(self, k: Key | None) -> None:
        # a penalty was written or removed somewhere: drop leases so the next call reads it
        if k is None:
            for lease in self._leases.values():
                lease.tokens = 0
            return
        held = self._leases.peek(k[0])
        if held is not None:
            held.tokens = 0
