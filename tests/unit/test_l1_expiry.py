"""What an L1 entry knows about its Redis copy's expiry (pure: no server, the clock is a list)."""

from __future__ import annotations

from lowtide.cache.l1 import L1
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import Entry

TTL = 100.0
K = ("t", "k")


def make(tracking: bool = True) -> tuple[L1, list[float]]:
    clock = [1000.0]
    l1 = L1(
        CacheOptions(ttl=TTL, max_staleness=60.0),
        CacheStats(),
        now=lambda: clock[0],
        tracking_keepalive=lambda: 15.0 if tracking else None,
    )
    return l1, clock


def entry(l1: L1) -> Entry:
    e = l1.store.map.get(K)
    assert e is not None
    return e


def test_the_copy_is_gone_only_after_its_expiry_and_a_margin() -> None:
    l1, clock = make()
    l1.fill(K, "v", 1, lifetime=40.0, echo=0)  # read from Redis with 40 s left
    clock[0] += 39.0
    assert not l1.l2_gone(entry(l1))
    clock[0] += 1.0  # at the estimate: a margin for clocks first
    assert not l1.l2_gone(entry(l1))
    clock[0] += 1.0
    assert l1.l2_gone(entry(l1))


def test_a_push_before_the_expiry_is_a_new_copy_and_after_it_the_removal() -> None:
    l1, clock = make()
    l1.fill(K, "v", 1, lifetime=40.0, echo=0)
    clock[0] += 10.0
    l1.invalidate(K)  # another process wrote it: its copy lives about TTL from now
    clock[0] += 45.0  # past the first copy's expiry, not the new one's
    assert not l1.l2_gone(entry(l1))
    clock[0] += TTL - 45.0  # the new copy's expiry
    l1.invalidate(K)  # its removal
    assert l1.l2_gone(entry(l1))  # no margin needed: the removal was pushed
    l1.invalidate(K)  # a second push after the expiry: someone stored a new copy
    assert not l1.l2_gone(entry(l1))


def test_nothing_is_known_without_tracking_after_a_flush_or_for_negatives() -> None:
    l1, clock = make(tracking=False)
    l1.fill(K, "v", 1, lifetime=1.0, echo=0)
    clock[0] += 10.0
    assert not l1.l2_gone(entry(l1))  # pub/sub or ttl mode: new copies are not all pushed
    l1, clock = make()
    l1.fill(K, "v", 1, lifetime=1.0, echo=0)
    l1.store.demote_all()  # the listener was lost: pushes may have been missed
    clock[0] += 10.0
    assert not l1.l2_gone(entry(l1))
    l1.fill(K, None, 0, lifetime=1.0, echo=0, stale_ok=False)  # a negative entry: no copy
    clock[0] += 10.0
    assert not l1.l2_gone(entry(l1))
