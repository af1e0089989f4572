"""What pushes say about keys with no L1 entry (pure: no server, the clock is a list); the
same rules against real servers are in tests/test_cache_unseen.py."""

from __future__ import annotations

from lowtide.cache.l1 import L1
from lowtide.cache.options import CacheOptions, CacheStats

TTL = 100.0
WINDOW = TTL + 1.0  # ttl plus min(1 s, 2 % of ttl)
# records are kept WINDOW + EXPIRY_LAG (3 s): a late expiry push may still match them
K = ("t", "k")


def make(max_entries: int = 10) -> tuple[L1, list[float], list[float | None]]:
    clock, keepalive = [1000.0], [15.0]
    l1 = L1(
        CacheOptions(ttl=TTL, max_staleness=60.0, max_entries=max_entries, max_tenant_share=1.0),
        CacheStats(),
        now=lambda: clock[0],
        tracking_keepalive=lambda: keepalive[0],
    )
    return l1, clock, keepalive


def started(max_entries: int = 10) -> tuple[L1, list[float], list[float | None]]:
    """An L1 whose record has been complete for longer than a copy lives."""
    l1, clock, keepalive = make(max_entries)
    assert not l1.unseen.absent(K)  # the first question starts the record
    clock[0] += WINDOW + 0.1
    return l1, clock, keepalive


def test_nothing_is_guessed_before_the_record_is_complete_for_a_copys_life() -> None:
    l1, clock, _ = make()
    assert not l1.unseen.absent(K)
    clock[0] += WINDOW
    assert not l1.unseen.absent(K)
    clock[0] += 0.1
    assert l1.unseen.absent(K)


def test_a_push_for_a_key_with_no_entry_holds_the_guess_off_for_a_copys_life() -> None:
    l1, clock, _ = started()
    assert not l1.invalidate(K)
    assert not l1.unseen.absent(K)
    assert l1.unseen.absent(("t", "other"))
    clock[0] += WINDOW
    assert not l1.unseen.absent(K)
    clock[0] += 0.1
    assert l1.unseen.absent(K)


def test_a_keyspace_expiry_forgets_the_key() -> None:
    l1, _, _ = started()
    l1.invalidate(K)
    l1.invalidate(K, expiry=True)
    assert l1.unseen.absent(K)


def test_a_tracking_push_a_ttl_after_the_last_push_is_taken_for_its_expiry() -> None:
    l1, clock, _ = started()
    l1.invalidate(K, expiry=None)  # CLIENT TRACKING: a write, or an expiry (not said)
    clock[0] += TTL + 0.5  # Redis removed that copy a little after its deadline
    l1.invalidate(K, expiry=None)
    assert l1.unseen.absent(K)  # no copy left, and a new one would be pushed
    l1.invalidate(K, expiry=None)  # then another write
    assert not l1.unseen.absent(K)


def test_a_late_expiry_push_is_recognised_after_other_keys_pushes() -> None:
    # Redis removes an expired value seconds late (its active expiry samples keys); meanwhile
    # pushes of other keys must not prune the record the expiry is matched against
    l1, clock, _ = started()
    l1.invalidate(K, expiry=None)
    clock[0] += TTL + 1.5
    l1.invalidate(("t", "other"), expiry=None)
    clock[0] += 1.0
    l1.invalidate(K, expiry=None)  # TTL + 2.5 after the write's push
    assert l1.unseen.absent(K)


def test_a_tracking_push_at_another_time_is_taken_for_a_write() -> None:
    for gap in (0.0, TTL / 2, TTL - 0.2, TTL + 4.1, 2 * TTL):
        l1, clock, _ = started()
        l1.invalidate(K, expiry=None)
        clock[0] += gap
        l1.invalidate(K, expiry=None)
        assert not l1.unseen.absent(K), gap


def test_only_pushes_of_a_copy_count_for_its_expiry() -> None:
    # keyspace mode says which pushes are expiries: a write a ttl after a write is a write
    l1, clock, _ = started()
    l1.invalidate(K)
    clock[0] += TTL
    l1.invalidate(K)
    assert not l1.unseen.absent(K)
    # an entry leaving L1 (maybe this process's own write, never pushed to it) is no push
    l1, clock, _ = started()
    l1.fill(K, "v", 1, TTL, echo=0)
    l1.store.drop(K)
    clock[0] += TTL
    l1.invalidate(K, expiry=None)
    assert not l1.unseen.absent(K)


def test_an_entry_leaving_l1_counts_as_heard_now() -> None:
    l1, clock, _ = started(max_entries=1)
    l1.fill(K, "mine", 1, TTL, echo=0)
    l1.fill(("t", "x"), "x", 1, TTL, echo=0)  # evicts K
    assert K not in l1.store.map
    assert not l1.unseen.absent(K)
    clock[0] += WINDOW + 0.1
    assert l1.unseen.absent(K)
    l1.fill(K, "mine", 1, TTL, echo=0)
    l1.store.drop(K)  # local_delete, a drop after a write...
    assert not l1.unseen.absent(K)


def test_the_cap_moves_the_start_of_the_record() -> None:
    l1, clock, _ = started(max_entries=2)
    l1.invalidate(("t", "a"))
    clock[0] += 5.0
    l1.invalidate(("t", "b"))
    assert l1.unseen.absent(("t", "z"))
    clock[0] += 5.0
    l1.invalidate(("t", "c"))  # "a" dropped: nothing known before its time any more
    assert l1.unseen.since == clock[0] - 10.0
    assert len(l1.unseen) == 2
    assert not l1.unseen.absent(("t", "z"))
    assert not l1.unseen.absent(("t", "a"))
    clock[0] += WINDOW - 10.0 + 0.1
    assert l1.unseen.absent(("t", "z"))


def test_old_records_are_pruned() -> None:
    l1, clock, _ = started()
    l1.invalidate(("t", "a"))
    clock[0] += WINDOW + 3.1  # kept while a late expiry push could still match it
    l1.invalidate(("t", "b"))
    assert len(l1.unseen) == 1


def test_a_demotion_clear_or_unhealthy_listener_restarts_the_record() -> None:
    l1, clock, keepalive = started()
    assert l1.unseen.absent(K)
    l1.store.demote_all()
    assert not l1.unseen.absent(K)
    clock[0] += WINDOW + 0.1
    assert l1.unseen.absent(K)
    l1.store.clear()  # clear_local
    assert not l1.unseen.absent(K)
    clock[0] += WINDOW + 0.1
    assert l1.unseen.absent(K)
    keepalive[0] = None  # pub/sub mode, or the listener not healthy
    assert not l1.unseen.absent(K)
    keepalive[0] = 15.0
    assert not l1.unseen.absent(K)
    clock[0] += WINDOW + 0.1
    assert l1.unseen.absent(K)


def test_short_lived_copies_allow_a_quarter_of_their_life_for_a_late_expiry() -> None:
    ttl = 4.0
    for gap, expiry in ((ttl + 0.9, True), (ttl + 1.2, False)):  # margin 0.08 + lag 1.0
        clock, keepalive = [1000.0], [15.0]
        l1 = L1(
            CacheOptions(ttl=ttl, max_staleness=60.0, max_entries=10, max_tenant_share=1.0),
            CacheStats(),
            now=lambda clock=clock: clock[0],
            tracking_keepalive=lambda keepalive=keepalive: keepalive[0],
        )
        assert not l1.unseen.absent(K)
        clock[0] += ttl + 1
        l1.invalidate(K, expiry=None)
        clock[0] += gap
        l1.invalidate(K, expiry=None)
        assert l1.unseen.absent(K) is expiry, gap
