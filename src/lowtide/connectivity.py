"""The hub's link to Redis: the gateway, the mode machine and reconnection.

:class:`Connectivity` owns the one :class:`~lowtide.redis.Gateway` of a hub and decides
whether it may be used:

* ``distributed``: Redis answers; commands flow;
* ``degraded``: Redis stopped answering; the gateway refuses instantly and a background task
  reconnects with capped, jittered exponential backoff (at most one attempt per
  ``reconnect_min`` seconds) until a PING succeeds;
* ``suspended``: switched off by ``LOWTIDE_SUSPEND``/``SUSPEND_REDIS`` (no connection is ever
  opened), by ``suspend()`` or by the fleet-wide switch; ``resume()`` switches back;
* ``local``: no URL was given; everything runs on local state.

It also measures the server's clock once (1 TIME), so every component can read
:meth:`server_time` and fleet windows and envelope expiries agree across machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from lowtide._listeners import Listeners
from lowtide._tasks import BackgroundTasks
from lowtide.backoff import Backoff
from lowtide.blocklist import TenantBlockList
from lowtide.clock import Clock
from lowtide.context import Attribution
from lowtide.errors import LowtideError, RedisUnavailable
from lowtide.ledger import Ledger
from lowtide.modes import Mode, ModeChange
from lowtide.redis import Gateway
from lowtide.settings import Settings

__all__ = ["HUB", "Connectivity", "LinkStatus", "ModeListener"]

log = logging.getLogger("lowtide")

HUB = Attribution("hub", "-", None)
ModeListener = Callable[[ModeChange], None]


class LinkStatus:
    """A read-only record of the link's state (for health reports)."""

    __slots__ = (
        "connect_attempts",
        "has_gateway",
        "last_error",
        "latency_ms",
        "mode",
        "reason",
        "since",
    )

    def __init__(self, link: Connectivity) -> None:
        self.mode = link.mode
        self.since = link.mode_since
        self.reason = link.mode_reason
        self.has_gateway = link.has_gateway
        self.latency_ms = link.latency_ms
        self.last_error = link.last_error
        self.connect_attempts = link.connect_attempts


class Connectivity:
    """The mode machine of one hub (see module docs)."""

    def __init__(self, settings: Settings, clock: Clock, ledger: Ledger) -> None:
        self._settings = settings
        self._clock = clock
        self._ledger = ledger
        self._gateway: Gateway | None = None
        self.mode = Mode.LOCAL if settings.url is None else Mode.SUSPENDED
        self.mode_since = clock.time()
        self.mode_reason = "init"
        self._changes: deque[ModeChange] = deque(maxlen=32)
        self._listeners: Listeners[ModeChange] = Listeners(log, "lowtide mode listener")
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks = BackgroundTasks(log, "lowtide hub")
        self._recovery: asyncio.Task[None] | None = None
        self._disconnecting: asyncio.Task[Any] | None = None
        self._backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
        self.connect_attempts = 0
        self.latency_ms: float | None = None
        self.last_error: str | None = None
        self.closed = False
        #: tenants over their command quota (the gateway refuses their commands)
        self.quota_blocked = TenantBlockList()
        #: seconds to add to this machine's wall clock to get the server's (one TIME per hub)
        self.server_clock_offset = 0.0
        self._clock_synced = False

    # -- views ----------------------------------------------------------------------------------
    @property
    def gateway(self) -> Gateway:
        """The gateway to Redis; raises :class:`RedisUnavailable` when there is none."""
        if self._gateway is None:
            reason = "local" if self._settings.url is None else "suspended"
            raise RedisUnavailable(f"no redis connection ({reason})", reason=reason)
        return self._gateway

    @property
    def has_gateway(self) -> bool:
        """True once a gateway was opened (and until close)."""
        return self._gateway is not None

    @property
    def history(self) -> tuple[ModeChange, ...]:
        """The last mode changes, oldest first."""
        return tuple(self._changes)

    @property
    def fleet_suspended(self) -> bool:
        """True while the fleet-wide switch holds this hub suspended."""
        return self.mode is Mode.SUSPENDED and self.mode_reason == "fleet"

    def status(self) -> LinkStatus:
        """A snapshot of the link's state."""
        return LinkStatus(self)

    def server_time(self) -> float:
        """Wall-clock seconds on the server's clock (this machine's until the first TIME)."""
        return self._clock.time() + self.server_clock_offset

    async def sync_server_clock(self) -> None:
        """Measure the server's clock once (1 TIME) so fleet windows align across machines."""
        if self._clock_synced or self.mode is not Mode.DISTRIBUTED:
            return
        t0 = self._clock.time()
        reply = await self.gateway.call(HUB, "TIME")
        t1 = self._clock.time()
        server = int(reply[0]) + int(reply[1]) / 1e6
        self.server_clock_offset = server - (t0 + t1) / 2
        self._clock_synced = True

    async def _sync_quietly(self) -> None:
        """Measure the server clock once Redis is in use (every machine then agrees on
        envelope expiries and windows, whatever its own clock says); a failure leaves this
        machine's clock in use until the next success."""
        try:
            await self.sync_server_clock()
        except LowtideError as exc:
            log.debug("server clock not measured yet: %s", exc)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, gate: Callable[[], Awaitable[str | None]] | None = None) -> None:
        """Set the first mode: local, suspended by env, distributed, or degraded (reconnecting).

        ``gate`` is asked once Redis answers and before the hub turns distributed: a reason it
        returns keeps the hub suspended by the fleet-wide switch instead (no data command is
        sent before that is known).
        """
        s = self._settings
        if s.url is None:
            self.set_mode(Mode.LOCAL, "start", "no url configured")
        elif s.suspend:
            self.set_mode(Mode.SUSPENDED, "env", "suspended by LOWTIDE_SUSPEND/SUSPEND_REDIS")
        else:
            self._open_gateway()
            if await self._probe():
                await self._detect_cluster()
                reason = await gate() if gate is not None else None
                if reason is not None:
                    self.set_mode(Mode.SUSPENDED, "fleet", reason)
                else:
                    self.set_mode(Mode.DISTRIBUTED, "start")
                    await self._sync_quietly()
            else:
                self.set_mode(Mode.DEGRADED, "start", self.last_error or "")
                self._start_recovery(immediate=False)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a hub-level background task (cancelled and awaited by :meth:`aclose`)."""
        return self._tasks.spawn(coro)

    async def aclose(self) -> None:
        """Stop background tasks and close the gateway. Idempotent."""
        self.closed = True
        await self._tasks.aclose()
        if self._gateway is not None:
            gw, self._gateway = self._gateway, None
            with contextlib.suppress(Exception):
                await gw.aclose()
        for w in self._waiters:
            if not w.done():
                w.cancel()

    # -- the switch -------------------------------------------------------------------------------
    def suspend(self, reason: str, detail: str = "") -> None:
        """Stop using Redis now (open connections are closed in the background)."""
        if self.mode in (Mode.LOCAL, Mode.SUSPENDED):
            return
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        if self._gateway is not None:
            self._gateway.open = False
            self._gateway.closed_reason = "suspended"
            self._disconnecting = self._tasks.spawn(self._gateway.disconnect())
        self.set_mode(Mode.SUSPENDED, reason, detail)

    def resume(self) -> None:
        """Leave suspension: degraded until the first PING succeeds."""
        if self.mode is not Mode.SUSPENDED or self.closed:
            return
        if self._gateway is None:
            self._open_gateway()
        self.set_mode(Mode.DEGRADED, "resume")
        self._start_recovery(immediate=True)

    def on_mode_change(self, listener: ModeListener) -> Callable[[], None]:
        """Call ``listener(change)`` on every mode change; returns a function that unsubscribes."""
        return self._listeners.add(listener)

    async def wait_for(self, mode: Mode, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the mode is ``mode``; False if ``timeout`` (real seconds) passes first."""

        async def waiter() -> None:
            while self.mode is not mode:
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

    def set_mode(self, mode: Mode, reason: str, detail: str = "") -> None:
        """Switch to ``mode`` and tell every listener (no-op if already there)."""
        old = self.mode
        if self._gateway is not None:
            self._gateway.open = mode is Mode.DISTRIBUTED
            if mode is not Mode.DISTRIBUTED:
                self._gateway.closed_reason = mode.value
        if old is mode and self._changes:
            return
        change = ModeChange(old, mode, reason, self._clock.time(), detail)
        self.mode = mode
        self.mode_since = change.at
        self.mode_reason = reason
        self._changes.append(change)
        if mode is Mode.DISTRIBUTED:
            self._backoff.reset()
        level = logging.WARNING if mode is Mode.DEGRADED else logging.INFO
        if len(self._changes) == 1:  # the first mode: there was none before it
            log.log(level, "lowtide mode %s (%s) %s", mode.value, reason, detail)
        else:
            log.log(level, "lowtide mode %s -> %s (%s) %s", old.value, mode.value, reason, detail)
        self._listeners.emit(change)
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    # -- Redis connectivity -----------------------------------------------------------------------
    def _new_gateway(self, *, cluster: bool) -> Gateway:
        return Gateway.connect(
            self._settings,
            self._ledger,
            cluster=cluster,
            on_failure=self._on_failure,
            blocked=self.quota_blocked,
        )

    def _open_gateway(self) -> None:
        self._gateway = self._new_gateway(cluster=False)
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
        cluster_gw = self._new_gateway(cluster=True)
        try:
            await cluster_gw.initialize()
        except Exception as exc:
            log.warning("cluster detected but not usable (%s); staying on one node", exc)
            with contextlib.suppress(Exception):
                await cluster_gw.aclose()
            return
        self._gateway = cluster_gw
        with contextlib.suppress(Exception):
            await gw.aclose()
        log.info("Redis Cluster detected: %d primaries", len(cluster_gw.primaries() or []))

    def _on_failure(self, exc: BaseException) -> None:
        self.last_error = describe(exc)
        if self.mode is Mode.DISTRIBUTED:
            self.set_mode(Mode.DEGRADED, "failure", self.last_error)
            self._start_recovery(immediate=False)

    async def _probe(self) -> bool:
        """One PING through the gateway even while it is closed; records latency."""
        gw = self._gateway
        if gw is None:
            return False
        self.connect_attempts += 1
        t0 = self._clock.monotonic()
        try:
            await gw.probe(HUB)
        except (LowtideError, OSError) as exc:
            self.last_error = describe(exc)
            return False
        self.latency_ms = (self._clock.monotonic() - t0) * 1000
        self.last_error = None
        return True

    def _start_recovery(self, *, immediate: bool) -> None:
        if self._recovery is not None and not self._recovery.done():
            return
        self._recovery = self._tasks.spawn(self._recover(immediate))

    async def _recover(self, immediate: bool) -> None:
        closing, self._disconnecting = self._disconnecting, None
        if closing is not None:
            # a suspension's disconnect still running would close the probe's connection
            await asyncio.wait({closing}, timeout=2.0)
        first = True
        while self._degraded() and not self.closed:
            if not (first and immediate):
                await self._clock.sleep(self._backoff.next_delay())
            first = False
            if not self._degraded():
                return
            if await self._probe():
                if self._degraded():
                    self.set_mode(Mode.DISTRIBUTED, "recovered")
                    await self._sync_quietly()
                return

    def _degraded(self) -> bool:
        # a method, not an inline test: the mode changes while this task awaits
        return self.mode is Mode.DEGRADED


def describe(exc: BaseException) -> str:
    """``Type: message`` of an error, at most 300 characters (for health and logs)."""
    text = f"{type(exc).__name__}: {exc}"
    return text[:300]
