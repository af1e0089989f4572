"""The fleet-wide kill switch: one tracked control key that every hub listens to.

``lowtide suspend --url ...`` writes ``<ns>:x:switch::fleet`` (and PUBLISHes its name on the
backplane channel for hubs in pub/sub mode); ``lowtide resume`` deletes it. Every hub hears the
change on its invalidation listener within milliseconds, with no polling, reads the key once
(1 GET) and switches: suspended hubs stop all data traffic but keep the listener connection,
so the resume reaches them the same way. Rollback is the same switch. A hub also reads the key
once at start and after each listener reconnection, so it never misses a switch made while it
was away.

The process-level switches are separate: ``LOWTIDE_SUSPEND``/``SUSPEND_REDIS`` (no connection
at all) and ``lt.suspend()``/``lt.resume()``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lowtide._tasks import BackgroundTasks
from lowtide.context import Attribution
from lowtide.errors import LowtideError
from lowtide.keys import build_key, family
from lowtide.modes import Mode

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["FleetSwitch", "switch_key", "write_switch"]

log = logging.getLogger("lowtide.control")
CONTROL = Attribution("control", "-", None)


def switch_key(namespace: str) -> str:
    """The control key of the fleet-wide switch."""
    return build_key(namespace, "control", "switch", None, "fleet")


class FleetSwitch:
    """Applies the fleet-wide switch to one hub (see module docs)."""

    def __init__(self, hub: HubView) -> None:
        self._hub = hub
        ns = hub.settings.namespace
        self.key = switch_key(ns)
        self._att = Attribution("control", family(ns, "control", "switch"), None)
        self._tasks = BackgroundTasks(log, "fleet switch")
        self._unsubscribe: list[Callable[[], None]] = []
        self.state: dict[str, Any] | None = None
        self.checks = 0

    def start(self) -> None:
        """Listen for switches (starts the invalidation listener)."""
        inv = self._hub.invalidations
        # read the switch again each time the listener (re)subscribes: a switch flipped while
        # it was away is not missed (also while the fleet is suspended)
        self._unsubscribe = [inv.subscribe(self._on_keys), inv.when_subscribed(self._schedule)]

    def _on_keys(self, keys: list[str] | None) -> None:
        if keys is not None and self.key in keys:
            self._schedule()

    def _schedule(self) -> None:
        self._tasks.spawn(self.check())

    async def read(self) -> dict[str, Any] | None:
        """Read the switch (1 GET, even while the gateway is closed); None when it is off.

        Raises :class:`LowtideError` when Redis cannot be asked.
        """
        raw = await self._hub.gateway.control(self._att, "GET", self.key)
        self.checks += 1
        state: dict[str, Any] | None = None
        if raw is not None:
            try:
                state = json.loads(raw)
            except ValueError:
                state = {"state": "suspended", "reason": "unparseable switch value"}
        self.state = state
        return state

    async def suspension(self) -> str | None:
        """The reason the fleet is suspended, or None (also when the switch cannot be read).

        The hub asks this at start, before it sends any data command.
        """
        try:
            state = await self.read()
        except LowtideError as exc:
            log.debug("fleet switch not read: %s", exc)
            return None
        if state is not None and state.get("state") == "suspended":
            return str(state.get("reason") or "fleet switch")
        return None

    async def check(self) -> None:
        """Read the switch (1 GET) and apply it."""
        try:
            state = await self.read()
        except LowtideError as exc:
            log.debug("fleet switch not read: %s", exc)
            return
        hub = self._hub
        if state is not None and state.get("state") == "suspended":
            if hub.mode in (Mode.DISTRIBUTED, Mode.DEGRADED):
                hub.suspend_for_fleet(str(state.get("reason") or "fleet switch"))
        elif hub.fleet_suspended:
            hub.resume()

    async def aclose(self) -> None:
        """Stop listening and cancel (and await) pending checks."""
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe = []
        await self._tasks.aclose()


async def write_switch(hub: HubView, *, suspend: bool, reason: str = "") -> None:
    """Flip the fleet-wide switch through ``hub`` (SET or DEL, then PUBLISH for pub/sub hubs)."""
    ns = hub.settings.namespace
    key = switch_key(ns)
    gw = hub.gateway
    if suspend:
        value = json.dumps(
            {"state": "suspended", "reason": reason or "lowtide suspend", "at": hub.clock.time()}
        )
        await gw.control(CONTROL, "SET", key, value)
    else:
        await gw.control(CONTROL, "DEL", key)
    await gw.control(CONTROL, "PUBLISH", f"{ns}:invalidate", key)
