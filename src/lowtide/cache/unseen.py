"""What the pushes say about keys this process holds no L1 entry for.

With CLIENT TRACKING (BCAST, prefixes) or keyspace notifications, the listener hears every
write and expiry under the cache's key prefix, also of keys this process never read. So a key
no push named for longer than ``ttl`` (plus a margin for clocks) has no copy in Redis: every
copy lives at most ``ttl`` and each write of one is pushed. :meth:`Unseen.absent` answers that
for a key with no L1 entry, and a load may then store without reading Redis first (``SET ... PX
NX GET``: a wrong guess keeps the copy Redis holds, and only the loader call was spent).

What is remembered, per cache (an LRU-capped map, pruned as records age past the window):

* every push for a key with no entry (:meth:`Unseen.heard`), except the ones that announce an
  expiry, which forget the key instead (Redis holds no copy after it, and a new one is pushed):
  keyspace ``expired`` events, and with CLIENT TRACKING (whose pushes do not say whether a
  value was written or removed) a push that comes ``ttl`` after the last push of that key, at
  most :data:`EXPIRY_LAG` (a quarter of ``ttl`` if less; plus the margin) late: the removal
  of the copy that push announced (Redis removes an expired value when its active expiry
  cycle samples it, or a command touches it: seconds late, not at its deadline);
* every entry leaving L1 (eviction, drop), at the time it leaves: this process's own writes
  through the NOLOOP writer are never pushed back, so a key it wrote and then evicted must not
  look untouched;
* ``since``: from when that record is complete. It starts when :meth:`Unseen.absent` is first
  asked with the listener healthy in the current store epoch, and restarts with every epoch
  (``clear_local``, demotion: listener lost, flush, mode change) and whenever the pushed
  keepalive is off; dropping the oldest record for the cap moves it to that record's time.

Nothing is guessed while ``since`` is younger than the window (the process may have missed what
happened before), nor in pub/sub or ttl mode (no pushed keepalive: fills are not announced).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from lowtide.cache.store import Key, L1Store

__all__ = ["EXPIRY_LAG", "Unseen"]

#: how late (seconds) a CLIENT TRACKING push may announce an expiry and still be taken for
#: one: measured on the demo's Valkey, the push of a copy's expiry came 0.3-2.4 s after its
#: deadline (the 159 GETs that found nothing in one run's last 1,000 s of trace)
EXPIRY_LAG = 3.0


class Unseen:
    """Pushes and removals of keys with no L1 entry, and the guess they allow (module docs)."""

    __slots__ = (
        "_cap",
        "_epoch",
        "_expiry",
        "_heard",
        "_keep",
        "_keepalive",
        "_now",
        "_store",
        "_window",
        "since",
    )

    def __init__(
        self,
        ttl: float,
        cap: int,
        store: L1Store,
        *,
        now: Callable[[], float],
        keepalive: Callable[[], float | None],
    ) -> None:
        margin = min(1.0, 0.02 * ttl)
        #: a copy's longest life, plus the margin for clocks that ``L1.l2_gone`` uses
        self._window = ttl + margin
        #: the time after a write's push in which an untyped push is taken for its expiry
        #: (never before the copy's life is over, less what delivery may shift; Redis removes
        #: an expired value a little after its deadline)
        lag = min(EXPIRY_LAG, ttl / 4)  # short-lived copies: a fraction of their life
        self._expiry = (ttl - min(0.1, margin), ttl + margin + lag)
        #: how long a record is kept: until no push can be taken for its copy's expiry
        self._keep = self._expiry[1]
        self._cap = max(1, cap)
        self._store = store
        self._now = now
        self._keepalive = keepalive
        #: key -> (monotonic time of the last push or removal from L1, whether it was a push
        #: that may announce a new copy), oldest first
        self._heard: OrderedDict[Key, tuple[float, bool]] = OrderedDict()
        #: the store epoch the record belongs to
        self._epoch = store.epoch
        #: the record holds every push and removal since then (None: not complete yet)
        self.since: float | None = None

    def __len__(self) -> int:
        return len(self._heard)

    def heard(self, k: Key, *, gone: bool | None = False) -> None:
        """A push named ``k`` while it had no entry, or its entry left L1 (at this moment).
        ``gone``: True, the push says Redis removed an expired value (keyspace ``expired``);
        False, a write or a removal from L1; None, a push that does not say which (CLIENT
        TRACKING): taken for an expiry when it comes ``ttl`` after the last push of ``k``
        (a little late allowed)."""
        if self.since is None or self._store.epoch != self._epoch:
            return  # nothing complete yet: whatever starts later starts after this
        heard, now = self._heard, self._now()
        if gone is None:
            last = heard.get(k)
            lo, hi = self._expiry
            if last is not None and last[1] and lo <= now - last[0] <= hi:
                gone = True  # most likely the removal of the copy that push announced
        if gone:  # removed: as if never named (no copy now, and any new one will be pushed)
            heard.pop(k, None)
            return
        heard[k] = (now, gone is None)
        heard.move_to_end(k)
        window, keep = self._window, self._keep
        while heard:  # prune from the oldest end (times only grow along it)
            t = next(iter(heard.values()))[0]
            if now - t <= keep and len(heard) <= self._cap:
                break
            heard.popitem(last=False)
            if now - t <= window:  # dropped for the cap: complete only from its time on
                self.since = max(self.since, t)

    def absent(self, k: Key) -> bool:
        """True if Redis is known to hold no copy of ``k`` (which has no L1 entry): the record
        has been complete for longer than a copy lives, and nothing named ``k`` within that
        time (or the last push was its expiry)."""
        now, epoch, keepalive = self._now(), self._store.epoch, self._keepalive()
        if epoch != self._epoch or keepalive is None:
            self.reset(epoch)
            if keepalive is None:
                return False
        if self.since is None:
            self.since = now
            return False
        window = self._window
        if now - self.since <= window:
            return False
        last = self._heard.get(k)
        return last is None or now - last[0] > window

    def reset(self, epoch: int) -> None:
        """Forget everything: the record starts again (incomplete) in store epoch ``epoch``."""
        self._heard.clear()
        self._epoch = epoch
        self.since = None
