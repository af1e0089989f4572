"""The fleet's shared state of one breaker: reading it (checked), writing it, trip votes.

Every tenant's state lives at ``<ns>:b:<name>:<tenant>:state``, read through a tiered cache
(component ``breaker``): a tracked key, so every hub learns a write by push and reads it once.
Trip votes (``quorum`` > 1) are untracked counters under the ``fleet`` component. What the
state *means* is decided by :class:`~lowtide.breaker.breaker.CircuitBreaker`; this module only
moves it and checks what comes back (see :mod:`lowtide.breaker.state`).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from lowtide._untrusted import Warnings, shown
from lowtide.breaker.state import FleetState, parse_state
from lowtide.cache.options import CacheOptions, pushed_state
from lowtide.errors import LowtideError, RedisCommandError, SerializationError
from lowtide.keys import build_key
from lowtide.tenancy import Attributions, tenant_kwargs

if TYPE_CHECKING:
    from lowtide.cache import Cache
    from lowtide.cache.registry import CacheHub

__all__ = ["SharedState"]

log = logging.getLogger("lowtide.breaker")


class SharedState:
    """One breaker's fleet state in Redis (see module docs)."""

    def __init__(
        self,
        hub: CacheHub,
        name: str,
        *,
        per_tenant: bool,
        max_open: float,
        attribution: Attributions,
        stats: dict[str, int],
    ) -> None:
        self._hub = hub
        self._name = name
        self._per_tenant = per_tenant
        self._max_open = max_open
        self._att = attribution
        self._stats = stats
        self._warnings = Warnings(log)
        self.cache: Cache = hub.caches.cache(name, self._options(), component="breaker", codec=None)

    def _options(self) -> CacheOptions:
        push = self._hub.settings.invalidation != "ttl"
        return pushed_state(
            # the state changes only by writes that are pushed; without push, bound it
            max_staleness=3600.0 if push else self._hub.settings.max_staleness,
            entry_bytes=400,
            fail_safe_max=self._max_open,
            max_value_bytes=256,
            per_tenant=self._per_tenant,
        )

    def _kw(self, tenant: str | None) -> dict[str, Any]:
        return tenant_kwargs(tenant, per_tenant=self._per_tenant)

    async def read(self, tenant: str | None) -> FleetState | None:
        """The fleet state (0 commands from L1, else 1 GET); None if there is none, Redis
        cannot tell, or the value is not a well-formed state (counted)."""
        try:
            value: object = await self.cache.get("state", **self._kw(tenant))
        except (SerializationError, RedisCommandError) as exc:  # unreadable, or WRONGTYPE
            value = exc
        except LowtideError:
            return None  # Redis cannot tell: decide locally
        return self.checked(value, self._hub.server_time())

    def checked(self, value: object, now: float) -> FleetState | None:
        """The fleet state ``value`` (as read, or the error that made it unreadable) holds,
        None if none; a value that is not a well-formed state is counted in
        ``stats["bad_state"]``, logged (rate-limited) and read as none."""
        if value is None:
            return None
        fleet = parse_state(value, now=now, max_open=self._max_open)
        if fleet is None:  # not a well-formed state: decide locally
            self._stats["bad_state"] += 1
            self._warnings.warn(
                "state",
                "breaker %r: ignoring a fleet state that is not well-formed: %s",
                self._name,
                shown(value),
            )
        return fleet

    def peek(self, tenant: str | None, now: float) -> FleetState | None:
        """The fleet state in L1 (no I/O), a forced one that has ended read as none. A bad
        value in L1 was counted when it was read; here it is only ignored."""
        value = self.cache.peek("state", **self._kw(tenant))
        fleet = parse_state(value, now=now, max_open=self._max_open)
        if fleet is not None and fleet.forced is not None and now >= fleet.until:
            return None
        return fleet

    async def write(self, tenant: str | None, fleet: FleetState, ttl: float) -> None:
        """Store ``fleet`` (1 SET, +1 PUBLISH in pub/sub mode); raises what the cache raises
        (a write while Redis is away stays in this hub's L1)."""
        await self.cache.set("state", fleet.to_dict(), ttl=ttl, **self._kw(tenant))

    async def write_open(self, tenant: str | None, until: float, opens: int, now: float) -> int:
        """Store an automatic open state until ``until``; its generation, or -1 if it could
        not be shared (logged)."""
        gen = int(now * 1000)
        ttl = max(1.0, until - now) + self._max_open
        try:
            await self.write(tenant, FleetState(round(until, 3), gen, opens), ttl)
        except LowtideError:
            log.warning("breaker %s: could not share the open state", self._name, exc_info=True)
            return -1
        return gen

    async def delete(self, tenant: str | None) -> None:
        """Remove the state (1 DEL, +1 PUBLISH in pub/sub mode): every hub closes on the push."""
        await self.cache.delete("state", **self._kw(tenant))

    async def vote(self, tenant: str | None, now: float, window: float, quorum: int) -> bool:
        """Count this hub's trip in this window's votes (1 INCR, +1 PEXPIRE for the first
        voter); True for the ``quorum``-th voter, who writes the state."""
        slot = math.floor(now / window)
        ns = self._hub.settings.namespace
        key = build_key(ns, "fleet", f"breaker.{self._name}", tenant, f"votes.{slot}")
        att = self._att(tenant)
        try:
            votes = int(await self._hub.gateway.call(att, "INCR", key))
            if votes == 1:
                await self._hub.gateway.call(att, "PEXPIRE", key, math.ceil(window * 2000))
        except LowtideError:
            return False
        return votes == quorum  # not yet a quorum (or someone else wrote the state)
