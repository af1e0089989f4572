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
* **Forced** (:meth:`CircuitBreaker.open`, :meth:`CircuitBreaker.close`): an operator's state
  written to the same key, held by every machine until :meth:`CircuitBreaker.automatic`
  deletes it (or its optional deadline passes).

While Redis is unavailable every machine runs its breaker locally (and probes locally).
The fleet state read back is untrusted (:mod:`lowtide.breaker.state`): anything that is not a
well-formed state is read as "no fleet state", counted in ``stats["bad_state"]`` and logged at
most once a minute. ``guard()`` and ``state()`` never raise for it. The guarded call is
:class:`~lowtide.breaker.guard.Guard`, the shared state's I/O :mod:`lowtide.breaker.shared`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lowtide._listeners import Listeners
from lowtide._tasks import BackgroundTasks
from lowtide._untrusted import Warnings
from lowtide._validate import MAX_SECONDS, optional_seconds
from lowtide.breaker.core import BreakerCore, State
from lowtide.breaker.guard import Guard
from lowtide.breaker.options import (
    NOT_CALLED,
    BreakerKwargs,
    Listener,
    Transition,
    check_arguments,
)
from lowtide.breaker.probe import ProbeLeases
from lowtide.breaker.shared import SharedState
from lowtide.breaker.state import FleetState
from lowtide.cache.store import Key
from lowtide.errors import CircuitOpen, LowtideError
from lowtide.keys import build_key, family
from lowtide.tenancy import Attributions, TenantLRU, resolve_tenant

if TYPE_CHECKING:
    from lowtide.cache import Cache
    from lowtide.cache.registry import CacheHub

__all__ = ["BreakerKwargs", "CircuitBreaker", "Transition"]

log = logging.getLogger("lowtide.breaker")
T = TypeVar("T")
_new = object.__new__


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
        failure_when: Callable[[BaseException], bool] | None = None,
        result_failure_when: Callable[[Any], bool] | None = None,
        not_called: tuple[type[BaseException], ...] = NOT_CALLED,
        per_tenant: bool = True,
        max_tenants: int = 10_000,
    ) -> None:
        check_arguments(
            failure_rate=failure_rate,
            min_calls=min_calls,
            window=window,
            open_for=open_for,
            slow_call=slow_call,
            max_open=max_open,
            quorum=quorum,
            max_tenants=max_tenants,
            exceptions={"failure_on": failure_on, "ignore": ignore, "not_called": not_called},
            predicates={"failure_when": failure_when, "result_failure_when": result_failure_when},
        )
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
        self.failure_when = failure_when
        self.result_failure_when = result_failure_when
        self.not_called = not_called
        self.per_tenant = per_tenant
        self.family = family(ns, "breaker", name)
        self._hub = hub
        self._what = f"circuit breaker {name!r}"
        # bound once: the guard's hot path calls them on every call
        self._server_now = hub.server_time
        self._monotonic = hub.clock.monotonic
        #: per-tenant state, bounded by ``max_tenants`` (only closed breakers are dropped: an
        #: open one is kept until it closes)
        self._cores: TenantLRU[BreakerCore] = TenantLRU(
            max_tenants,
            self._new_core,
            keep_if=lambda core: (
                core.state is not State.CLOSED or core.probing or core.forced is not None
            ),
            on_evict=self._forget,
        )
        self.max_tenants = max_tenants
        self._fleet_gen: dict[str | None, int] = {}  # open generation adopted from the fleet
        self._probe_lost: dict[str | None, float] = {}
        self._listeners: Listeners[Transition] = Listeners(log, "breaker listener")
        self._att = Attributions("breaker", self.family)
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
            "not_called": 0,  # ended by an exception in ``not_called``: no outcome recorded
            "bad_state": 0,  # fleet states read back that were not well-formed (ignored)
            "predicate_errors": 0,  # failure_when / result_failure_when raised (see guard())
        }
        self._warnings = Warnings(log)
        self._shared = SharedState(
            hub,
            name,
            per_tenant=per_tenant,
            max_open=self.max_open,
            attribution=self._att,
            stats=self.stats,
        )
        self._states = self._shared.cache
        self._read_state = self._states.get
        self._states.watch(self._on_fleet_change)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} tenants={len(self._cores)}>"

    # -- public API ---------------------------------------------------------------------------
    def state(self, tenant: str | None = None) -> str:
        """``closed``, ``open`` or ``half_open`` for ``tenant`` as this machine knows it (a
        forced state reads as ``open`` or ``closed``; :meth:`forced` tells them apart).

        Never sends a command.
        """
        t = self._tenant(tenant)
        core = self._cores.peek(t)
        now = self._server_now()
        fleet = self._shared.peek(t, now)
        if fleet is not None:
            if fleet.forced is not None:
                return fleet.forced
            return State.OPEN.value if now < fleet.until else State.HALF_OPEN.value
        if core is None:
            return State.CLOSED.value
        return core.current(now).value

    def forced(self, tenant: str | None = None) -> str | None:
        """``"open"`` or ``"closed"`` while ``tenant``'s breaker is forced (:meth:`open`,
        :meth:`close`), None while it is automatic. Never sends a command."""
        t = self._tenant(tenant)
        now = self._server_now()
        fleet = self._shared.peek(t, now)
        if fleet is not None and fleet.forced is not None:
            return fleet.forced
        core = self._cores.peek(t)
        if core is not None and core.forced is not None and core.is_forced(now):
            return core.forced.value
        return None

    def on_transition(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(Transition)`` on every state change seen here.

        Returns a function that unsubscribes.
        """
        return self._listeners.add(listener)

    def guard(self, tenant: str | None = None) -> Guard:
        """``async with breaker.guard(tenant) as call:`` runs the block if the breaker allows
        it, and counts its outcome; raises :class:`CircuitOpen` (``retry_after``) when open.

        Exceptions from the block propagate unchanged. One counts as a failure when it is an
        instance of ``failure_on``, not of ``ignore``, and ``failure_when(exc)`` (if given) is
        true; an ignored one counts as a success. A block that returns counts as a failure when
        it took ``slow_call`` or longer, when ``result_failure_when(value)`` is true for the
        value handed to ``call.result(value)``, or after ``call.fail()``. A predicate that
        raises is logged, counted (``stats["predicate_errors"]``) and judged as not given.

        A block that ends with an exception in ``not_called`` (default: :class:`RateLimited`,
        :class:`CircuitOpen`: a limiter or breaker inside refused, the dependency was never
        called), is cancelled (an outer ``asyncio.timeout``, shutdown) or interrupted by any
        other ``BaseException`` records nothing: neither a success nor a failure; a probe it
        held is given back (the fleet-wide lease released), and no fleet state changes. To
        count a slow dependency as a failure, put the timeout inside the block.
        """
        g = _new(Guard)  # Guard(self, tenant) without the __init__ frame: this is per call
        g._breaker, g._tenant, g._failed = self, tenant, False
        return g

    async def call(self, fn: Callable[[], Awaitable[T]], *, tenant: str | None = None) -> T:
        """``await fn()`` under :meth:`guard`, its result judged by ``result_failure_when``:
        ``await breaker.call(lambda: client.get(url), tenant=t)``."""
        async with Guard(self, tenant) as call:
            return call.result(await fn())

    async def open(self, tenant: str | None = None, *, seconds: float | None = None) -> bool:
        """Force ``tenant``'s breaker open on every machine: every guarded call raises
        :class:`CircuitOpen` until :meth:`close` or :meth:`automatic` (or for ``seconds``).

        1 SET of the shared state (+1 PUBLISH in pub/sub mode); this hub holds it at once,
        the others when the push reaches them. Returns False when Redis is unavailable: then
        only this hub holds it, until Redis is back (call again then).
        """
        return await self._force(tenant, State.OPEN, seconds)

    async def close(self, tenant: str | None = None, *, seconds: float | None = None) -> bool:
        """Force ``tenant``'s breaker closed on every machine: every guarded call runs and no
        failure can trip it, until :meth:`open` or :meth:`automatic` (or for ``seconds``).

        Same costs and return value as :meth:`open`. To close an automatically opened breaker
        and keep it automatic, call :meth:`automatic`.
        """
        return await self._force(tenant, State.CLOSED, seconds)

    async def automatic(self, tenant: str | None = None) -> bool:
        """Back to automatic on every machine: closed, with an empty window. Ends a forced
        state, and also closes a breaker that opened by itself.

        1 DEL of the shared state (+1 PUBLISH in pub/sub mode); returns False when Redis is
        unavailable (only this hub changed).
        """
        t = self._tenant(tenant)
        core = self._core(t)
        now = self._server_now()
        old = core.current(now)
        core.unforce()
        self._fleet_gen.pop(t, None)
        self._probe_lost.pop(t, None)
        self._emit(t, old, State.CLOSED, "automatic")
        await self._shared.delete(t)
        return self._hub.distributed

    async def prefetch(self, tenant: str | None = None) -> None:
        """Read ``tenant``'s fleet state now (at most 1 GET), so the first guarded call costs
        nothing: e.g. right after a tenant connects an integration."""
        await self._shared.read(self._tenant(tenant))

    @property
    def state_cache(self) -> Cache:
        """The tiered cache holding the fleet's open states (component ``breaker``)."""
        return self._states

    async def fleet_state(self, tenant: str | None = None) -> dict[str, Any] | None:
        """The fleet's shared state for ``tenant`` (0 commands from L1, else 1 GET), or None
        when no hub has it open or forced (or Redis cannot tell, or holds no well-formed
        state)."""
        fleet = await self._shared.read(tenant)
        return None if fleet is None else fleet.to_dict()

    def info(self) -> dict[str, Any]:
        """Configuration, counters, and tenants open (half-open included), half-open, forced."""
        now = self._server_now()
        states = [(c.current(now), c.is_forced(now)) for c in self._cores.values()]
        return {
            "name": self.name,
            "tenants": len(states),
            "open": sum(s is not State.CLOSED for s, _ in states),
            "half_open": sum(s is State.HALF_OPEN for s, _ in states),
            "forced": sum(forced for _, forced in states),
            **self.stats,
        }

    # -- internals ----------------------------------------------------------------------------
    def _tenant(self, tenant: str | None) -> str | None:
        return resolve_tenant(tenant, per_tenant=self.per_tenant, what=self._what)

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

    def _adopt(
        self, tenant: str | None, core: BreakerCore, fleet: FleetState | None, now: float
    ) -> None:
        """Bring this hub's view of ``tenant`` in line with the fleet state just read."""
        if fleet is not None and fleet.forced is not None:
            if now < fleet.until:
                state = State.OPEN if fleet.forced == State.OPEN.value else State.CLOSED
                if (
                    core.forced is not state
                    or core.forced_until != fleet.until
                    or self._fleet_gen.get(tenant) != fleet.gen
                ):
                    old = core.current(now)
                    core.force(state, fleet.until)
                    self._fleet_gen[tenant] = fleet.gen
                    self._emit(tenant, old, state, f"forced {fleet.forced}")
                return
            fleet = None  # a forced state that has ended (its key expires with it)
        if core.forced is not None:
            if fleet is None and not self._hub.distributed and core.is_forced(now):
                return  # forced here while Redis is away: kept until Redis says otherwise
            old = core.forced if core.is_forced(now) else core.current(now)
            core.unforce()
            self._fleet_gen.pop(tenant, None)
            self._emit(tenant, old, State.CLOSED, "automatic")
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

    async def _admit(self, tenant: str | None, core: BreakerCore, value: object) -> bool:
        """Raise CircuitOpen, or return True if this call is the probe (``value``: the fleet
        state as read, or the error that made it unreadable)."""
        now = self._server_now()
        fleet = self._shared.checked(value, now)
        self._adopt(tenant, core, fleet, now)
        if core.forced is not None:  # (_adopt ended it if its deadline passed)
            if core.forced is State.CLOSED:
                return False
            retry = core.forced_until - now if math.isfinite(core.forced_until) else self.open_for
            raise self._reject(retry)
        if fleet is not None and fleet.forced is None:
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

    def _abandon(self, tenant: str | None, core: BreakerCore, probe: bool, why: str) -> None:
        """A guarded call ended with no outcome (see :meth:`guard`): record nothing."""
        self.stats[why] += 1
        if probe:
            core.abandon_probe()
            self._probes.let_go(tenant, release=True)

    async def _finish(
        self, tenant: str | None, core: BreakerCore, probe: bool, failed: bool
    ) -> None:
        now = self._server_now()
        if failed:
            self.stats["failures"] += 1
        if core.forced is not None and core.is_forced(now):
            if probe:  # forced while the probe ran: the forced state decides, not the probe
                core.abandon_probe()
                self._probes.let_go(tenant, release=True)
            return
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
                        await self._shared.delete(tenant)
            self._emit(tenant, old, core.current(now), "probe " + ("failed" if failed else "ok"))
            return
        if core.state is not State.CLOSED:
            return  # a call admitted before the trip finished late: nothing to decide
        if core.record(now, failed):
            self.stats["trips"] += 1
            self._emit(tenant, State.CLOSED, State.OPEN, "failure rate reached")
            await self._publish_trip(tenant, core, now)

    async def _force(self, tenant: str | None, state: State, seconds: float | None) -> bool:
        t = self._tenant(tenant)
        duration = optional_seconds("seconds", seconds)
        now = self._server_now()
        until = math.inf if duration is None else round(now + duration, 3)
        fleet = FleetState(until, int(now * 1000), 0, state.value)
        self._adopt(t, self._core(t), fleet, now)  # here, at once
        await self._shared.write(t, fleet, MAX_SECONDS if duration is None else duration)
        return self._hub.distributed

    async def _publish_trip(self, tenant: str | None, core: BreakerCore, now: float) -> None:
        if not self._hub.distributed:
            return
        if self.quorum > 1 and not await self._shared.vote(tenant, now, self.window, self.quorum):
            return
        await self._write_open(tenant, core, now)

    async def _write_open(self, tenant: str | None, core: BreakerCore, now: float) -> None:
        gen = await self._shared.write_open(tenant, core.open_until, core.reopens, now)
        if gen >= 0:
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
            fleet = await self._shared.read(tenant)
        finally:
            self._refreshing.discard(tenant)
        core = self._cores.peek(tenant)
        if core is not None:
            self._adopt(tenant, core, fleet, self._server_now())

    async def aclose(self) -> None:
        """Stop renewals and background reads (the hub calls it on close)."""
        self._probes.close()
        await self._tasks.aclose()
