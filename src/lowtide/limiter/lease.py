"""What one hub holds for one tenant of one limiter: tokens in hand, and the demand they serve.

Pure state, no I/O: :class:`~lowtide.limiter.limiter.RateLimiter` spends the tokens on its fast
path (one decrement) and, on its slow path, counts the asks of each window (tokens spent plus
the asks a lease did not serve) into a demand estimate that sizes the next reservation. For
the token bucket it also holds the hub's rate lease (:mod:`lowtide.limiter.rates`): a local
bucket refilled at the leased rate while the lease lasts.
"""

from __future__ import annotations

import asyncio
import math

from lowtide.limiter.core import roll_demand

__all__ = ["Lease"]


class Lease:
    """One tenant's lease on one limiter, in one hub."""

    __slots__ = (
        "asked_other",
        "blocked_until",
        "burst",
        "counted_window",
        "demand",
        "expires",
        "fleet_remaining",
        "granted_at",
        "held_until",
        "issued",
        "joined",
        "key_seen",
        "local",
        "local_at",
        "local_used",
        "local_window",
        "pending",
        "rate",
        "rate_until",
        "recheck",
        "renew_at",
        "reserved_window",
        "shared_after",
        "size",
        "tokens",
        "told",
        "unreported",
        "until",
        "void",
        "waiting",
        "window",
    )

    def __init__(self) -> None:
        #: tokens in hand, usable while the monotonic clock is before ``until``
        self.tokens = 0
        self.until = -math.inf
        self.window = -1  # fixed window the tokens belong to
        self.expires = 0.0  # token bucket: tokens unusable after this server time
        self.size = 1
        self.granted_at = -math.inf
        #: no decision goes to Redis before this server time (penalty, refusal, spent window);
        #: whenever it is set, the tokens in hand are either dropped or still the fleet's grant
        self.blocked_until = 0.0
        self.fleet_remaining = 0
        self.reserved_window = -1  # window of the last reservation (fleet_remaining's window)
        #: non-zero while the tokens in hand wait for the shared state to be read again (a
        #: penalty or the fleet's configuration may have changed): ``until`` is parked in
        #: ``held_until`` so no decision spends them; each pause makes the number grow
        self.recheck = 0
        self.held_until = -math.inf
        self.local_used = 0  # admissions while Redis was unavailable, in local_window
        self.local_window = -1
        self.unreported = 0  # of those, not yet charged to the fleet counter
        self.pending: asyncio.Future[None] | None = None
        #: the reservation in flight grants nothing usable: the lease was dropped meanwhile (a
        #: penalty began, or the rules changed); cleared when that reservation ends
        self.void = False
        self.waiting = 0  # callers waiting for the reservation in flight: visible demand
        #: demand: asks per window (weighted mean of past windows)
        self.demand: float | None = None
        self.counted_window = -1  # the window whose asks are being counted
        self.issued = 0  # tokens granted in counted_window (spent = issued - tokens)
        self.asked_other = 0  # asks in counted_window not served from tokens (refused, local)
        #: the window whose counter key this hub knows exists (it reserved in it)
        self.key_seen = -1
        #: how often this hub's first reservation of a window, nothing heard, found the key
        #: created by another hub and not yet spent (weighted mean of past windows, 0 to 1)
        self.joined = 0.0
        #: the window this hub told the fleet was spent
        self.told = -1
        #: token bucket: the rate lease, ``rate`` tokens/s into at most ``burst`` local tokens
        #: (``local``, refilled up to monotonic ``local_at``), usable before ``rate_until``,
        #: renewed from ``renew_at`` on
        self.rate = 0.0
        self.burst = 0
        self.local = 0.0
        self.local_at = 0.0
        self.rate_until = -math.inf
        self.renew_at = -math.inf
        #: token bucket: server time before which the shared bucket has no token to give
        self.shared_after = 0.0

    def asked(self) -> int:
        """Asks counted in ``counted_window`` so far."""
        return self.issued - self.tokens + self.asked_other

    def count_window(self, window: int, *, drop: bool = True) -> None:
        """Start counting ``window``'s asks; with ``drop`` (fixed windows) the tokens of an
        earlier window are dropped: they are no longer usable."""
        if window == self.counted_window:
            return
        if self.counted_window >= 0:
            gap = window - self.counted_window
            if gap > 0:
                self.demand = roll_demand(self.demand, max(0, self.asked()), gap)
        self.counted_window = window
        if drop:
            self.tokens = 0
        self.issued = self.tokens
        self.asked_other = 0

    def grant(self, tokens: int, until: float) -> None:
        """Tokens granted by a reservation, usable until monotonic time ``until`` (none if the
        lease was dropped while the reservation was in flight: :attr:`void`)."""
        if self.void:  # charged by the fleet counter, never spent: under-use
            tokens = 0
        self.tokens = tokens
        self.issued += tokens
        if self.recheck:  # paused meanwhile: usable once the shared state is read again
            self.held_until = until
        else:
            self.until = until

    def pause(self) -> None:
        """The shared state may have changed: keep the tokens in hand (the fleet counted
        them) but spend none before it is read again (:meth:`resume` or :meth:`drop`)."""
        if not self.recheck:
            self.held_until = self.until
            self.until = -math.inf
        self.recheck += 1

    def resume(self) -> None:
        """The shared state was read again and allows the tokens in hand: spend them."""
        if self.recheck:
            self.recheck = 0
            self.until = self.held_until

    def drop(self) -> None:
        """Give up the tokens in hand, local ones included (unspent tokens are not asks), and
        those the reservation in flight, if any, will grant; a token bucket's next decision
        goes through a reservation, which reads the penalty first, before its local bucket is
        spent again."""
        if self.pending is not None:
            self.void = True
        self.issued -= self.tokens
        self.tokens = 0
        self.recheck = 0
        self.local = 0.0
        self.renew_at = -math.inf

    def end_rate_lease(self) -> None:
        """Stop using the rate lease (its tokens too); the next decision takes a new one."""
        self.rate, self.local, self.rate_until, self.renew_at = 0.0, 0.0, -math.inf, -math.inf

    def refill(self, mono: float) -> None:
        """Refill the local bucket up to monotonic time ``mono`` (empty once the lease is over)."""
        if mono >= self.rate_until:
            self.rate, self.local = 0.0, 0.0
            return
        if mono > self.local_at:
            self.local = min(float(self.burst), self.local + self.rate * (mono - self.local_at))
            self.local_at = mono

    def take_local(self, mono: float) -> bool:
        """Spend one local token, if the bucket holds one at ``mono``."""
        self.refill(mono)
        if self.local >= 1:
            self.local -= 1
            return True
        return False

    def local_wait(self, mono: float) -> float:
        """Seconds until the local bucket holds a token (inf if it never will on this lease)."""
        self.refill(mono)
        if self.rate <= 0:
            return math.inf
        wait = max(0.0, (1 - self.local) / self.rate)
        return wait if mono + wait < self.rate_until else math.inf
