"""The L1 store: global bounds, per-tenant caps, LRU order, O(1) demotion."""

from __future__ import annotations

from lowtide.cache.store import ABSENT, ENTRY_OVERHEAD, LOADED_NONE, Entry, L1Store, was_read


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
    for name in "abcdefgh":  # nothing read yet: every first hit moves its entry (and marks it)
        e = s.map[("t", name)]
        assert not was_read(e)
        assert e.seq <= s.old_seq  # the hot path's test: it calls touch
        s.touch(("t", name), e)
        assert was_read(e)
    h = s.map[("t", "h")]
    assert s.seq - h.seq < s.touch_gap  # "h" is the newest: a hot path skips the touch
    assert not h.seq <= s.old_seq  # the hot path's form of the same test
    a = s.map[("t", "a")]
    assert s.seq - a.seq >= s.touch_gap  # "a" is the oldest: a hit moves it
    assert a.seq <= s.old_seq
    s.touch(("t", "a"), a)
    assert s.old_seq == s.seq - s.touch_gap  # kept with seq by touch and put
    assert not a.seq <= s.old_seq  # just moved: the next hit leaves it where it is
    s.put(("t", "i"), Entry("i", size=1, epoch=0, fresh_until=1, stale_until=1))
    assert ("t", "a") in s.map  # protected by its hit
    assert ("t", "b") not in s.map  # the least recently used went
    assert s.old_seq == s.seq - s.touch_gap
    assert not was_read(s.map[("t", "i")])


def test_an_entry_precomputes_what_a_hit_answers() -> None:
    """``Cache.get``'s hot path returns ``entry.answer``: None for both negative markers (the
    key is absent in Redis, the loader said None), the value itself otherwise (falsy ones too)."""

    def make(value: object) -> Entry:
        return Entry(value, size=1, epoch=0, fresh_until=1, stale_until=1)

    assert make(ABSENT).answer is None
    assert make(LOADED_NONE).answer is None
    value = {"plan": "pro"}
    assert make(value).answer is value
    assert make(0).answer == 0
    assert make("").answer == ""
