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

The switch value is untrusted (:func:`parse_switch`): only a well-formed suspension suspends,
i.e. a JSON object of at most :data:`MAX_SWITCH_BYTES` whose ``state`` is ``"suspended"``.
Anything else (not JSON, JSON that is not an object, another ``state``) is ignored as if the
switch were off, counted in :attr:`FleetSwitch.invalid` and logged at most once a minute.
Failing open is deliberate: whoever can write the key can suspend the fleet anyway by writing a
valid value, so garbage gains an attacker nothing, while treating a stray or truncated write as
"suspend" would turn a mistake into a fleet-wide outage. The operator's ``reason`` is shown in
logs and ``health()`` only after :func:`~lowtide._untrusted.printable` (non-printable characters
replaced, at most :data:`MAX_REASON` characters), so it cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from lowtide._tasks import BackgroundTasks
from lowtide._untrusted import Warnings, number, printable, shown
from lowtide.context import Attribution
from lowtide.errors import LowtideError, RedisCommandError
from lowtide.keys import build_key, family
from lowtide.modes import Mode

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = [
    "MAX_REASON",
    "MAX_SWITCH_BYTES",
    "FleetSwitch",
    "parse_switch",
    "switch_key",
    "write_switch",
]

log = logging.getLogger("lowtide.control")
CONTROL = Attribution("control", "-", None)
#: the largest switch value read (``lowtide suspend`` writes well under 1 KB)
MAX_SWITCH_BYTES: Final = 4096
#: the longest operator reason kept (characters)
MAX_REASON: Final = 200
_DEFAULT_REASON = "fleet switch"


def parse_switch(raw: object) -> dict[str, Any] | None:
    """The suspension ``raw`` holds, checked (see module docs): ``{"state": "suspended",
    "reason": <printable text>, "at": <finite number or None>}``; None for anything else."""
    if not isinstance(raw, bytes | str) or len(raw) > MAX_SWITCH_BYTES:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("state") != "suspended":
        return None
    return {
        "state": "suspended",
        "reason": printable(value.get("reason"), MAX_REASON) or _DEFAULT_REASON,
        "at": number(value.get("at")),
    }


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
        #: switch values read that were not a well-formed suspension (ignored: read as off)
        self.invalid = 0
        self._warnings = Warnings(log)

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
        """Read the switch (1 GET, even while the gateway is closed): the checked suspension
        (see :func:`parse_switch`), or None when it is off or not a well-formed suspension.

        Raises :class:`LowtideError` when Redis cannot be asked (a WRONGTYPE reply is read as
        an invalid value).
        """
        try:
            raw = await self._hub.gateway.control(self._att, "GET", self.key)
        except RedisCommandError as exc:  # e.g. a hash planted at the key
            raw = exc
        self.checks += 1
        state = parse_switch(raw)
        if state is None and raw is not None:
            self.invalid += 1
            self._warnings.warn(
                "invalid",
                "fleet switch %s holds no well-formed suspension; ignored (read as off): %s",
                self.key,
                shown(raw),
            )
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
        return None if state is None else str(state["reason"])

    async def check(self) -> None:
        """Read the switch (1 GET) and apply it."""
        try:
            state = await self.read()
        except LowtideError as exc:
            log.debug("fleet switch not read: %s", exc)
            return
        hub = self._hub
        if state is not None:
            if hub.mode in (Mode.DISTRIBUTED, Mode.DEGRADED):
                hub.suspend_for_fleet(str(state["reason"]))
        elif hub.fleet_suspended:
            hub.resume()

    async def aclose(self) -> None:
        """Stop listening and cancel (and await) pending checks."""
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe = []
        await self._tasks.aclose()


async def write_switch(hub: HubView, *, suspend: bool, reason: str = "") -> None:
    """Flip the fleet-wide switch through ``hub`` (SET or DEL, then PUBLISH for pub/sub hubs).

    ``reason`` is stored as :func:`~lowtide._untrusted.printable` makes it (at most
    :data:`MAX_REASON` characters)."""
    ns = hub.settings.namespace
    key = switch_key(ns)
    gw = hub.gateway
    if suspend:
        text = printable(reason, MAX_REASON) or "lowtide suspend"
        value = json.dumps({"state": "suspended", "reason": text, "at": hub.clock.time()})
        await gw.control(CONTROL, "SET", key, value)
    else:
        await gw.control(CONTROL, "DEL", key)
    await gw.control(CONTROL, "PUBLISH", f"{ns}:invalidate", key)
