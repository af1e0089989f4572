"""What the server's pushes say about a fixed window's counter: reservations other hubs made.

Each fixed window has its own counter key, ``<ns>:r:<name>:<tenant>:w<window>`` (see
:mod:`lowtide.limiter.reserve`), and every reservation by any hub is one change of that key:
where the server pushes every writer's changes (CLIENT TRACKING or keyspace notifications), it
tells every hub, at no billed cost, that the window's counter went up. Each
reservation takes at least one token, so a hub that has heard ``limit`` changes of the window
under way knows its budget is spent without asking (a refused reservation is one command) and
without anyone telling it (one ``SET`` of a spent-window key). With the incident's limits of
2 calls per 10 s, that is most of what a sparse fleet spent beyond one reservation per
(machine, window).

Why hearing can only under-count, never over-count (so a hub refuses only when the counter
really is at the limit): a push names the window's own key, so it belongs to exactly one
window; CLIENT TRACKING merges the changes of one event-loop iteration into one push (fewer,
never more); the only commands lowtide sends on such a key are the reservation itself (``SET
NX PX`` creating it, or ``INCRBY``), one change each, and an expiry push comes after its window
ended; keyspace events that only change a time to live are dropped by the listener. (One
exception: a key removed in the middle of its window, by eviction or by hand, is created again
by the next ``INCRBY`` and given its life by a ``PEXPIRE``, which CLIENT TRACKING pushes as one
more change.) A value
planted by someone else can make hubs refuse for the rest of that window, as a planted counter
could. A flush, or a listener that is not healthy, forgets what was heard (more asks, never a
wrong refusal).

A push is untrusted: the key must be this limiter's, ``w<digits>``, for a window at most one
away from the one under way; anything else is ignored. Memory is bounded: counts are kept for
at most :data:`MAX_CELLS` (tenant, window)s, and windows that ended are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from lowtide.errors import InvalidKeyError
from lowtide.keys import escape, parse_key, prefix
from lowtide.limiter.core import window_end, window_index
from lowtide.modes import InvalidationMode

if TYPE_CHECKING:
    from lowtide.limiter.lease import Lease
    from lowtide.runtime import HubView

__all__ = ["MAX_CELLS", "WindowPushes", "pushed"]

#: (tenant, window)s whose heard changes are kept at most (the oldest are dropped first)
MAX_CELLS = 20_000
_WINDOW = re.compile(r"w([0-9]{1,18})")
_PUSHED = (InvalidationMode.TRACKING, InvalidationMode.KEYSPACE)


def pushed(hub: HubView) -> bool:
    """True if this hub's invalidation setting lets the server push every change (``auto``,
    ``tracking``, ``keyspace``), so listening for the window keys' changes can pay."""
    return hub.settings.url is not None and hub.settings.invalidation in (
        "auto",
        "tracking",
        "keyspace",
    )


class WindowPushes:
    """Changes of one limiter's window counters heard by this hub (see module docs)."""

    def __init__(self, hub: HubView, name: str, per: float) -> None:
        self._hub = hub
        self._per = per
        self._name = name
        self._prefix = f"{prefix(hub.settings.namespace, 'limiter')}{escape(name)}:"
        #: (tenant, window) -> changes heard, oldest first
        self._heard: dict[tuple[str | None, int], int] = {}
        self._floor = 0  # windows before this one have been dropped
        #: pushes for this limiter's keys that were ignored (not a window near the current one)
        self.ignored = 0
        #: windows refused without asking because the changes heard proved them spent
        self.refusals = 0
        self._unsubscribe: Callable[[], None] = hub.invalidations.subscribe(self._on_keys)

    @property
    def listening(self) -> bool:
        """True while the server pushes every change to this hub."""
        inv = self._hub.invalidations
        return inv.healthy and inv.mode in _PUSHED

    def heard(self, tenant: str | None, window: int) -> int:
        """Changes of ``tenant``'s counter for ``window`` heard so far (0 while not listening)."""
        if not self.listening:
            return 0
        return self._heard.get((tenant, window), 0)

    def spent(self, tenant: str | None, window: int, limit: int) -> bool:
        """True if the changes heard prove ``window``'s budget spent (each took >= 1 token)."""
        return self.heard(tenant, window) >= limit

    def block(self, lease: Lease, tenant: str | None, now: float, limit: int) -> bool:
        """If the changes heard prove the window under way (server time ``now``) spent, make
        ``lease`` refuse until it ends, without asking, and return True."""
        window = window_index(now, self._per)
        if self.heard(tenant, window) < limit:
            return False
        lease.blocked_until = max(lease.blocked_until, window_end(window, self._per))
        lease.told = window  # nobody needs telling: every hub heard the same changes
        self.refusals += 1
        return True

    def tells_all(self, share: int) -> bool:
        """True if every hub hears that a window is spent without being told: while pushed,
        with leases of one token (``share`` 1) the changes equal the tokens taken."""
        return share <= 1 and self.listening

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()
        self._heard.clear()

    def _on_keys(self, keys: list[str] | None) -> None:
        if keys is None:  # a flush, or the listener lost: what was heard may be incomplete
            self._heard.clear()
            return
        current = -1
        for rk in keys:
            if not rk.startswith(self._prefix):
                continue
            try:
                parsed = parse_key(rk)
            except (InvalidKeyError, ValueError):
                continue
            m = _WINDOW.fullmatch(parsed.key)
            if m is None or parsed.hashtag or parsed.name != self._name:
                continue  # another key of this limiter (a token bucket's, a span's hash)
            if current < 0:
                current = window_index(self._hub.server_time(), self._per)
                self._drop_before(current - 1)
            window = int(m.group(1))
            if abs(window - current) > 1:
                self.ignored += 1  # an expiry after its window, or not a window of ours
                continue
            cell = (parsed.tenant, window)
            self._heard[cell] = self._heard.get(cell, 0) + 1
            if len(self._heard) > MAX_CELLS:
                del self._heard[next(iter(self._heard))]

    def _drop_before(self, window: int) -> None:
        if window <= self._floor:
            return
        self._floor = window
        if self._heard:
            self._heard = {c: n for c, n in self._heard.items() if c[1] >= window}
