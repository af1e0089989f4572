"""What a component may ask of its hub: the narrow :class:`HubView` protocol.

Layering rule: modules import downward only, and nothing below ``hub.py`` imports ``hub.py``.
Every component (cache, listener, limiter, breaker, quotas, tenants, control, fleet jobs) is
typed against :class:`HubView` (or, when it keeps state in tiered caches,
:class:`~lowtide.cache.registry.CacheHub`), never against :class:`~lowtide.hub.Lowtide`, so
the hub can be replaced by any object with these members (tests, another runtime) and mypy
proves the protocol is enough. ``tests/unit/test_layering.py`` checks that the import graph,
``TYPE_CHECKING`` imports included, has no cycle.

This module only names types from the leaves below it (settings, clock, ledger, modes, the
Redis gateway); the listener and the fleet appear here as small protocols of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lowtide.blocklist import TenantBlockList
    from lowtide.clock import Clock
    from lowtide.ledger import Ledger
    from lowtide.modes import InvalidationMode, Mode, ModeChange
    from lowtide.redis import Gateway
    from lowtide.settings import Settings

__all__ = ["FleetSize", "HubView", "InvalidationFeed", "QuietWriter", "Subscriber"]

#: an invalidation callback: the Redis keys a push named, or ``None`` for "drop everything"
Subscriber = Callable[[list[str] | None], None]


class QuietWriter(Protocol):
    """A pipelined connection of the listener's (see :mod:`lowtide.redis.writer`)."""

    async def call(self, *args: Any) -> Any:
        """One command's raw reply."""

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Raw replies of ``commands`` sent in one write (error replies in place)."""


class InvalidationFeed(Protocol):
    """The process's invalidation listener as components see it (see
    :class:`~lowtide.invalidation.Invalidations`)."""

    @property
    def mode(self) -> InvalidationMode:
        """Tracking, pub/sub, ttl, or off (not established yet)."""

    @property
    def healthy(self) -> bool:
        """True while subscribed and self-tested: only then may process memory be trusted."""

    @property
    def keepalive(self) -> float:
        """Seconds between keepalive PINGs (a lost connection is noticed within 3 of them)."""

    @property
    def channel(self) -> str:
        """The pub/sub backplane channel."""

    @property
    def pushed_keepalive(self) -> float | None:
        """While the server pushes every writer's changes (verified): the period whose triple
        bounds an unnoticed change; None otherwise."""

    @property
    def publishes(self) -> bool:
        """True when writers must PUBLISH the keys they change."""

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(keys)`` on every invalidation; returns an unsubscribe function."""

    def when_healthy(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` each time the listener is (re)subscribed and self-tested."""

    def when_subscribed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` each time the listener is (re)subscribed (before a self-test)."""

    def track(self, prefixes: Sequence[str]) -> None:
        """Also track keys under ``prefixes`` (keys lowtide does not build itself)."""

    @property
    def writer(self) -> QuietWriter | None:
        """The connection whose writes are not pushed back to this process, while it is up
        (CLIENT TRACKING with NOLOOP); None: write through the pool, expect your own push."""

    def wrote_quietly(self, keys: Sequence[str]) -> None:
        """Race guard: this process changed ``keys`` on :attr:`writer` (no push will tell)."""

    def begin(self, key: str) -> tuple[int, int]:
        """Race guard: a command on ``key`` is about to be sent."""

    def end(self, key: str, token: tuple[int, int]) -> int | None:
        """Race guard: invalidations of ``key`` since :meth:`begin`, or None (untrusted)."""


class FleetSize(Protocol):
    """Heartbeats and the fleet size they reveal (see :class:`~lowtide.fleet.Fleet`)."""

    @property
    def size(self) -> int:
        """Hubs seen in the last complete heartbeat interval (at least 1)."""

    @property
    def settled(self) -> bool:
        """Whether :attr:`size` counts a whole interval this hub beat in (else a lower
        bound: only the hubs that beat before this one's first beat)."""

    def start(self) -> None:
        """Start heartbeating (idempotent)."""


class HubView(Protocol):
    """The members of the hub that components use, and nothing else."""

    @property
    def settings(self) -> Settings:
        """The frozen settings."""

    @property
    def clock(self) -> Clock:
        """The one clock every component reads (never ``time.time()`` directly)."""

    @property
    def ledger(self) -> Ledger:
        """The command ledger."""

    @property
    def gateway(self) -> Gateway:
        """The one door to Redis; raises RedisUnavailable when there is none."""

    @property
    def mode(self) -> Mode:
        """The current mode."""

    @property
    def distributed(self) -> bool:
        """True while Redis is in use."""

    @property
    def fleet_suspended(self) -> bool:
        """True while the fleet-wide switch holds this hub suspended."""

    @property
    def invalidations(self) -> InvalidationFeed:
        """The invalidation listener (created on first use)."""

    @property
    def fleet(self) -> FleetSize:
        """Heartbeats and fleet size."""

    @property
    def quota_blocked(self) -> TenantBlockList:
        """Tenants over their command quota (changed only by the hub's quotas)."""

    def server_time(self) -> float:
        """Wall-clock seconds aligned to the Redis server's clock (see sync_server_clock)."""

    async def sync_server_clock(self) -> None:
        """Measure the server's clock once (1 TIME) so fleet windows align across machines."""

    def on_mode_change(self, listener: Callable[[ModeChange], None]) -> Callable[[], None]:
        """Call ``listener(change)`` on every mode change; returns an unsubscribe function."""

    async def wait_for(self, mode: Mode, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the hub is in ``mode``."""

    def suspend_for_fleet(self, detail: str) -> None:
        """Apply the fleet-wide switch: suspend, keeping the listener to hear the resume."""

    def resume(self) -> None:
        """Undo a suspension."""

    def saved(self) -> dict[str, int]:
        """Commands saved so far, by component (for reports)."""
