"""The L1 store: global bounds, per-tenant caps, LRU order, O(1) demotion."""

from __future__ import annotations

from lowtide.cache.store import ENTRY_OVERHEAD, Entry, L1Store


def entry(size: int = 0, epoch: int = 0) -> Entry:
    return Entry("v", size=size + ENTRY_OVERHEAD, epoch=epoch, fresh_until=9, stale_until=9)


def test_global_entry_bound_evicts_least_recently_used() -> None:
    s = L1Store(max_entries=3, max_bytes=10**9)
    for k in "abc":
        s.put(("t", k), entry())
    s.touch(("t", "a"))  # a hit on "a"
    s.put(("t", "d"), entry())
    assert set(s.map) == {("t", "a"), ("t", "c"), ("t", "d")}
    assert s.evictions == 1


def test_byte_bound_counts_value_sizes() -> None:
    s = L1Store(max_entries=100, max_bytes=3 * (ENTRY_OVERHEAD + 100))
    for i in range(5):
        s.put(("t", str(i)), entry(100))
    assert len(s) == 3
    assert s.bytes == 3 * (ENTRY_OVERHEAD + 100)
    s.put(("t", "4"), entry(10))  # replacing shrinks the total
    assert s.bytes == 2 * (ENTRY_OVERHEAD + 100) + ENTRY_OVERHEAD + 10


def test_a_hot_tenant_evicts_only_its_own_entries() -> None:
    s = L1Store(max_entries=100, max_bytes=10**9, tenant_entries=10)
    for t in ("quiet-1", "quiet-2"):
        for i in range(5):
            s.put((t, str(i)), entry())
    for i in range(1000):
        s.put(("hot", str(i)), entry())
    assert s.tenant_usage("hot")[0] == 10
    assert s.tenant_usage("quiet-1")[0] == 5
    assert s.tenant_usage("quiet-2")[0] == 5
    assert ("hot", "999") in s.map
    assert ("hot", "0") not in s.map


def test_demote_all_is_an_epoch_bump_and_clear_empties() -> None:
    s = L1Store(max_entries=10, max_bytes=10**9)
    s.put(("t", "a"), entry(epoch=s.epoch))
    s.demote_all()
    assert s.map[("t", "a")].epoch != s.epoch  # kept, but no longer fresh
    s.clear()
    assert len(s) == 0
    assert s.bytes == 0
    assert s.tenants == 0


def test_drop_keeps_accounting_exact() -> None:
    s = L1Store(max_entries=10, max_bytes=10**9)
    s.put(("a", "1"), entry(5))
    s.put(("b", "1"), entry(7))
    assert s.drop(("a", "1"))
    assert not s.drop(("a", "1"))
    assert s.bytes == ENTRY_OVERHEAD + 7
    assert s.tenants == 1


def test_a_hit_in_the_newest_quarter_moves_nothing_and_older_hits_still_protect() -> None:
    s = L1Store(max_entries=8, max_bytes=10**6)
    for name in "abcdefgh":
        s.put(("t", name), Entry(name, size=1, epoch=0, fresh_until=1, stale_until=1))
    assert s.touch_gap == 2
    h = s.map[("t", "h")]
    assert s.seq - h.seq < s.touch_gap  # "h" is the newest: a hot path skips the touch
    a = s.map[("t", "a")]
    assert s.seq - a.seq >= s.touch_gap  # "a" is the oldest: a hit moves it
    s.touch(("t", "a"), a)
    s.put(("t", "i"), Entry("i", size=1, epoch=0, fresh_until=1, stale_until=1))
    assert ("t", "a") in s.map  # protected by its hit
    assert ("t", "b") not in s.map  # the least recently used went
