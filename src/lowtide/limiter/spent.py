"""Telling the fleet that a fixed window's budget is spent, so nobody asks Redis again in it.

The hub whose reservation took a window's last token knows from the reply that the window is
spent; every other hub would learn it only by asking once more (one refused reservation each).
When that is likely (its own demand is near or over its fair share, see
:func:`~lowtide.limiter.core.worth_telling`) the hub writes one tracked control key,
``<ns>:x:<name>.spent:<tenant>:w<window>`` (``SET PX`` until the window ends, +1 ``PUBLISH`` in
pub/sub mode); every hub hears the push (free) and refuses locally, once its own tokens are
spent, until the window ends. Without pushes (``invalidation="ttl"``, or the listener not
healthy) nothing is written.

A push is untrusted: anyone who can write lowtide's keys can send one. It is honoured only if
the key is ``w<digits>`` naming the window under way, so a planted key can at most make hubs
refuse for the rest of the current window (as a planted counter could); anything else is
ignored and counted in :attr:`SpentWindows.bad`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lowtide._untrusted import Warnings, shown
from lowtide.cache.options import pushed_state
from lowtide.cache.store import Key
from lowtide.errors import LowtideError
from lowtide.limiter.core import window_end, window_index, worth_telling
from lowtide.limiter.lease import Lease
from lowtide.limiter.state import unpushed_bound
from lowtide.modes import InvalidationMode

if TYPE_CHECKING:
    from lowtide.cache import Cache, CacheHub

__all__ = ["SpentWindows"]

log = logging.getLogger("lowtide.limiter")
_WINDOW = re.compile(r"w(-?[0-9]{1,18})")
_PUSHED = (InvalidationMode.TRACKING, InvalidationMode.KEYSPACE, InvalidationMode.PUBSUB)


class SpentWindows:
    """One limiter's spent-window announcements (see module docs)."""

    def __init__(
        self,
        hub: CacheHub,
        name: str,
        *,
        per_tenant: bool,
        on_spent: Callable[[str | None, int], None],
    ) -> None:
        self._hub = hub
        self._name = name
        self._on_spent = on_spent
        #: pushes that did not name a window (ignored)
        self.bad = 0
        #: announcements written by this hub
        self.told = 0
        self._warnings = Warnings(log)
        self.cache: Cache = hub.caches.cache(
            f"{name}.spent",
            pushed_state(
                max_staleness=unpushed_bound(hub),
                entry_bytes=200,
                max_entries=1000,
                fail_safe=False,
                max_value_bytes=16,
                per_tenant=per_tenant,
            ),
            component="control",
            codec=None,
        )
        self.cache.watch(self._pushed)

    @property
    def pushed(self) -> bool:
        """True while other hubs would hear an announcement."""
        inv = self._hub.invalidations
        return inv.healthy and inv.mode in _PUSHED

    @property
    def cost(self) -> int:
        """Billed commands of one announcement: 1 SET, +1 PUBLISH in pub/sub mode."""
        return 2 if self._hub.invalidations.mode is InvalidationMode.PUBSUB else 1

    def wanted(
        self, lease: Lease, share: int, *, others: int | None, left: float, heard: bool
    ) -> bool:
        """Whether to tell the fleet that ``lease``'s window (just found spent) is spent: not
        told yet, others would hear it, they would not know it anyway (``heard``: every hub
        heard the reservations that spent it), and it spares more than it costs
        (:func:`~lowtide.limiter.core.worth_telling`)."""
        return (
            lease.told != lease.window
            and self.pushed
            and not heard
            and worth_telling(lease.demand or 0.0, share, others=others, left=left, cost=self.cost)
        )

    async def tell(self, kw: dict[str, Any], lease: Lease, now: float, per: float) -> None:
        """Announce that the window under way at ``now`` (its reservation was ``lease``'s last)
        is spent: 1 SET PX, +1 PUBLISH in pub/sub mode. Never raises (an announcement lost
        costs the others one refused reservation each)."""
        window = window_index(now, per)
        if window != lease.reserved_window or lease.told == window:
            return  # the window ended meanwhile, or someone told already
        lease.told = window
        with contextlib.suppress(LowtideError):
            ttl = max(0.001, window_end(window, per) - now)
            await self.cache.set(f"w{window}", 1, ttl=ttl, **kw)
            self.told += 1

    def _pushed(self, k: Key | None) -> None:
        if k is None:
            return
        tenant, key = k
        m = _WINDOW.fullmatch(key) if isinstance(key, str) else None
        if m is None:
            self.bad += 1
            self._warnings.warn(
                "spent",
                "rate limiter %r: ignoring a spent-window push that names no window: %s",
                self._name,
                shown(key),
            )
            return
        self._on_spent(tenant, int(m.group(1)))
