"""The fleet-wide rate limiter: reserve-ahead leases, spent locally, that never over-admit.

One budget per (limiter, tenant), shared by every hub. A hub reserves a block of tokens with
one atomic command (:mod:`lowtide.limiter.reserve`) and spends it locally, so a decision costs
~1/B commands:

* ``fixed_window``: ``SET NX PX`` (the window's first reservation) or ``INCRBY`` of the window's
  own key; the grant is whatever was left below the limit. Windows are aligned to the
  server's clock (one ``TIME`` per hub). A lease is sized to this hub's expected demand until
  the window ends, capped by its fair share (``limit // fleet size``), and lasts until the
  window ends, so at steady demand a hub reserves about once per window in which it admits
  calls. A reply that shows the window spent is remembered until the window ends; so is a
  window whose reservations every hub heard (:mod:`lowtide.limiter.pushes`), or that another
  hub told the fleet about (:mod:`lowtide.limiter.spent`).
* ``token_bucket``: a hub leases a share of the bucket's rate for a minute (one script call,
  GET + SET inside, renewed when a third is left) and spends a local bucket refilled at that
  rate; beyond it, the same call takes tokens of the shared remainder, which expire
  ``lease_horizon`` after the request was sent (:mod:`lowtide.limiter.rates`). Admissions obey
  ``burst + rate x elapsed`` exactly (the burst reduced by what one horizon refills).

A decision with a lease in hand is one frame (check the tokens and their monotonic deadline,
decrement). Refusals are cached until the window ends (or the bucket refills): repeated denials
cost 0 commands. ``penalize()`` shares a provider's 429/Retry-After (one ``SET PX`` on a
tracked key, at most ``max_penalty`` long). Shared state read back is checked
(:mod:`lowtide.limiter.state`); Redis unavailable: ``on_redis_error``
(:mod:`lowtide.limiter.local`). Never over the limit, never an exception to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lowtide._untrusted import Warnings
from lowtide._validate import seconds
from lowtide.errors import RateLimited, RedisCommandError, RedisUnavailable
from lowtide.keys import build_key, family
from lowtide.limiter.agreement import FleetConfig, LimitConfig
from lowtide.limiter.core import (
    Decision,
    window_end,
    window_index,
)
from lowtide.limiter.lease import Lease
from lowtide.limiter.local import LocalDecisions, OnRedisError
from lowtide.limiter.options import Algorithm, LimiterKwargs, check_arguments
from lowtide.limiter.reserve import DEMAND_PERIOD, Reserver
from lowtide.limiter.spent import SpentWindows
from lowtide.limiter.state import BadState, Penalties, default_max_penalty
from lowtide.limiter.watch import LeaseWatch
from lowtide.modes import Mode, ModeChange
from lowtide.tenancy import TenantLRU, resolve_tenant, tenant_kwargs

if TYPE_CHECKING:
    from lowtide.cache import Cache
    from lowtide.cache.registry import CacheHub

__all__ = ["Algorithm", "LimiterKwargs", "OnRedisError", "RateLimiter"]

log = logging.getLogger("lowtide.limiter")
_NOBODY = object()
#: builds a Decision without the Python-level ``__new__`` of a NamedTuple (the fast path)
_new_decision = tuple.__new__
#: allowed decisions with a small ``remaining``, made once (a Decision is an immutable tuple)
_INTERNED = 1024
_ALLOWED = tuple(Decision(True, n, 0.0) for n in range(_INTERNED))


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
        check_arguments(
            limit=limit,
            per=per,
            algorithm=algorithm,
            on_redis_error=on_redis_error,
            fleet_size=fleet_size,
            max_lease=max_lease,
            lease_horizon=lease_horizon,
            max_tenants=max_tenants,
            max_penalty=max_penalty,
        )
        ns = hub.settings.namespace
        build_key(ns, "limiter", name, None, "")  # validates the name
        self.name = name
        self._what = f"rate limiter {name!r}"
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
        self._mono = hub.clock.monotonic  # the fast path's only clock read
        self._local = LocalDecisions(
            hub, on_redis_error, self.per, fleet_size, limit=lambda: self._agreement.limit
        )
        #: per-tenant state, bounded by ``max_tenants``: an idle tenant's lease is dropped
        #: (its unspent tokens: under-use) unless it is still needed, and what it knew of the
        #: window under way is remembered for local decisions (LocalDecisions.keep, .forget)
        self._leases: TenantLRU[Lease] = TenantLRU(
            max_tenants, Lease, keep_if=self._local.keep, on_evict_entry=self._local.forget
        )
        self.max_tenants = max_tenants
        self._watch = LeaseWatch(self._leases, self.per, hub.server_time, self._tenant_kw)
        self._reserver = Reserver(
            hub, name, self.per, self.family, windows=algorithm == "fixed_window"
        )
        #: token bucket: demand is counted per period of at most DEMAND_PERIOD seconds
        self._period = min(self.per, DEMAND_PERIOD)
        # token bucket: one token every `interval` s; burst reduced by what a lease horizon
        # refills, so tokens spent up to `horizon` after their grant never exceed the bound
        self._interval = self.per / limit
        self._burst = max(1.0, limit * (1 - self.horizon / self.per))
        #: the fleet's agreement on this name's configuration (stricter limit wins)
        self._agreement = FleetConfig(
            hub,
            name,
            LimitConfig(algorithm, limit, self.per),
            self._limit_changed,
            on_stale=self._watch.pause_all,  # the next decision reads the configuration again
        )
        #: the longest penalty written or honoured (seconds)
        self.max_penalty = float(max_penalty or default_max_penalty(self.per))
        self._penalties = Penalties(
            hub,
            name,
            per_tenant=per_tenant,
            max_penalty=self.max_penalty,
            on_change=self._watch.on_penalty_change,
        )
        self._spent = (
            SpentWindows(hub, name, per_tenant=per_tenant, on_spent=self._watch.on_spent)
            if algorithm == "fixed_window" and hub.settings.url is not None
            else None
        )
        #: decisions made on the fast path (all allowed); the others are counted in _stats
        self._fast = 0
        self._last_tenant: str | object | None = _NOBODY
        self._last_lease = Lease()
        self._stats = dict.fromkeys(
            ("decisions", "allowed", "denied", "reservations", "reserved_tokens", "local"), 0
        )
        #: reservations decided locally because Redis held impossible limiter state
        self._stats["bad_state"] = 0
        self._warnings = Warnings(log)
        self._needs_fleet = on_redis_error == "local_share" and fleet_size is None
        self._unsubscribe_mode = hub.on_mode_change(self._on_mode)

    def __repr__(self) -> str:
        return f"<RateLimiter {self.name!r} {self.limit}/{self.per:g}s {self.algorithm}>"

    @property
    def stats(self) -> dict[str, int]:
        """Counters: decisions, allowed, denied, reservations, local, bad_state."""
        out = dict(self._stats)
        out["decisions"] += self._fast
        out["allowed"] += self._fast
        return out

    # -- public API ---------------------------------------------------------------------------
    async def acquire(self, tenant: str | None = None, *, wait: float = 0.0) -> Decision:
        """Take one token for ``tenant``; with ``wait`` > 0, wait up to that long for one.

        Never raises for a denial (see :meth:`hold`); raises TenantRequired without a tenant.
        """
        if tenant is None or not self.per_tenant:
            tenant = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        # the fast path, one frame: the same tenant as last time (already the most recently
        # used), tokens in hand, before their deadline
        if tenant == self._last_tenant:
            lease = self._last_lease
        else:
            lease = self._last_lease = self._leases.get(tenant)
            self._last_tenant = tenant
        if lease.tokens > 0 and self._mono() < lease.until:
            lease.tokens -= 1
            self._fast += 1
            n = lease.tokens + lease.fleet_remaining
            return _ALLOWED[n] if n < _INTERNED else _new_decision(Decision, (True, n, 0.0))
        return await self._acquire(tenant, lease, wait)

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
        lease.drop()
        with contextlib.suppress(RedisUnavailable):
            await self._penalties.write(self._tenant_kw(tenant), until, retry_after)

    async def prefetch(self, tenant: str | None = None) -> None:
        """Do now what the first decision for ``tenant`` would wait for: the server clock
        (1 TIME per hub), the fleet's configuration (about 1 GET per process) and the tenant's
        penalty (at most 1 GET): e.g. at start-up, or right after a tenant connects an
        integration."""
        t = resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)
        with contextlib.suppress(RedisUnavailable):
            await self._hub.sync_server_clock()
        await self._agreement.settle()
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
            lease.drop()

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
            "spent_told": 0 if self._spent is None else self._spent.told,
            "bad_spent": 0 if self._spent is None else self._spent.bad,
            "spent_heard": getattr(self._reserver.pushes, "refusals", 0),
            **self.stats,
        }

    # -- decisions ----------------------------------------------------------------------------
    def _server_now(self) -> float:
        return self._hub.server_time()

    def _lease(self, tenant: str | None) -> Lease:
        # off the fast path: this may make another tenant the most recently used (and an
        # eviction may follow), so the fast path's shortcut is reset
        self._last_tenant = _NOBODY
        return self._leases.get(tenant)

    def _tenant_kw(self, tenant: str | None) -> dict[str, Any]:
        return tenant_kwargs(tenant, per_tenant=self.per_tenant)

    async def _acquire(self, tenant: str | None, lease: Lease, wait: float) -> Decision:
        decide = self._decide if self.algorithm == "fixed_window" else self._decide_bucket
        decision = await decide(tenant, lease)
        if not decision.allowed and wait > 0:
            deadline = self._mono() + wait
            while not decision.allowed:
                if decision.retry_after > deadline - self._mono():
                    break
                await self._hub.clock.sleep(decision.retry_after)
                decision = await decide(tenant, self._lease(tenant))
        self._stats["decisions"] += 1
        self._stats["allowed" if decision.allowed else "denied"] += 1
        return decision

    async def _decide(self, tenant: str | None, lease: Lease) -> Decision:
        reservations = 0
        while True:
            now = self._server_now()
            lease.count_window(window_index(now, self.per))
            if lease.recheck:
                await self._watch.recheck(lease, self._agreement, self._penalties, tenant)
                continue
            if lease.tokens > 0 and self._mono() < lease.until:
                lease.tokens -= 1
                return Decision(True, lease.tokens + lease.fleet_remaining, 0.0)
            if lease.blocked_until > now:  # penalty, refusal, or the window is spent
                lease.asked_other += 1
                return Decision(False, 0, lease.blocked_until - now)
            if lease.pending is not None:
                await self._wait_for(lease, lease.pending)
                continue
            if reservations >= 3:  # the window kept moving under slow replies
                lease.asked_other += 1
                return Decision(False, 0, min(self._interval, 1.0))
            if not self._hub.distributed:
                return self._fallback(lease, now)
            heard = self._reserver.pushes  # others' reservations heard may prove it spent
            if heard is not None and heard.block(lease, tenant, now, self._agreement.limit):
                continue
            reservations += 1
            tell = await self._reserve_or_decide(tenant, lease, 0)
            if isinstance(tell, Decision):
                return tell
            if tell and self._spent is not None:
                await self._spent.tell(self._tenant_kw(tenant), lease, self._server_now(), self.per)

    async def _decide_bucket(self, tenant: str | None, lease: Lease) -> Decision:
        # the token bucket: tokens in hand, then the local bucket of the rate lease, then the
        # shared bucket (one script call, which also renews the lease when a third is left)
        reservations = 0
        while True:
            now, mono = self._server_now(), self._mono()
            lease.count_window(window_index(now, self._period), drop=False)
            if lease.recheck:
                await self._watch.recheck(lease, self._agreement, self._penalties, tenant)
                continue
            if lease.blocked_until > now:  # a penalty, or no shared budget for this name
                lease.asked_other += 1
                return Decision(False, 0, lease.blocked_until - now)
            if lease.tokens > 0 and mono < lease.until:
                lease.tokens -= 1
                return Decision(True, lease.tokens + lease.fleet_remaining, 0.0)
            due = mono >= lease.renew_at and lease.pending is None and self._hub.distributed
            if not due and lease.take_local(mono):
                lease.asked_other += 1
                return Decision(True, int(lease.local) + lease.fleet_remaining, 0.0)
            if lease.pending is not None:
                await self._wait_for(lease, lease.pending)
                continue
            if not self._hub.distributed:
                return self._fallback(lease, now)
            # a renewal with local tokens in hand takes no shared token
            want = 0 if lease.local_wait(mono) == 0 else lease.waiting + 1
            if (want and not due and now < lease.shared_after) or reservations >= 3:
                lease.asked_other += 1
                retry = min(lease.local_wait(mono), max(0.0, lease.shared_after - now))
                return Decision(False, 0, retry if retry > 0 else min(self._interval, 1.0))
            reservations += 1
            local = await self._reserve_or_decide(tenant, lease, want)
            if isinstance(local, Decision):  # no renewal: the tokens in hand still count
                if not local.allowed and lease.take_local(self._mono()):
                    return Decision(True, int(lease.local) + lease.fleet_remaining, 0.0)
                return local

    async def _wait_for(self, lease: Lease, pending: asyncio.Future[None]) -> None:
        # the reservation in flight for this lease; callers waiting are demand it can see
        lease.waiting += 1
        try:
            await asyncio.shield(pending)
        finally:
            lease.waiting -= 1

    async def _reserve_or_decide(
        self, tenant: str | None, lease: Lease, want: int
    ) -> bool | Decision:
        # one reservation (others wait for it); a local decision if Redis cannot make one
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lease.pending = fut
        try:
            return await self._reserve(tenant, lease, want)
        except RedisUnavailable:
            return self._fallback(lease, self._server_now())
        except (RedisCommandError, BadState) as exc:  # impossible state: decide locally
            self._stats["bad_state"] += 1
            self._warnings.warn("state", "%s: deciding locally: %s", self._what, exc)
            return self._fallback(lease, self._server_now())
        finally:
            lease.pending, lease.void = None, False
            fut.set_result(None)

    def _fallback(self, lease: Lease, now: float) -> Decision:
        self._stats["local"] += 1
        return self._local.decide(lease, now, self._agreement.limit)

    def _on_mode(self, change: ModeChange) -> None:
        self._local.on_mode(change)
        if change.new is Mode.DISTRIBUTED:
            # Redis may have restarted empty: a window's next reservation creates its key again
            for lease in self._leases.values():
                lease.key_seen = -1

    # -- reservations -------------------------------------------------------------------------
    async def _reserve(self, tenant: str | None, lease: Lease, want: int = 0) -> bool:
        """One reservation (after the one-off reads it needs; ``want``: the shared tokens a
        token bucket takes); True if the fleet should be told that the window is spent."""
        if self._needs_fleet:
            self._needs_fleet = False
            self._hub.fleet.start()
        await self._hub.sync_server_clock()
        await self._agreement.settle()
        now = self._server_now()
        if self._agreement.conflict is not None:  # cannot share a budget: refuse
            lease.blocked_until = now + min(self.per, 1.0)
            return False
        until = await self._penalties.read(self._tenant_kw(tenant), now)
        if until is not None:
            lease.blocked_until = until
            return False
        now, mono = self._server_now(), self._mono()
        fleet = self.fleet_size or self._hub.fleet.size
        limit = self._agreement.limit
        share = min(self.max_lease, max(1, limit // max(1, fleet)))
        self._stats["reservations"] += 1
        if self.algorithm == "token_bucket":
            await self._reserver.bucket(
                tenant,
                lease,
                now=now,
                mono=mono,
                want=min(want, share),
                fleet=fleet,
                share=share,
                limit=limit,
                cap=self._burst,
                horizon=self.horizon,
            )
            return False
        held = lease.tokens
        spent = await self._reserver.window(
            tenant, lease, now=now, mono=mono, share=share, limit=limit, horizon=self.horizon
        )
        self._stats["reserved_tokens"] += max(0, lease.tokens - held)  # lease size = this / n
        heard = self._reserver.pushes
        return (
            spent
            and self._spent is not None
            and self._spent.wanted(
                lease,
                share,
                others=fleet - 1 if self.fleet_size or self._hub.fleet.settled else None,
                left=self._left_in_window(),
                heard=heard is not None and heard.tells_all(share),
            )
        )

    def _left_in_window(self) -> float:
        """The fraction of the window under way still to run."""
        now = self._server_now()
        return (window_end(window_index(now, self.per), self.per) - now) / self.per

    # -- pushes and fleet agreement -----------------------------------------------------------
    def _limit_changed(self) -> None:
        # the fleet agreed on another limit: token-bucket pacing follows it, and tokens taken
        # under the old rule are given up (under-use, never overshoot)
        limit = self._agreement.limit
        self._interval = self.per / limit
        self._burst = max(1.0, limit * (1 - self.horizon / self.per))
        for lease in self._leases.values():
            lease.end_rate_lease()
        self._watch.drop_all()
