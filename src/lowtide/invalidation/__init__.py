"""Server-pushed invalidation for everything lowtide keeps in process memory.

:class:`Invalidations` runs one listener per process (a
:class:`~lowtide.redis.tracking.TrackingConnection`) for the tracked prefixes (cache, tenants,
breakers, control keys, limiter window counters; never quota counters or heartbeats), and
offers:

* **subscribers**: callbacks that get the invalidated Redis keys, or ``None`` for "drop
  everything" (FLUSHALL/FLUSHDB, listener lost, hub no longer distributed);
* **a race guard** (:class:`~lowtide.invalidation.guard.RaceGuard`, fed by this listener):
  :meth:`begin` before sending a GET and :meth:`valid` after the reply; the fill must be
  discarded if an invalidation for that key, or a flush, arrived in between (:meth:`end`
  returns how many arrived, which lets a writer expect the echo of its own write);
* **health**: :attr:`healthy` is True only while subscribed *and* after a start-up self-test
  proved that a write really produces an invalidation message. While it is False, callers
  must not trust process memory (the cache bypasses L1).

On loss it flushes, reconnects with the hub's backoff, and self-tests again. Where the server has
no CLIENT TRACKING (Upstash, some managed services) there are two other feeds: keyspace
notifications (``invalidation="keyspace"``: the server publishes every writer's changes; see
:mod:`lowtide.redis.keyspace`), or a pub/sub backplane: the listener subscribes to
``<namespace>:invalidate`` and lowtide's writers PUBLISH the keys they changed
(:attr:`publishes`); writes by other programs are then only bounded by TTLs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lowtide._listeners import Listeners
from lowtide._tasks import BackgroundTasks
from lowtide.backoff import Backoff
from lowtide.errors import LowtideError, RedisCommandError
from lowtide.invalidation.feeds import FeedChain
from lowtide.invalidation.guard import RaceGuard
from lowtide.invalidation.probes import Probes, SelfTestFailed, listener_targets
from lowtide.keys import TRACKED, prefix
from lowtide.modes import InvalidationMode, Mode, ModeChange
from lowtide.redis import keyspace as ks
from lowtide.redis.tracking import MessageStats, TrackingConnection
from lowtide.redis.writer import WriterConnection
from lowtide.settings import Settings

if TYPE_CHECKING:
    from lowtide.runtime import HubView, Subscriber

__all__ = ["InvalidationMode", "Invalidations"]

log = logging.getLogger("lowtide.invalidation")
#: components whose keys are tracked (see :data:`lowtide.keys.TRACKED` for why these)
TRACKED_COMPONENTS: tuple[str, ...] = TRACKED


class Invalidations:
    """The per-process invalidation listener, race guard and subscriber list."""

    def __init__(
        self,
        hub: HubView,
        *,
        components: Sequence[str] = TRACKED_COMPONENTS,
        keepalive: float = 15.0,
        selftest_timeout: float = 2.0,
    ) -> None:
        self._hub = hub
        ns = hub.settings.namespace
        self.prefixes = [prefix(ns, c) for c in components]
        self.keepalive = keepalive
        self.selftest_timeout = selftest_timeout
        self.setting = hub.settings.invalidation
        self._feeds = FeedChain(self.setting, hub.settings.provider)
        #: pub/sub channel of the backplane (used only in pubsub mode)
        self.channel = f"{ns}:invalidate"
        self.mode = InvalidationMode.TTL if self.setting == "ttl" else InvalidationMode.OFF
        self.healthy = False
        self.received = 0
        #: pushed messages refused or cut down (bounded work per message; see
        #: :func:`lowtide.redis.tracking.message_keys`)
        self.refused = MessageStats()
        self.last_error: str | None = None
        self._subscribers: Listeners[list[str] | None] = Listeners(log, "invalidation subscriber")
        self._on_healthy: Listeners[None] = Listeners(log, "invalidation healthy-callback")
        self._on_subscribed: Listeners[None] = Listeners(log, "invalidation subscribed-callback")
        self._closing = BackgroundTasks(log, "invalidation listener")
        self._race = RaceGuard()
        self._conns: list[TrackingConnection] = []  # one per primary on a cluster
        #: carries the BCAST NOLOOP registration (single server, RESP2 listener; see
        #: :mod:`lowtide.redis.writer`), else None and the listener registers itself
        self._writer: WriterConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._healthy_event = asyncio.Event()
        self._probes = Probes(hub, lambda: self.keepalive)
        self._stopping = False
        self._last_heard = 0.0
        self._heard: dict[int, float] = {}
        self._remove_listener = hub.on_mode_change(self._on_mode)

    # -- subscribers and race guard -----------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(keys)`` on every invalidation; returns an unsubscribe function."""
        return self._subscribers.add(callback)

    def when_healthy(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` each time the listener is (re)subscribed and self-tested;
        returns an unsubscribe function."""
        return self._on_healthy.add(lambda _: callback())

    def when_subscribed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` each time the listener is (re)subscribed, before any self-test
        (also while the fleet is suspended); returns an unsubscribe function."""
        return self._on_subscribed.add(lambda _: callback())

    def track(self, prefixes: Sequence[str]) -> None:
        """Also track keys under ``prefixes``: keys lowtide does not build itself (the
        drop-in client's ``cache_prefixes``); pushes for them reach subscribers like any other.

        A prefix an already tracked one covers is skipped; one that covers tracked ones
        replaces them (the server refuses overlapping prefixes). Prefixes under lowtide's
        namespace are refused (ValueError). A session already running is restarted so the
        server tracks the new prefixes (process memory is flushed, as on any reconnection).
        """
        own = f"{self._hub.settings.namespace}:"
        changed = False
        for p in prefixes:
            if not p or p.startswith(own) or own.startswith(p):
                raise ValueError(f"cannot track {p!r}: it overlaps lowtide's own keys")
            if any(p.startswith(q) for q in self.prefixes):
                continue
            self.prefixes = [q for q in self.prefixes if not q.startswith(p)] + [p]
            changed = True
        if changed and self._conns:
            self._lost("tracking new prefixes", expected=True)
            self._close_conn()

    def info(self) -> dict[str, Any]:
        """Mode, health and counters (for health reports)."""
        listener = "subscribed" if self.healthy else "down"
        if self.mode is InvalidationMode.TTL:
            listener = "none (ttl mode)"
        return {
            "mode": self.mode.value,
            "setting": self.setting,
            "healthy": self.healthy,
            "listener": listener,
            "received": self.received,
            # messages read as a flush because they were over the bounds; messages with keys
            # that are not lowtide's (or of an unexpected shape); keys skipped in them
            "oversized_messages": self.refused.oversized,
            "malformed_messages": self.refused.malformed,
            "skipped_keys": self.refused.skipped_keys,
            "last_error": self.last_error,
            # cache writes sent on a connection whose writes are not pushed back (NOLOOP)
            "quiet_writes": self.writer is not None,
            # keyspace mode: flushes noticed by a vanished sentinel (FLUSHALL sends no event)
            "silent_flushes": self._probes.flushes,
        }

    @property
    def connections(self) -> tuple[TrackingConnection, ...]:
        """The live listener connections (one per primary on a cluster; empty while down)."""
        return tuple(self._conns)

    @property
    def writer(self) -> WriterConnection | None:
        """The connection carrying the tracking registration with NOLOOP, while it is up:
        writes sent on it are not pushed back to this process (None: write through the pool
        and expect the push of your own write)."""
        w = self._writer
        return w if w is not None and w.up else None

    def wrote_quietly(self, keys: Sequence[str]) -> None:
        """Race guard: this process changed ``keys`` on :attr:`writer`, so no push will tell:
        count it as an invalidation for every command on them still in flight (a read sent
        before the write may bring back the value it replaced)."""
        self._race.note(keys)

    @property
    def pushed_keepalive(self) -> float | None:
        """While healthy in a mode where the server pushes every writer's changes (CLIENT
        TRACKING, keyspace notifications): a period whose triple bounds how long a change can
        go unnoticed (a lost connection, or in keyspace mode a silent flush, is found within
        it); None otherwise (see :func:`~lowtide.cache.freshness.fresh_cap`)."""
        pushed = (InvalidationMode.TRACKING, InvalidationMode.KEYSPACE)
        return self.keepalive if self.healthy and self.mode in pushed else None

    @property
    def publishes(self) -> bool:
        """True when writers must PUBLISH changed keys (pub/sub backplane, or not known yet)."""
        if self.setting == "pubsub":
            return True
        if self.setting == "auto":
            return self.mode not in (InvalidationMode.TRACKING, InvalidationMode.KEYSPACE)
        return False

    @property
    def generation(self) -> int:
        """Bumped by every flush (and by every new session): older tokens can never fill."""
        return self._race.generation

    def begin(self, key: str) -> tuple[int, int]:
        """Note that a command on ``key`` is about to be sent; pass the token to :meth:`end`."""
        return self._race.begin(key)

    def end(self, key: str, token: tuple[int, int]) -> int | None:
        """End a command begun with :meth:`begin`.

        Returns how many invalidations of ``key`` arrived in between, or ``None`` when process
        memory may not be filled at all (a flush happened, or the listener is not healthy).
        """
        return self._race.end(key, token, trusted=self.healthy)

    def valid(self, key: str, token: tuple[int, int]) -> bool:
        """End a read begun with :meth:`begin`: True if its reply may be kept in memory."""
        return self.end(key, token) == 0

    def _dispatch(self, keys: list[str] | None) -> None:
        if keys is None:
            self._race.flush()
        else:
            self._race.note(keys)
        self._subscribers.emit(keys)

    def _lost(self, why: str, *, expected: bool = False) -> None:
        was = self.healthy
        self.healthy = False
        self._healthy_event.clear()
        self.last_error = why
        if was and not expected and not self._stopping:
            log.warning("invalidation listener lost (%s): flushing process memory", why)
        self._dispatch(None)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the listener task (idempotent; nothing to start in ``ttl`` mode)."""
        if self.mode is InvalidationMode.TTL:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_healthy(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the listener is subscribed and self-tested (real seconds)."""
        try:
            await asyncio.wait_for(self._healthy_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the listener and flush (process memory can no longer be trusted)."""
        self._remove_listener()
        self._stopping = True
        task, self._task = self._task, None
        conns, self._conns = self._conns, []
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
        for conn in conns:
            await conn.close()  # pending reads fail at once
        if task is not None:
            task.cancel()
            # redis-py disconnects on cancellation; never let a stuck socket hold shutdown
            await asyncio.wait({task}, timeout=2.0)
        if writer is not None:
            await writer.close()
        await self._closing.drain(timeout=2.0)
        self._lost("stopped", expected=True)

    def _on_mode(self, change: ModeChange) -> None:
        if self.mode is InvalidationMode.TTL:
            return
        if change.new is Mode.SUSPENDED and change.reason == "fleet":
            return  # keep listening: the fleet-wide resume arrives on this connection
        if change.new is not Mode.DISTRIBUTED and self._conns:
            self._lost(f"hub {change.new.value}", expected=True)
            self._close_conn()

    async def _run(self) -> None:
        backoff = Backoff(self._hub.settings.reconnect_min, self._hub.settings.reconnect_max)
        clock = self._hub.clock
        while not self._stopping:
            while not (self._hub.distributed or self._hub.fleet_suspended):
                await self._hub.wait_for(Mode.DISTRIBUTED, 1.0)
            try:
                await self._session()
                backoff.reset()
            except RedisCommandError as exc:
                if self._fall_back(exc):
                    continue
                self._lost(str(exc))
            except SelfTestFailed as exc:
                if self._fall_back(exc, selftest=True):
                    continue  # events that never came: the server only takes the setting
                self._lost(str(exc))
            except LowtideError as exc:
                self._lost(str(exc))
            except asyncio.CancelledError:
                raise
            conns, self._conns = self._conns, []
            for conn in conns:
                await conn.close()
            await self._close_writer()
            await clock.sleep(backoff.next_delay())

    def _fall_back(self, exc: LowtideError, *, selftest: bool = False) -> bool:
        why = self._feeds.fall_back(exc, selftest=selftest)
        if why is None:
            return False
        self._lost(why)
        log.warning("%s", why)
        self._close_conn()
        return True

    @property
    def _feed(self) -> str:
        return self._feeds.current

    def _close_conn(self) -> None:
        conns, self._conns = self._conns, []
        for conn in conns:
            conn.abort()  # not one more command, even from a handshake under way
            self._closing.spawn(conn.close())
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
            self._closing.spawn(writer.close())

    async def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()

    def _writer_lost(self, why: str) -> None:
        # the registration went with the connection: the listener hears nothing more (and
        # writes through the pool from now on must see this flush before their verdict)
        self._lost(why)

    def _quiet_writer(self, targets: list[tuple[Settings, str, str]], resp3: bool) -> bool:
        """True if this session registers tracking on a writer connection (NOLOOP): CLIENT
        TRACKING on one server (not a cluster), RESP2 listener, the setting on."""
        hub = self._hub
        return (
            hub.settings.noloop_writes
            and self._feed == "tracking"
            and not resp3
            and len(targets) == 1
            and hub.gateway.primaries() is None
        )

    @property
    def _use_pubsub(self) -> bool:
        return self._feed == "pubsub"

    async def _session(self) -> None:
        targets = listener_targets(self._hub, pubsub=self._use_pubsub)
        topology = self._hub.gateway.primaries()
        keyspace = self._feed == "keyspace"
        resp3 = self._hub.settings.listener_resp3 and not (self._use_pubsub or keyspace)
        conns = [
            TrackingConnection(s, self._hub.ledger, resp3=resp3, stats=self.refused)
            for s, _, _ in targets
        ]
        self._conns = conns
        writer = None
        if self._quiet_writer(targets, resp3):
            writer = self._writer = WriterConnection(
                targets[0][0],
                self._hub.ledger,
                on_lost=self._writer_lost,
                now=self._hub.clock.monotonic,
            )
        for conn, (_, _, sentinel) in zip(conns, targets, strict=True):
            if self._use_pubsub:
                await conn.open(self.prefixes, backplane=self.channel)
            elif keyspace:
                await conn.open(self.prefixes, keyspace=True, watched=[sentinel])
            elif writer is not None:
                await conn.open(
                    self.prefixes, track=functools.partial(writer.open, prefixes=self.prefixes)
                )
            else:
                await conn.open(self.prefixes)
        self.mode = InvalidationMode(self._feed)  # tracking, keyspace or pubsub
        loop = asyncio.get_running_loop()
        readers = [loop.create_task(self._read_loop(c)) for c in conns]
        if writer is not None and writer.reader is not None:
            readers.append(writer.reader)  # its loss ends the session like the listener's
        try:
            self._on_subscribed.emit(None)
            if self._hub.fleet_suspended:
                # listening for the fleet-wide switch only: no self-test write while the
                # fleet is suspended; leaving the suspension closes this session, and the
                # next one proves itself before process memory is trusted again
                self.last_error = "fleet suspended: listening for the switch only"
                await self._keepalive(conns, readers, topology)
            await self._probes.selftest(
                [probe for _, probe, _ in targets],
                readers,
                self.mode,
                self.channel,
                self.selftest_timeout,
            )
            await self._probes.start_sentinels([t[2] for t in targets], self.mode)
            # anything begun before tracking was on could have missed a push: a new generation
            # makes such reads and writes unable to fill
            self._race.flush()
            self.healthy = True
            self._feeds.proven = True
            self._healthy_event.set()
            self.last_error = None
            self._on_healthy.emit(None)
            await self._keepalive(conns, readers, topology)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.wait(readers, timeout=1.0)

    async def _read_loop(self, conn: TrackingConnection) -> None:
        while True:
            msg = await conn.read()
            self._last_heard = self._heard[id(conn)] = self._hub.clock.monotonic()
            if msg == "pong":
                continue
            if self._writer is not None:
                # a push comes only through the writer's registration: it is alive on the
                # server, which is all the listener needs of it (no keepalive PING on it)
                self._writer.heard = self._last_heard
            keys = msg if isinstance(msg, list) or msg is None else None
            self.received += 1
            if isinstance(keys, ks.Checked):  # the fleet's flush sentinel was checked
                self._probes.checked()
                continue
            if keys is not None and self._probes.heard(keys) and self.healthy:
                keys = None  # another process found the sentinel gone: flush
            if keys is None or keys:  # nothing to do for a message whose keys were all skipped
                self._dispatch(keys)
            # let the loop run between messages: a flood of pushes already buffered would
            # otherwise be read and dispatched without a single yield
            await asyncio.sleep(0)

    async def _keepalive(
        self,
        conns: list[TrackingConnection],
        readers: list[asyncio.Task[Any]],
        topology: list[tuple[str, int]] | None,
    ) -> None:
        self._last_heard = self._hub.clock.monotonic()
        self._heard = {id(c): self._last_heard for c in conns}
        loop = asyncio.get_running_loop()
        clock = self._hub.clock
        tick = clock.monotonic() + self.keepalive
        while True:
            nap = tick - clock.monotonic()
            if self.healthy:  # wake for this listener's sentinel check too (keyspace mode)
                nap = min(nap, self._probes.wait())
            sleeper = loop.create_task(clock.sleep(max(0.0, nap)))
            try:
                done, _ = await asyncio.wait({*readers, sleeper}, return_when="FIRST_COMPLETED")
            finally:
                sleeper.cancel()
            for reader in readers:
                if reader in done:
                    reader.result()
                    raise LowtideError("listener stopped")
            if self.healthy and await self._probes.flushed(self.mode):
                self._dispatch(None)
            if clock.monotonic() < tick:
                continue
            tick = clock.monotonic() + self.keepalive
            heard = min(self._heard.values())
            writer = self._writer if self._writer is not None and self._writer.up else None
            if writer is not None:
                heard = min(heard, writer.heard)
            if self._hub.clock.monotonic() - heard > 2 * self.keepalive:
                raise LowtideError("a listener connection was silent for two keepalive periods")
            if self._hub.gateway.primaries() != topology:
                # failover or resharding: keys may live elsewhere now; start over (and flush)
                raise LowtideError("cluster topology changed")
            # a connection heard from within half a period is alive: no PING (a busy listener
            # sends none); a dead one is still found within three periods of its last message
            now = self._hub.clock.monotonic()
            for conn in conns:
                if now - self._heard[id(conn)] >= self.keepalive / 2:
                    await conn.ping()
            if writer is not None and now - writer.heard >= self.keepalive / 2:
                await writer.ping()
