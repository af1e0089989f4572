"""The hub: one object per process that owns every connection to Redis and the mode switch.

Components (cache, limiter, breaker, ...) hold a reference to the hub and send commands only
through its :class:`~lowtide.redis.Gateway`. The hub decides whether Redis is used at all:

* ``distributed``: Redis answers; commands flow;
* ``degraded``: Redis stopped answering; the gateway refuses instantly and a background task
  reconnects with capped, jittered exponential backoff (at most one attempt per
  ``reconnect_min`` seconds) until a PING succeeds;
* ``suspended``: switched off by ``LOWTIDE_SUSPEND``/``SUSPEND_REDIS`` (no connection is ever
  opened) or by :meth:`Lowtide.suspend`; :meth:`Lowtide.resume` switches back;
* ``local``: no URL was given; everything runs on local state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from lowtide.backoff import Backoff
from lowtide.breaker import CircuitBreaker
from lowtide.cache import CacheRegistry
from lowtide.clock import Clock, SystemClock
from lowtide.components import Components
from lowtide.context import Attribution
from lowtide.control import FleetSwitch
from lowtide.errors import LowtideError, RedisUnavailable
from lowtide.fleet import Fleet
from lowtide.fleetview import FleetPublisher
from lowtide.health import hub_health, metrics_log_loop
from lowtide.invalidation import Invalidations
from lowtide.ledger import Ledger, profile_for_provider
from lowtide.limiter import RateLimiter
from lowtide.modes import Mode, ModeChange
from lowtide.quotas import Quotas
from lowtide.redis import Gateway, make_client
from lowtide.redis.cluster import make_cluster_client
from lowtide.settings import Settings

__all__ = ["Lowtide"]

log = logging.getLogger("lowtide")

HUB = Attribution("hub", "-", None)
ModeListener = Callable[[ModeChange], None]


class Lowtide(Components):
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
        self._settings = settings
        self._clock: Clock = clock or SystemClock()
        self.ledger = Ledger(
            profile_for_provider(settings.provider, settings.read_regions),
            instance=settings.instance,
            provider=settings.provider,
            clock=self._clock,
        )
        self._gateway: Gateway | None = None
        self._mode = Mode.LOCAL if settings.url is None else Mode.SUSPENDED
        self._mode_since = self._clock.time()
        self._mode_reason = "init"
        self._changes: deque[ModeChange] = deque(maxlen=32)
        self._listeners: list[ModeListener] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
        self._reconnect_attempts = 0
        self._latency_ms: float | None = None
        self._last_error: str | None = None
        self._started = False
        self._closed = False
        self._invalidations: Invalidations | None = None
        self._registry = CacheRegistry(self)
        self._fleet: Fleet | None = None
        self._limiters: list[RateLimiter] = []
        self._breakers: list[CircuitBreaker] = []
        self._quotas: Quotas | None = None
        self._publisher: FleetPublisher | None = None
        self._switch: FleetSwitch | None = None
        #: tenants over their command quota (shared with the gateway, which refuses them)
        self.quota_blocked: set[str] = set()
        #: seconds to add to this machine's wall clock to get the server's (one TIME per hub)
        self.server_clock_offset = 0.0
        self._clock_synced = False

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
            f"<Lowtide {self._settings.instance!r} mode={self._mode.value} "
            f"url={self._settings.redacted_url!r} namespace={self._settings.namespace!r}>"
        )

    # -- properties -----------------------------------------------------------------------
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
        return self._mode

    @property
    def gateway(self) -> Gateway:
        """The gateway to Redis; raises :class:`RedisUnavailable` when there is none."""
        if self._gateway is None:
            reason = "local" if self._settings.url is None else "suspended"
            raise RedisUnavailable(f"no redis connection ({reason})", reason=reason)
        return self._gateway

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

    async def sync_server_clock(self) -> None:
        """Measure the server's clock once (1 TIME) so fleet windows align across machines."""
        if self._clock_synced or not self.distributed:
            return
        t0 = self._clock.time()
        reply = await self.gateway.call(HUB, "TIME")
        t1 = self._clock.time()
        server = int(reply[0]) + int(reply[1]) / 1e6
        self.server_clock_offset = server - (t0 + t1) / 2
        self._clock_synced = True

    @property
    def distributed(self) -> bool:
        """True while Redis is in use."""
        return self._mode is Mode.DISTRIBUTED

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
        await self.close()

    async def start(self) -> None:
        """Connect (unless suspended or local-only) and start background tasks.

        An unreachable server does not raise: the hub starts ``degraded`` and reconnects.
        """
        if self._closed:
            raise LowtideError("this hub was closed; create a new one")
        if self._started:
            return
        self._started = True
        s = self._settings
        if s.url is None:
            self._set_mode(Mode.LOCAL, "start", "no url configured")
        elif s.suspend:
            self._set_mode(Mode.SUSPENDED, "env", "suspended by LOWTIDE_SUSPEND/SUSPEND_REDIS")
        else:
            self._open_gateway()
            if await self._probe():
                await self._detect_cluster()
                self._set_mode(Mode.DISTRIBUTED, "start")
            else:
                self._set_mode(Mode.DEGRADED, "start", self._last_error or "")
                self._start_recovery(immediate=False)
        if s.url is not None and s.fleet_switch and not s.suspend:
            self._switch = FleetSwitch(self)
            self._switch.start()
        if self._invalidations is not None:
            self._invalidations.start()
        if self._quotas is not None:
            self._quotas.start()
        if s.fleet_view and s.url is not None:
            self._publisher = FleetPublisher(self)
            self._publisher.start()
        if s.track_metrics:
            self._spawn(self._metrics_loop())
        log.info("lowtide started: %r", self)

    async def close(self) -> None:
        """Stop background tasks and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._quotas is not None:
            await self._quotas.aclose()
        await self._registry.aclose()
        if self._fleet is not None:
            await self._fleet.stop()
        if self._publisher is not None:
            await self._publisher.stop()
        if self._switch is not None:
            await self._switch.stop()
        if self._invalidations is not None:
            await self._invalidations.stop()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._gateway is not None:
            gw, self._gateway = self._gateway, None
            with contextlib.suppress(Exception):
                await gw.aclose()
        for w in self._waiters:
            if not w.done():
                w.cancel()

    # -- mode switch ----------------------------------------------------------------------
    def suspend(self, reason: str = "runtime") -> None:
        """Stop using Redis now; components keep working on local state.

        Open connections are closed in the background. No-op when local-only.
        """
        self._suspend(reason)

    def _suspend(self, reason: str, detail: str = "") -> None:
        if self._mode in (Mode.LOCAL, Mode.SUSPENDED):
            return
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        if self._gateway is not None:
            self._gateway.open = False
            self._gateway.closed_reason = "suspended"
            self._spawn(self._gateway.disconnect())
        self._set_mode(Mode.SUSPENDED, reason, detail)

    @property
    def fleet_suspended(self) -> bool:
        """True while the fleet-wide switch (``lowtide suspend``) holds this hub suspended."""
        return self._mode is Mode.SUSPENDED and self._mode_reason == "fleet"

    def _fleet_suspend(self, detail: str) -> None:
        self._suspend("fleet", detail)

    def resume(self) -> None:
        """Undo :meth:`suspend`: reconnect now and go back to distributed once Redis answers.

        The hub is ``degraded`` until the first PING succeeds; :meth:`wait_for` waits for it.
        """
        if self._mode is not Mode.SUSPENDED or not self._started or self._closed:
            return
        if self._gateway is None:
            self._open_gateway()
        self._set_mode(Mode.DEGRADED, "resume")
        self._start_recovery(immediate=True)

    def on_mode_change(self, listener: ModeListener) -> Callable[[], None]:
        """Call ``listener(change)`` on every mode change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    async def wait_for(self, mode: Mode, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the hub is in ``mode``; False if ``timeout`` (real seconds) passes first."""

        async def waiter() -> None:
            while self._mode is not mode:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                try:
                    await fut
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(fut)

        try:
            await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def history(self) -> tuple[ModeChange, ...]:
        """The last mode changes, oldest first."""
        return tuple(self._changes)

    def _set_mode(self, mode: Mode, reason: str, detail: str = "") -> None:
        old = self._mode
        if self._gateway is not None:
            self._gateway.open = mode is Mode.DISTRIBUTED
            if mode is not Mode.DISTRIBUTED:
                self._gateway.closed_reason = mode.value
        if old is mode and self._changes:
            return
        change = ModeChange(old, mode, reason, self._clock.time(), detail)
        self._mode = mode
        self._mode_since = change.at
        self._mode_reason = reason
        self._changes.append(change)
        if mode is Mode.DISTRIBUTED:
            self._backoff.reset()
        level = logging.WARNING if mode is Mode.DEGRADED else logging.INFO
        log.log(level, "lowtide mode %s -> %s (%s) %s", old.value, mode.value, reason, detail)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a listener's bug must not break the switch
                log.exception("lowtide mode listener failed")
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    # -- Redis connectivity -----------------------------------------------------------------
    def _open_gateway(self) -> None:
        client = make_client(self._settings, self.ledger)
        self._gateway = Gateway(
            client,
            self.ledger,
            upstash=self._settings.provider == "upstash",
            on_failure=self._on_failure,
        )
        self._gateway.blocked = self.quota_blocked
        self._gateway.open = False

    async def _detect_cluster(self) -> None:
        """Switch to a cluster client when the node says cluster mode is on (1 INFO, free)."""
        gw = self._gateway
        if gw is None or gw.cluster or self._settings.provider == "upstash":
            return
        try:
            info = await gw.control(HUB, "INFO", "cluster")
        except LowtideError:
            return
        enabled = info.get("cluster_enabled") if isinstance(info, dict) else None
        if str(enabled) != "1":
            return
        client = make_cluster_client(self._settings, self.ledger)
        cluster_gw = Gateway(
            client,
            self.ledger,
            upstash=False,
            on_failure=self._on_failure,
        )
        cluster_gw.blocked = self.quota_blocked
        try:
            await client.initialize()
        except Exception as exc:
            log.warning("cluster detected but not usable (%s); staying on one node", exc)
            with contextlib.suppress(Exception):
                await client.aclose()
            return
        self._gateway = cluster_gw
        with contextlib.suppress(Exception):
            await gw.aclose()
        log.info("Redis Cluster detected: %d primaries", len(cluster_gw.primaries() or []))

    def _on_failure(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        if self._mode is Mode.DISTRIBUTED:
            self._set_mode(Mode.DEGRADED, "failure", self._last_error)
            self._start_recovery(immediate=False)

    async def _probe(self) -> bool:
        """One PING through the gateway even while it is closed; records latency."""
        gw = self._gateway
        if gw is None:
            return False
        self._reconnect_attempts += 1
        t0 = self._clock.monotonic()
        try:
            await gw.probe(HUB)
        except (LowtideError, OSError) as exc:
            self._last_error = _describe(exc)
            return False
        self._latency_ms = (self._clock.monotonic() - t0) * 1000
        self._last_error = None
        return True

    def _start_recovery(self, *, immediate: bool) -> None:
        if self._recovery is not None and not self._recovery.done():
            return
        self._recovery = self._spawn(self._recover(immediate))

    async def _recover(self, immediate: bool) -> None:
        first = True
        while self._degraded() and not self._closed:
            if not (first and immediate):
                await self._clock.sleep(self._backoff.next_delay())
            first = False
            if not self._degraded():
                return
            if await self._probe():
                if self._degraded():
                    self._set_mode(Mode.DISTRIBUTED, "recovered")
                return

    def _degraded(self) -> bool:
        return self._mode is Mode.DEGRADED

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- observability ----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Status for health endpoints (see :func:`lowtide.health.hub_health`). No secrets."""
        return hub_health(self)

    async def _metrics_loop(self) -> None:
        await metrics_log_loop(self)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:300]
