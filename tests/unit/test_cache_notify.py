"""When a write tells the fleet on the pub/sub backplane (pure rules), and when copies pay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide.cache.adaptive import MIN_READS, WINDOW, CopyPolicy
from lowtide.cache.envelope import copies_allowed, same_payload, unwrap, wrap
from lowtide.cache.freshness import DEMOTE, Fill, after_write
from lowtide.cache.notify import Replaced, notifies, replaced
from lowtide.cache.options import CacheStats
from lowtide.modes import InvalidationMode

PUBSUB = InvalidationMode.PUBSUB


def test_the_envelope_carries_whether_copies_may_be_kept() -> None:
    shared, private = wrap(b"jx", 123), wrap(b"jx", 123, copies=False)
    assert unwrap(shared) == unwrap(private) == (123, b"jx")
    assert copies_allowed(shared)
    assert not copies_allowed(private)
    assert same_payload(private, b"jx")
    assert not same_payload(private, b"jy")


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_anything_that_is_not_a_private_envelope_reads_as_shared(
    raw: bytes, payload: bytes
) -> None:
    # a writer that cannot tell must announce its write
    what = replaced(raw, payload)
    if what is Replaced.PRIVATE:
        assert raw[:1] == b"L"
        assert raw[1] & 0x80
        assert len(raw) >= 9
    if what is Replaced.SAME:
        assert raw.endswith(payload)


@pytest.mark.parametrize(
    ("old", "payload", "what", "set_notifies", "delete_notifies"),
    [
        (None, b"jx", Replaced.ABSENT, True, False),
        (wrap(b"jx", 1), b"jx", Replaced.SAME, False, True),
        (wrap(b"jx", 1, copies=False), b"jx", Replaced.SAME, False, False),
        (wrap(b"jx", 1), b"jy", Replaced.SHARED, True, True),
        (wrap(b"jx", 1, copies=False), b"jy", Replaced.PRIVATE, False, False),
        (b"planted by someone else", b"jy", Replaced.SHARED, True, True),
        (42, b"jy", Replaced.SHARED, True, True),  # a reply of an unexpected shape
    ],
)
def test_what_a_write_replaced_decides_whether_it_is_announced(
    old: object, payload: bytes, what: Replaced, set_notifies: bool, delete_notifies: bool
) -> None:
    assert replaced(old, payload) is what
    assert notifies(what) is set_notifies
    deleted = replaced(old, None)
    assert notifies(deleted, delete=True) is delete_notifies


def test_a_quiet_write_keeps_its_copy_only_if_no_message_came_meanwhile() -> None:
    assert after_write(0, PUBSUB, distributed=True, notified=False) == Fill(echo=0)
    assert after_write(1, PUBSUB, distributed=True, notified=False) is DEMOTE
    # an announced write still expects its own echo
    assert after_write(0, PUBSUB, distributed=True, notified=True) == Fill(echo=1)


def run(policy: CopyPolicy, stats: CacheStats, *, hits: int, would: int, cost: int) -> None:
    """One window of events: ``cost`` costly writes, reads that went to Redis (``would`` of
    them would-be hits), and ``hits`` L1 hits."""
    stats.hits += hits
    events = 0
    for _ in range(cost):
        policy.wrote(costly=True)
        events += 1
    for i in range(WINDOW - events):
        policy.read(would_hit=i < would)


def test_copies_go_off_when_messages_cost_more_than_reads_save_and_come_back() -> None:
    stats = CacheStats()
    policy = CopyPolicy(stats, enabled=True)
    run(policy, stats, hits=10, would=0, cost=100)
    assert not policy.copies
    assert policy.switches == 1
    run(policy, stats, hits=0, would=100, cost=90)  # 100 > 90 but not 1.5 x: stays off
    assert not policy.copies
    run(policy, stats, hits=0, would=200, cost=20)
    assert policy.copies
    assert policy.info()["copies"] == "on"


def test_without_reads_or_when_pinned_the_setting_stays() -> None:
    stats = CacheStats()
    only_writes = CopyPolicy(stats, enabled=True)
    for _ in range(4 * WINDOW):
        only_writes.wrote(costly=True)  # a process that only writes knows nothing of readers
    assert only_writes.copies
    assert only_writes.reads < MIN_READS
    pinned = CopyPolicy(CacheStats(), enabled=False)
    run(pinned, CacheStats(), hits=0, would=0, cost=200)
    assert pinned.copies
