"""The fleet-wide circuit breaker: local decisions, shared state changes, one probe per fleet.

Per (breaker, tenant):

* **Closed**: each machine evaluates its own sliding window (failure share, minimum calls, slow
  calls). A guarded call costs **0 commands**: the fleet state is read through the tiered cache
  (one GET the first time a machine sees the tenant, then L1, kept correct by push).
* **Trip**: the machine that trips writes the open state once (``SET <ns>:b:<name>:<t>:state``,
  a tracked key), so every other machine learns it by push and reads it once. With
  ``quorum=k`` a trip is first a vote (``INCR`` on a per-window counter) and the state is
  written only by the k-th voter; until then only the voters are open.
* **Half-open**: after the open period, the first machine to win ``SET ... NX PX`` on the
  probe key of that open generation runs exactly one call; everyone else keeps failing fast.
  Success deletes the state (every machine closes on the push); failure writes a longer open
  period (doubling, capped at ``max_open``).

While Redis is unavailable every machine runs its breaker locally (and probes locally).

The fleet state read back is untrusted: :func:`~lowtide.breaker.state.parse_state` accepts only
a well-formed one (``until`` within ``max_open`` of now); anything else (wrong types, NaN, a
deadline years ahead, a value the cache cannot read) is read as "no fleet state", counted in
``stats["bad_state"]`` and logged at most once a minute. ``guard()`` and ``state()`` never
raise for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from lowtide._listeners import Listeners
from lowtide._tasks import BackgroundTasks
from lowtide._untrusted import Warnings, shown
from lowtide._validate import fraction, integer, optional_seconds, seconds
from lowtide.breaker.core import BreakerCore, State
from lowtide.breaker.probe import ProbeLeases
from lowtide.breaker.state import FleetState, parse_state
from lowtide.cache.options import CacheOptions, pushed_state
from lowtide.cache.store import Key
from lowtide.errors import CircuitOpen, LowtideError, RedisCommandError, SerializationError
from lowtide.keys import build_key, family
from lowtide.tenancy import Attributions, TenantLRU, resolve_tenant, tenant_kwargs

if TYPE_CHECKING:
    from lowtide.cache import Cache
    from lowtide.cache.registry import CacheHub

__all__ = ["BreakerKwargs", "CircuitBreaker", "Transition"]

log = logging.getLogger("lowtide.breaker")


class Transition(NamedTuple):
    """A state change of one tenant's breaker as this machine saw it."""

    breaker: str
    tenant: str | None
    old: str
    new: str
    reason: str
    at: float


Listener = Callable[[Transition], None]


class BreakerKwargs(TypedDict, total=False):
    """The optional :class:`CircuitBreaker` arguments, as :meth:`Lowtide.circuit_breaker`
    takes them (each default lives in :class:`CircuitBreaker`)."""

    failure_rate: float
    min_calls: int
    window: float
    open_for: float
    slow_call: float | None
    quorum: int
    max_open: float | None
    failure_on: tuple[type[BaseException], ...]
    ignore: tuple[type[BaseException], ...]
    per_tenant: bool
    max_tenants: int


class CircuitBreaker:
    """Create it with :meth:`Lowtide.circuit_breaker`; use ``async with breaker.guard(t):``."""

    def __init__(
        self,
        hub: CacheHub,
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
    ) -> None:
        fraction("failure_rate", failure_rate)
        integer("min_calls", min_calls)
        seconds("window", window)
        seconds("open_for", open_for)
        optional_seconds("slow_call", slow_call)
        optional_seconds("max_open", max_open)
        integer("quorum", quorum)
        integer("max_tenants", max_tenants)
        ns = hub.settings.namespace
        build_key(ns, "breaker", name, None, "")  # validates the name
        self.name = name
        self.failure_rate = float(failure_rate)
        self.min_calls = min_calls
        self.window = float(window)
        self.open_for = float(open_for)
        self.max_open = float(max_open) if max_open is not None else 10 * self.open_for
        self.slow_call = slow_call
        self.quorum = quorum
        self.failure_on = failure_on
        self.ignore = ignore
        self.per_tenant = per_tenant
        self.family = family(ns, "breaker", name)
        self._hub = hub
        self._ns = ns
        #: per-tenant state, bounded by ``max_tenants`` (only closed breakers are dropped: an
        #: open one is kept until it closes)
        self._cores: TenantLRU[BreakerCore] = TenantLRU(
            max_tenants,
            self._new_core,
            keep_if=lambda core: core.state is not State.CLOSED or core.probing,
            on_evict=self._forget,
        )
        self.max_tenants = max_tenants
        self._fleet_gen: dict[str | None, int] = {}  # open generation adopted from the fleet
        self._probe_lost: dict[str | None, float] = {}
        self._listeners: Listeners[Transition] = Listeners(log, "breaker listener")
        self._att = Attributions("breaker", self.family)
        self._states: Cache = hub.caches.cache(
            name, self._state_options(), component="breaker", codec=None
        )
        self._states.watch(self._on_fleet_change)
        self._refreshing: set[str | None] = set()
        self._tasks = BackgroundTasks(log, f"breaker {name!r}", level=logging.WARNING)
        lease_ms = math.ceil(max(self.open_for, (self.slow_call or 0) * 2) * 1000)
        self._probes = ProbeLeases(hub, name, lease_ms, self._att, self._tasks)
        self.stats = {
            "calls": 0,
            "rejected": 0,
            "probes": 0,
            "trips": 0,
            "failures": 0,
            "cancelled": 0,
            "bad_state": 0,  # fleet states read back that were not well-formed (ignored)
        }
        self._warnings = Warnings(log)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} tenants={len(self._cores)}>"

    def _state_options(self) -> CacheOptions:
        push = self._hub.settings.invalidation != "ttl"
        return pushed_state(
            # the state changes only by writes that are pushed; without push, bound it
            max_staleness=3600.0 if push else self._hub.settings.max_staleness,
            entry_bytes=400,
            fail_safe_max=self.max_open,
            max_value_bytes=256,
            per_tenant=self.per_tenant,
        )

    # -- public API ---------------------------------------------------------------------------
    def state(self, tenant: str | None = None) -> str:
        """``closed``, ``open`` or ``half_open`` for ``tenant`` as this machine knows it.

        Never sends a command.
        """
        t = self._tenant(tenant)
        core = self._cores.peek(t)
        now = self._server_now()
        # a bad value in L1 was counted when it was read; here it is only ignored
        fleet = parse_state(
            self._states.peek("state", **self._kw(t)), now=now, max_open=self.max_open
        )
        if fleet is not None:
            return State.OPEN.value if now < fleet.until else State.HALF_OPEN.value
        if core is None:
            return State.CLOSED.value
        return core.current(now).value

    def on_transition(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(Transition)`` on every state change seen here.

        Returns a function that unsubscribes.
        """
        return self._listeners.add(listener)

    @contextlib.asynccontextmanager
    async def guard(self, tenant: str | None = None) -> AsyncIterator[None]:
        """Run the block if the breaker allows it, and count its outcome.

        Raises :class:`CircuitOpen` (with ``retry_after``) without running the block when open.
        Exceptions from the block propagate unchanged; those in ``failure_on`` (and not in
        ``ignore``) count as failures, as does a block slower than ``slow_call``.

        A block that is cancelled (an outer ``asyncio.timeout``, a task cancelled at shutdown)
        or interrupted by any other ``BaseException`` records nothing: it is neither a success
        nor a failure, a probe it held is given back (the breaker stays open or half-open, and
        the fleet-wide probe lease is released), and no fleet state changes. To count a slow
        dependency as a failure, put the timeout inside the block.
        """
        t = self._tenant(tenant)
        core = self._core(t)
        probe = await self._admit(t, core)
        self.stats["calls"] += 1
        started = self._hub.clock.monotonic()
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._abandon(t, core, probe)
                raise
            failed = isinstance(exc, self.failure_on) and not isinstance(exc, self.ignore)
            await self._finish(t, core, probe, failed)
            raise
        slow = (
            self.slow_call is not None and self._hub.clock.monotonic() - started >= self.slow_call
        )
        await self._finish(t, core, probe, slow)

    async def prefetch(self, tenant: str | None = None) -> None:
        """Read ``tenant``'s fleet state now (at most 1 GET), so the first guarded call costs
        nothing: e.g. right after a tenant connects an integration."""
        await self._fleet_state(self._tenant(tenant))

    @property
    def state_cache(self) -> Cache:
        """The tiered cache holding the fleet's open states (component ``breaker``)."""
        return self._states

    async def fleet_state(self, tenant: str | None = None) -> dict[str, Any] | None:
        """The fleet's shared state for ``tenant`` (0 commands from L1, else 1 GET), or None
        when no hub has it open (or Redis cannot tell, or holds no well-formed state)."""
        fleet = await self._fleet_state(tenant)
        return None if fleet is None else fleet.to_dict()

    def info(self) -> dict[str, Any]:
        """Configuration, counters and how many tenants are open here."""
        now = self._server_now()
        return {
            "name": self.name,
            "tenants": len(self._cores),
            "open": sum(1 for c in self._cores.values() if c.current(now) is not State.CLOSED),
            **self.stats,
        }

    # -- internals ----------------------------------------------------------------------------
    def _server_now(self) -> float:
        return self._hub.server_time()

    def _tenant(self, tenant: str | None) -> str | None:
        return resolve_tenant(
            tenant, per_tenant=self.per_tenant, what=f"circuit breaker {self.name!r}"
        )

    def _kw(self, tenant: str | None) -> dict[str, Any]:
        return tenant_kwargs(tenant, per_tenant=self.per_tenant)

    def _new_core(self) -> BreakerCore:
        return BreakerCore(
            failure_rate=self.failure_rate,
            min_calls=self.min_calls,
            window=self.window,
            open_for=self.open_for,
            max_open=self.max_open,
        )

    def _core(self, tenant: str | None) -> BreakerCore:
        return self._cores.get(tenant)

    def _forget(self, tenant: str | None) -> None:
        self._fleet_gen.pop(tenant, None)
        self._probe_lost.pop(tenant, None)

    def _emit(self, tenant: str | None, old: State, new: State, reason: str) -> None:
        if old is new:
            return
        change = Transition(self.name, tenant, old.value, new.value, reason, self._server_now())
        level = logging.WARNING if new is State.OPEN else logging.INFO
        log.log(level, "breaker %s tenant=%s %s -> %s (%s)", self.name, tenant, old, new, reason)
        self._listeners.emit(change)

    def _reject(self, retry_after: float) -> CircuitOpen:
        self.stats["rejected"] += 1
        return CircuitOpen(
            f"circuit {self.name!r} is open for this tenant; retry in {retry_after:.3f}s",
            retry_after=max(0.0, retry_after),
        )

    async def _fleet_state(self, tenant: str | None) -> FleetState | None:
        try:
            value = await self._states.get("state", **self._kw(tenant))
        except (SerializationError, RedisCommandError) as exc:  # unreadable, or WRONGTYPE
            value = exc
        except LowtideError:
            return None  # Redis cannot tell: decide locally
        if value is None:
            return None
        fleet = parse_state(value, now=self._server_now(), max_open=self.max_open)
        if fleet is None:  # not a well-formed state: decide locally
            self.stats["bad_state"] += 1
            self._warnings.warn(
                "state",
                "breaker %r: ignoring a fleet state that is not well-formed: %s",
                self.name,
                shown(value),
            )
        return fleet

    def _adopt(
        self, tenant: str | None, core: BreakerCore, fleet: FleetState | None, now: float
    ) -> None:
        """Bring this hub's view of ``tenant`` in line with the fleet state just read."""
        if fleet is not None:
            old = core.current(now)
            if self._fleet_gen.get(tenant) != fleet.gen or core.state is State.CLOSED:
                self._fleet_gen[tenant] = fleet.gen
                core.reopens = fleet.opens
                core.trip(now, fleet.until)
                self._emit(tenant, old, core.current(now), "fleet")
        elif tenant in self._fleet_gen:  # the fleet state is gone: someone's probe succeeded
            del self._fleet_gen[tenant]
            if core.state is not State.CLOSED:
                old = core.current(now)
                core.close()
                self._emit(tenant, old, State.CLOSED, "fleet probe succeeded")

    async def _admit(self, tenant: str | None, core: BreakerCore) -> bool:
        """Raise CircuitOpen, or return True if this call is the probe."""
        fleet = await self._fleet_state(tenant)
        now = self._server_now()
        self._adopt(tenant, core, fleet, now)
        if fleet is not None:
            until, gen = fleet.until, fleet.gen
            if now < until:
                raise self._reject(until - now)
            if core.probing or self._probe_lost.get(tenant, 0.0) > now:
                raise self._reject(min(self.open_for, 1.0))
            if not await self._probes.take(tenant, gen):
                self._probe_lost[tenant] = now + self.open_for
                raise self._reject(min(self.open_for, 1.0))
            core.probing = True
            self.stats["probes"] += 1
            return True
        state = core.current(now)
        if state is State.CLOSED:
            return False
        if state is State.OPEN:
            raise self._reject(core.open_until - now)
        if core.probing:
            raise self._reject(min(self.open_for, 1.0))
        core.probing = True  # local probe (quorum not reached, or Redis away)
        self.stats["probes"] += 1
        return True

    def _abandon(self, tenant: str | None, core: BreakerCore, probe: bool) -> None:
        """A guarded call ended with no outcome (see :meth:`guard`): record nothing."""
        self.stats["cancelled"] += 1
        if probe:
            core.abandon_probe()
            self._probes.let_go(tenant, release=True)

    async def _finish(
        self, tenant: str | None, core: BreakerCore, probe: bool, failed: bool
    ) -> None:
        now = self._server_now()
        if failed:
            self.stats["failures"] += 1
        if probe:
            self._probes.let_go(tenant, release=False)  # the outcome changes the generation
            old = core.current(now)
            core.probe_result(now, not failed)
            gen = self._fleet_gen.get(tenant)
            if gen is not None:
                if failed:
                    await self._write_open(tenant, core, now)
                else:
                    del self._fleet_gen[tenant]
                    with contextlib.suppress(LowtideError):
                        await self._states.delete("state", **self._kw(tenant))
            self._emit(tenant, old, core.current(now), "probe " + ("failed" if failed else "ok"))
            return
        if core.state is not State.CLOSED:
            return  # a call admitted before the trip finished late: nothing to decide
        if core.record(now, failed):
            self.stats["trips"] += 1
            self._emit(tenant, State.CLOSED, State.OPEN, "failure rate reached")
            await self._publish_trip(tenant, core, now)

    async def _publish_trip(self, tenant: str | None, core: BreakerCore, now: float) -> None:
        if not self._hub.distributed:
            return
        if self.quorum > 1:
            window = math.floor(now / self.window)
            key = build_key(self._ns, "fleet", f"breaker.{self.name}", tenant, f"votes.{window}")
            try:
                votes = int(await self._hub.gateway.call(self._att(tenant), "INCR", key))
                if votes == 1:
                    await self._hub.gateway.call(
                        self._att(tenant), "PEXPIRE", key, math.ceil(self.window * 2000)
                    )
            except LowtideError:
                return
            if votes != self.quorum:
                return  # not yet a quorum (or someone else wrote the state)
        await self._write_open(tenant, core, now)

    async def _write_open(self, tenant: str | None, core: BreakerCore, now: float) -> None:
        gen = int(now * 1000)
        value = {"until": round(core.open_until, 3), "gen": gen, "opens": core.reopens}
        ttl = max(1.0, core.open_until - now) + self.max_open
        try:
            await self._states.set("state", value, ttl=ttl, **self._kw(tenant))
        except LowtideError:
            log.warning("breaker %s: could not share the open state", self.name, exc_info=True)
            return
        self._fleet_gen[tenant] = gen

    def _on_fleet_change(self, k: Key | None) -> None:
        if k is None:
            self._probe_lost.clear()
            tenants = list(self._fleet_gen)
        else:
            self._probe_lost.pop(k[0], None)
            tenants = [k[0]] if k[0] in self._cores else []
        for tenant in tenants:
            # read the new state now (1 GET, the read the next call would make anyway), so
            # state() shows what the fleet decided without waiting for a call
            if tenant not in self._refreshing and self._hub.distributed:
                self._refreshing.add(tenant)
                self._tasks.spawn(self._refresh(tenant))

    async def _refresh(self, tenant: str | None) -> None:
        try:
            fleet = await self._fleet_state(tenant)
        finally:
            self._refreshing.discard(tenant)
        core = self._cores.peek(tenant)
        if core is not None:
            self._adopt(tenant, core, fleet, self._server_now())

    async def aclose(self) -> None:
        """Stop renewals and background reads (the hub calls it on close)."""
        self._probes.close()
        await self._tasks.aclose()
