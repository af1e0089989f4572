"""Which copies a renewal look reads again (``lowtide.cache.renew.due``): pure, no server."""

from __future__ import annotations

from lowtide.cache.renew import IDLE_RENEWALS, MAX_BYTES, MAX_KEYS, batches, due, expiring
from lowtide.cache.store import ABSENT, LOADED_NONE, Entry, L1Store

NOW = 100.0
HORIZON = 101.0


def put(store: L1Store, name: str, *, read: bool = True, **fields: object) -> Entry:
    e = Entry(
        fields.pop("value", name),
        size=1,
        epoch=store.epoch,
        fresh_until=float(fields.pop("fresh_until", 100.5)),  # type: ignore[arg-type]
        stale_until=200.0,
    )
    e.l2_until = float(fields.pop("l2_until", 160.0))  # type: ignore[arg-type]
    for name_, value in fields.items():
        setattr(e, name_, value)
    store.put(("t", name), e)
    if read:
        store.touch(("t", name), e)
    return e


def test_only_copies_still_read_that_lapse_soon_before_their_redis_value() -> None:
    store = L1Store(max_entries=100, max_bytes=10**6)
    put(store, "due")
    put(store, "unread", read=False)  # fetched or renewed, not read since: renewed a while
    put(store, "idle", read=False, idle=IDLE_RENEWALS)  # renewed unread too often: lapses
    put(store, "read-after-idle", idle=IDLE_RENEWALS)  # read again: renewed
    put(store, "later", fresh_until=101.5)  # lapses after the horizon: the next look
    put(store, "lapsed", fresh_until=99.0)  # already lapsed: the next read fetches it
    put(store, "with-redis", l2_until=100.5)  # its Redis value ends with it: nothing to renew
    put(store, "echo", echo=1)  # this process's own write still to come back
    put(store, "superseded", superseded=True)
    put(store, "absent", value=ABSENT)
    put(store, "loaded-none", value=LOADED_NONE)
    assert due(store, NOW, HORIZON) == [("t", "due"), ("t", "unread"), ("t", "read-after-idle")]


def test_copies_whose_redis_value_ends_before_the_horizon_ride_along() -> None:
    store = L1Store(max_entries=100, max_bytes=10**6)
    put(store, "ending", l2_until=100.5)  # its Redis value ends before the next look
    put(store, "expired", fresh_until=90.0, l2_until=95.0, read=False)  # ended: refilled?
    put(store, "gone", fresh_until=0.0, l2_until=95.0, gone=True, idle=2)  # found gone: again
    put(store, "gone-idle", fresh_until=0.0, l2_until=95.0, gone=True, idle=IDLE_RENEWALS)
    put(store, "alive")  # its Redis value outlives the horizon: renewal's, not this
    put(store, "taken", l2_until=100.8)  # already in the look's MGET
    put(store, "superseded", l2_until=100.5, superseded=True)  # another writer's: a read asks
    put(store, "echo", l2_until=100.5, echo=1)
    put(store, "absent", l2_until=100.5, value=ABSENT)
    put(store, "unknown", l2_until=0.0)  # no known Redis life
    assert expiring(store, NOW, HORIZON, [("t", "taken")]) == [
        ("t", "ending"),
        ("t", "expired"),
        ("t", "gone"),
    ]


def test_a_flush_since_the_fill_excludes_every_copy() -> None:
    store = L1Store(max_entries=100, max_bytes=10**6)
    put(store, "a")
    store.demote_all()
    assert due(store, NOW, HORIZON) == []
    put(store, "b")
    assert due(store, NOW, HORIZON) == [("t", "b")]


def test_batches_hold_at_most_max_keys_keys_and_max_bytes_of_copies() -> None:
    store = L1Store(max_entries=5_000, max_bytes=10**9)
    keys = []
    for i in range(2_500):
        e = Entry(i, size=100, epoch=0, fresh_until=1, stale_until=1)
        store.put(("t", str(i)), e)
        keys.append(("t", str(i)))
    assert [len(b) for b in batches(store, keys)] == [MAX_KEYS, MAX_KEYS, 500]
    big = MAX_BYTES // 3
    for i in range(4):
        store.put(("t", f"big{i}"), Entry(i, size=big, epoch=0, fresh_until=1, stale_until=1))
    store.put(("t", "huge"), Entry(0, size=2 * MAX_BYTES, epoch=0, fresh_until=1, stale_until=1))
    cut = batches(store, [("t", f"big{i}") for i in range(4)] + [("t", "huge"), ("t", "0")])
    assert [len(b) for b in cut] == [3, 1, 1, 1]  # the huge copy goes alone
    assert [k for b in cut for k in b] == [("t", f"big{i}") for i in range(4)] + [
        ("t", "huge"),
        ("t", "0"),
    ]
