"""What news of a limiter's shared state does to the tokens one hub holds.

Three kinds of news reach a hub as pushes: a penalty written or removed for a tenant
(:mod:`lowtide.limiter.state`), the fleet's configuration changed
(:mod:`lowtide.limiter.agreement`), another hub took a window's last token
(:mod:`lowtide.limiter.spent`). A push that only says something *may* have changed (``None``:
every cached answer was dropped, e.g. the invalidation listener reconnected after a blip)
pauses the tokens in hand instead of dropping them: the fleet counter has already charged
them, and in a window that is spent a dropped token is lost until the window ends. The next
decision reads the state again (at most one GET each for configuration and penalty) and
resumes the tokens, or drops them if a penalty or a conflict is now in force.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lowtide.cache.store import Key
from lowtide.limiter.agreement import FleetConfig
from lowtide.limiter.core import window_end, window_index
from lowtide.limiter.lease import Lease
from lowtide.limiter.state import Penalties
from lowtide.tenancy import TenantLRU

__all__ = ["LeaseWatch"]

#: how long a hub refuses after a re-read found a configuration conflict (seconds)
CONFLICT_PAUSE = 1.0


class LeaseWatch:
    """Applies pushes about one limiter's shared state to the leases of one hub."""

    def __init__(
        self,
        leases: TenantLRU[Lease],
        per: float,
        server_now: Callable[[], float],
        tenant_kw: Callable[[str | None], dict[str, Any]],
    ) -> None:
        self._leases = leases
        self._per = per
        self._now = server_now
        self._kw = tenant_kw

    def drop_all(self) -> None:
        """Give up every tenant's tokens in hand (the rules they were granted under changed)."""
        for lease in self._leases.values():
            lease.drop()

    def pause_all(self) -> None:
        """Every tenant's tokens wait until the shared state is read again."""
        for lease in self._leases.values():
            lease.pause()

    def on_penalty_change(self, k: Key | None) -> None:
        """A penalty may have been written or removed for ``k``'s tenant (None: any tenant)."""
        if k is None:
            self.pause_all()
            return
        held = self._leases.peek(k[0])
        if held is not None:
            held.pause()

    def on_spent(self, tenant: str | None, window: int) -> None:
        """Another hub took the last token of ``window``: once this hub's tokens are spent, it
        refuses until the window ends instead of asking (only for the window under way)."""
        lease = self._leases.peek(tenant)
        if lease is None:
            return
        if window != window_index(self._now(), self._per):
            return
        lease.blocked_until = max(lease.blocked_until, window_end(window, self._per))
        lease.told = window

    async def recheck(
        self, lease: Lease, agreement: FleetConfig, penalties: Penalties, tenant: str | None
    ) -> None:
        """Read the shared state again for a paused ``lease`` and resume or drop its tokens
        (a new limit drops them anyway, through the agreement's change callback)."""
        paused = lease.recheck
        await agreement.settle()
        conflict = agreement.conflict is not None
        until = await penalties.read(self._kw(tenant), self._now())
        if lease.recheck != paused:
            return  # dropped, or paused again while reading: the caller's loop decides
        if until is None and not conflict:
            lease.resume()
            return
        lease.blocked_until = max(lease.blocked_until, until or self._now() + CONFLICT_PAUSE)
        lease.drop()
