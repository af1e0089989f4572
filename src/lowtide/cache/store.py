"""The L1 store: a bounded in-process map of cache entries with per-tenant caps.

Chosen by measurement (``python -m benchmarks.l1_maps``): an ``OrderedDict`` gives LRU
for ~120 ns per hit (a hit moves an entry only when it is outside the newest quarter, see
:meth:`L1Store.touch`) and ~470 ns per insert-with-eviction. A plain dict was 15 ns faster per hit
but popping its oldest key degrades to ~4 us once many keys were deleted from its front;
cachebox (~110 ns) and lru-dict (~155 ns) would add a compiled dependency and still need the
per-tenant bookkeeping below, so they do not earn their place.

Bounds:

* ``max_entries`` and ``max_bytes`` for the whole store (global LRU eviction);
* ``tenant_entries`` and ``tenant_bytes`` per tenant: a tenant at its cap evicts its own
  least recently used entries, so one hot tenant cannot push every other tenant out.

Freshness is decided by the caller with two fields: an entry is *fresh* while its ``epoch``
equals the store's and ``fresh_until`` has not passed. :meth:`demote_all` bumps the epoch in
O(1): every entry becomes stale at once but stays available (until ``stale_until``) for
fail-safe reads when Redis is down.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

__all__ = ["ABSENT", "ENTRY_OVERHEAD", "LOADED_NONE", "UNREAD", "Entry", "L1Store", "was_read"]

#: bytes charged per entry on top of its encoded value (entry object, key tuple, map slots)
ENTRY_OVERHEAD: Final = 256


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: negative entry: L2 holds nothing for this key (``get`` answers None; a loader may run)
ABSENT: Final = _Marker("absent")
#: negative entry: the loader said there is no value (``get_or_load`` answers None)
LOADED_NONE: Final = _Marker("loaded-none")

#: :attr:`Entry.seq` of an entry not read since it was put: at most ``old_seq`` whatever the
#: store did, so the entry's first hit calls :meth:`L1Store.touch`, which gives it a real
#: (positive) one; no cost on the hit path (see :mod:`lowtide.cache.renew`)
UNREAD: Final = -(1 << 62)


def was_read(entry: Entry) -> bool:
    """True if ``entry`` was hit (or touched) since it was put."""
    return entry.seq >= 0


Key = tuple[str | None, Any]


class Entry:
    """One cached value and its deadlines (monotonic seconds)."""

    __slots__ = (
        "absent_at",
        "answer",
        "echo",
        "epoch",
        "fresh_until",
        "gone",
        "ident",
        "idle",
        "l2_until",
        "own_echo",
        "refresh_at",
        "seq",
        "shadow_until",
        "size",
        "stale_until",
        "superseded",
        "value",
    )

    def __init__(
        self,
        value: Any,
        *,
        size: int,
        epoch: int,
        fresh_until: float,
        stale_until: float,
        refresh_at: float = float("inf"),
        echo: int = 0,
    ) -> None:
        self.value = value
        #: what a hit answers: the value, or None for a negative entry (precomputed: the hot
        #: path returns it without testing for the markers)
        self.answer = None if value is ABSENT or value is LOADED_NONE else value
        self.size = size
        self.epoch = epoch
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.refresh_at = refresh_at
        #: invalidation messages still expected for this process's own write of the entry
        self.echo = echo
        #: a push said another writer replaced the value: it may answer only while Redis is
        #: unavailable (fail-safe), never as the "last good value" of a slow read
        self.superseded = False
        #: the next push is most likely this process's own write coming back (tracking)
        self.own_echo = False
        #: a value marked "no copies" (kept for fail-safe only): its envelope expiry, which
        #: tells the same value read again from another, and until when a copy would have been
        #: fresh (see :mod:`lowtide.cache.adaptive`)
        self.ident = 0
        self.shadow_until = 0.0
        #: the store's move count when this entry last moved to the recent end (see touch);
        #: :data:`UNREAD` until its first hit after it was put
        self.seq = 0
        #: when the Redis copy this process last heard of expires (monotonic, an early
        #: estimate; 0: unknown), and whether a push already came after that (the expiry's
        #: own removal): see :meth:`~lowtide.cache.l1.L1.l2_gone`
        self.l2_until = 0.0
        self.gone = False
        #: when a renewal's ``MGET`` that found the expired Redis copy gone was sent (0: never):
        #: the copy is known absent for one look (see :mod:`lowtide.cache.renew`)
        self.absent_at = 0.0
        #: renewals in a row that found this copy unread (see :mod:`lowtide.cache.renew`)
        self.idle = 0


class _Usage:
    __slots__ = ("bytes", "keys")

    def __init__(self) -> None:
        self.bytes = 0
        self.keys: OrderedDict[Key, None] = OrderedDict()


class L1Store:
    """Bounded LRU map ``(tenant, key) -> Entry``; see the module docs."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        tenant_entries: int | None = None,
        tenant_bytes: int | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.tenant_entries = tenant_entries or max_entries
        self.tenant_bytes = tenant_bytes or max_bytes
        self.map: OrderedDict[Key, Entry] = OrderedDict()
        self.epoch = 0
        self.bytes = 0
        self.evictions = 0
        self._usage: dict[str | None, _Usage] = {}
        #: moves to the recent end so far (puts and touches)
        self.seq = 0
        #: an entry moved fewer than this many moves ago is left where it is by a touch
        self.touch_gap = max(1, min(self.max_entries, self.tenant_entries) // 4)
        #: ``seq - touch_gap``, kept with ``seq``: a hit moves an entry whose ``seq`` is at most
        #: this (one comparison on the hot path instead of a subtraction and a comparison)
        self.old_seq = -self.touch_gap
        #: called with each key removed (evicted or dropped; not by :meth:`clear`)
        self.on_remove: Callable[[Key], None] | None = None

    def __len__(self) -> int:
        return len(self.map)

    def touch(self, key: Key, entry: Entry | None = None) -> None:
        """Mark ``key`` (present, holding ``entry``: looked up when not given) as just used,
        globally and within its tenant.

        Callers on a hot path check ``entry.seq <= old_seq`` (the same as
        ``seq - entry.seq >= touch_gap``) first and skip the call otherwise: an entry moved
        fewer than ``touch_gap`` moves ago has fewer than that many entries after it in either
        order (only moves put entries after it), i.e. it is in the newest quarter of the store
        and of its tenant, so moving it again changes no eviction until a quarter of the store
        was replaced. Near-LRU for a third of the cost of a hit.
        """
        if entry is None:
            entry = self.map[key]
        self.seq += 1
        self.old_seq += 1
        entry.seq = self.seq
        self.map.move_to_end(key)
        self._usage[key[0]].keys.move_to_end(key)

    def put(self, key: Key, entry: Entry) -> None:
        """Insert or replace ``key``, then evict until every bound holds again."""
        old = self.map.pop(key, None)
        tenant = key[0]
        usage = self._usage.get(tenant)
        if usage is None:
            usage = self._usage[tenant] = _Usage()
        if old is not None:
            self.bytes -= old.size
            usage.bytes -= old.size
            usage.keys.move_to_end(key)
        else:
            usage.keys[key] = None
        self.map[key] = entry
        self.seq += 1
        self.old_seq += 1
        entry.seq = UNREAD  # its first hit moves it (touch) and so marks it read
        self.bytes += entry.size
        usage.bytes += entry.size
        while len(usage.keys) > self.tenant_entries or usage.bytes > self.tenant_bytes:
            victim = next(iter(usage.keys))
            if victim == key:
                break  # a single entry above the tenant's byte cap: keep the newest
            self._remove(victim)
            self.evictions += 1
        while len(self.map) > self.max_entries or self.bytes > self.max_bytes:
            victim = next(iter(self.map))
            if victim == key:
                break
            self._remove(victim)
            self.evictions += 1

    def drop(self, key: Key) -> bool:
        """Remove ``key``; True if it was there."""
        if key in self.map:
            self._remove(key)
            return True
        return False

    def drop_tenant(self, tenant: str | None) -> int:
        """Remove every entry of ``tenant``; returns how many there were."""
        usage = self._usage.get(tenant)
        if usage is None:
            return 0
        keys = list(usage.keys)
        for key in keys:
            self._remove(key)
        return len(keys)

    def _remove(self, key: Key) -> None:
        entry = self.map.pop(key)
        self.bytes -= entry.size
        usage = self._usage[key[0]]
        usage.bytes -= entry.size
        del usage.keys[key]
        if not usage.keys:
            del self._usage[key[0]]
        if self.on_remove is not None:
            self.on_remove(key)

    def demote_all(self) -> None:
        """Make every entry stale at once (kept for fail-safe reads until ``stale_until``)."""
        self.epoch += 1

    def clear(self) -> None:
        """Drop everything."""
        self.map.clear()
        self._usage.clear()
        self.bytes = 0
        self.epoch += 1

    def tenant_usage(self, tenant: str | None) -> tuple[int, int]:
        """``(entries, bytes)`` held for ``tenant``."""
        usage = self._usage.get(tenant)
        return (0, 0) if usage is None else (len(usage.keys), usage.bytes)

    @property
    def tenants(self) -> int:
        """How many tenants hold at least one entry."""
        return len(self._usage)
