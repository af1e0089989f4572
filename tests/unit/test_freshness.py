"""Freshness rules of the tiered cache, property-tested with no server: fill deadlines never
outlive the L2 value or the staleness bound, demoted copies are never fresh, fail-safe never
serves a negative entry, and the echo verdict never keeps a copy an invalidation may have
overtaken."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.cache.freshness import (
    DEMOTE,
    DROP,
    Demote,
    Drop,
    Fill,
    after_write,
    answer,
    fill_deadlines,
    fresh_cap,
    has_stale,
    is_fresh,
    may_fill,
    negative_lifetime,
    refresh_reloads,
    remaining_life,
    stale_value,
    throttled_until,
)
from lowtide.cache.l1 import L1
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.store import ABSENT, LOADED_NONE, Entry
from lowtide.modes import InvalidationMode

durations = st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False)
instants = st.floats(0, 1e9, allow_nan=False, allow_infinity=False)
keepalives = st.one_of(st.none(), st.floats(0.01, 1000, allow_nan=False))
modes = st.sampled_from(list(InvalidationMode))
seens = st.one_of(st.none(), st.integers(0, 5))


@st.composite
def options(draw: st.DrawFn) -> CacheOptions:
    return CacheOptions(
        ttl=draw(durations),
        max_staleness=draw(st.floats(0, 1e6, allow_nan=False)),
        negative_ttl=draw(st.floats(0, 1e4, allow_nan=False)),
        eager_refresh=draw(st.one_of(st.none(), st.floats(0.01, 0.99))),
        fail_safe=draw(st.booleans()),
        fail_safe_max=draw(st.floats(0, 1e5, allow_nan=False)),
        fail_safe_throttle=draw(st.floats(0, 100, allow_nan=False)),
    )


def entry(value: object, *, fresh_until: float, stale_until: float, epoch: int = 0) -> Entry:
    return Entry(value, size=0, epoch=epoch, fresh_until=fresh_until, stale_until=stale_until)


# -- fill deadlines ---------------------------------------------------------------------------
@settings(max_examples=300)
@given(o=options(), now=instants, lifetime=durations, keepalive=keepalives)
def test_a_copy_is_never_fresh_past_the_l2_value_nor_past_max_staleness(
    o: CacheOptions, now: float, lifetime: float, keepalive: float | None
) -> None:
    cap = fresh_cap(o, tracking_keepalive=keepalive)
    d = fill_deadlines(now, lifetime, cap, o)
    assert now <= d.fresh_until <= now + lifetime  # never past the L2 value's own expiry
    assert d.fresh_until <= now + o.ttl
    tracking_rule = keepalive is not None and 3 * keepalive <= o.max_staleness
    if not tracking_rule:
        assert d.fresh_until <= now + o.max_staleness
    else:
        # CLIENT TRACKING verified and the keepalive detects a lost push in time: no cap
        assert cap == o.ttl


@given(o=options(), keepalive=keepalives)
def test_the_cap_is_ttl_only_under_verified_tracking_with_a_fast_enough_keepalive(
    o: CacheOptions, keepalive: float | None
) -> None:
    cap = fresh_cap(o, tracking_keepalive=keepalive)
    assert cap in (o.ttl, min(o.ttl, o.max_staleness))
    assert fresh_cap(o, tracking_keepalive=None) == min(o.ttl, o.max_staleness)
    if keepalive is not None and 3 * keepalive > o.max_staleness:
        assert cap == min(o.ttl, o.max_staleness)


@given(
    o=options(),
    now=instants,
    lifetime=durations,
    keepalive=keepalives,
    later=st.floats(0, 1e7, allow_nan=False),
    stale_ok=st.booleans(),
)
def test_a_demoted_entry_is_never_fresh(
    o: CacheOptions,
    now: float,
    lifetime: float,
    keepalive: float | None,
    later: float,
    stale_ok: bool,
) -> None:
    cap = fresh_cap(o, tracking_keepalive=keepalive)
    d = fill_deadlines(now, lifetime, cap, o, stale_ok=stale_ok, demoted=True)
    e = entry("v", fresh_until=d.fresh_until, stale_until=d.stale_until)
    assert not is_fresh(e, 0, now)
    assert not is_fresh(e, 0, now + later)
    # ...but it serves fail-safe reads exactly as long as a fresh fill would
    assert d.stale_until == fill_deadlines(now, lifetime, cap, o, stale_ok=stale_ok).stale_until


@given(o=options(), now=instants, lifetime=durations, keepalive=keepalives, stale_ok=st.booleans())
def test_fail_safe_life_follows_fresh_life(
    o: CacheOptions, now: float, lifetime: float, keepalive: float | None, stale_ok: bool
) -> None:
    cap = fresh_cap(o, tracking_keepalive=keepalive)
    d = fill_deadlines(now, lifetime, cap, o, stale_ok=stale_ok)
    assert d.stale_until >= d.fresh_until
    if not (o.fail_safe and stale_ok):
        assert d.stale_until == d.fresh_until  # negative entries and fail_safe=False: no grace
    else:
        assert d.stale_until == now + min(lifetime, cap) + o.fail_safe_max


@given(o=options(), now=instants, lifetime=durations, keepalive=keepalives)
def test_an_eager_refresh_falls_due_inside_the_fresh_life(
    o: CacheOptions, now: float, lifetime: float, keepalive: float | None
) -> None:
    cap = fresh_cap(o, tracking_keepalive=keepalive)
    d = fill_deadlines(now, lifetime, cap, o)
    if o.eager_refresh is None or min(lifetime, cap) == 0:
        assert d.refresh_at == math.inf
    else:
        assert now <= d.refresh_at <= d.fresh_until


@given(o=options())
def test_negative_entries_live_no_longer_than_a_capped_copy(o: CacheOptions) -> None:
    assert negative_lifetime(o) == min(o.negative_ttl, o.ttl, o.max_staleness)


@given(
    fresh_until=instants,
    now=instants,
    epoch=st.integers(0, 3),
    store_epoch=st.integers(0, 3),
)
def test_fresh_means_current_epoch_and_not_expired(
    fresh_until: float, now: float, epoch: int, store_epoch: int
) -> None:
    e = entry("v", fresh_until=fresh_until, stale_until=fresh_until, epoch=epoch)
    assert is_fresh(e, store_epoch, now) == (epoch == store_epoch and fresh_until > now)


@given(
    expires_ms=st.integers(0, 2**40),
    wall=st.floats(0, 2e9, allow_nan=False),
    ttl=durations,
)
def test_remaining_life_comes_from_the_envelope(expires_ms: int, wall: float, ttl: float) -> None:
    remaining = remaining_life(expires_ms, wall, ttl)
    assert remaining == (expires_ms / 1000 - wall if expires_ms else ttl)


@given(remaining=durations, lifetime=durations, eager=st.one_of(st.none(), st.floats(0.01, 0.99)))
def test_a_refresh_reloads_only_a_value_about_to_expire_in_l2(
    remaining: float, lifetime: float, eager: float | None
) -> None:
    reloads = refresh_reloads(remaining, lifetime, eager_refresh=eager)
    if eager is None:
        assert not reloads
    elif remaining >= lifetime:
        assert not reloads  # a whole lifetime left: the L2 value is good
    else:
        assert reloads == (remaining < lifetime * (1 - eager))


@given(seen=seens, distributed=st.booleans())
def test_a_read_fills_only_when_nothing_overtook_it(seen: int | None, distributed: bool) -> None:
    assert may_fill(seen, distributed) == (seen == 0 and distributed)


# -- fail-safe --------------------------------------------------------------------------------
@given(
    value=st.sampled_from(["v", 0, ABSENT, LOADED_NONE]),
    stale_until=instants,
    now=instants,
    fail_safe=st.booleans(),
)
def test_fail_safe_serves_only_a_last_good_value_within_its_life(
    value: object, stale_until: float, now: float, fail_safe: bool
) -> None:
    e = entry(value, fresh_until=0, stale_until=stale_until)
    ok = has_stale(e, now, fail_safe=fail_safe)
    assert ok == (
        fail_safe and stale_until > now and value is not ABSENT and value is not LOADED_NONE
    )
    assert stale_value(e, now, fail_safe=fail_safe) == (value if ok else None)
    assert not has_stale(None, now, fail_safe=fail_safe)
    assert stale_value(None, now, fail_safe=fail_safe) is None


@given(stale_until=instants, now=instants, throttle=st.floats(0, 100, allow_nan=False))
def test_a_throttled_value_is_never_fresh_past_its_fail_safe_life(
    stale_until: float, now: float, throttle: float
) -> None:
    e = entry("v", fresh_until=0, stale_until=stale_until)
    until = throttled_until(e, now, throttle)
    assert until <= stale_until
    assert until <= now + throttle


def test_negative_entries_answer_none() -> None:
    assert answer(ABSENT) is None
    assert answer(LOADED_NONE) is None
    assert answer(0) == 0
    assert answer("v") == "v"


# -- the echo verdict -------------------------------------------------------------------------
@given(seen=seens, mode=modes, distributed=st.booleans())
def test_after_write_never_keeps_a_fresh_copy_an_invalidation_may_have_overtaken(
    seen: int | None, mode: InvalidationMode, distributed: bool
) -> None:
    verdict = after_write(seen, mode, distributed=distributed)
    one_per_write = (InvalidationMode.PUBSUB, InvalidationMode.KEYSPACE)
    if seen is None or not distributed:
        assert verdict == DROP  # a flush, an untrusted listener, or Redis gone: keep nothing
    elif mode in one_per_write:
        # one message per write: swallow ours if it is still to come; after two, another
        # writer's may have landed last with nothing left to tell: not fresh
        assert verdict == (Fill(echo=1) if seen == 0 else Fill(echo=0) if seen == 1 else DEMOTE)
    else:
        # tracking merges messages: never count echoes, never keep past a message
        assert verdict == (Fill(echo=0, own_echo=True) if seen == 0 else DEMOTE)
    if mode is InvalidationMode.KEYSPACE:
        # the server publishes every write, whether or not the writer would have published
        assert after_write(seen, mode, distributed=distributed, notified=False) == verdict
    if mode not in one_per_write:
        assert not (isinstance(verdict, Fill) and verdict.echo)
        if seen:
            assert not isinstance(verdict, Fill)


@given(seen=seens, distributed=st.booleans())
def test_with_no_race_guard_a_write_is_kept_as_written(seen: int | None, distributed: bool) -> None:
    assert after_write(seen, None, distributed=distributed) == Fill(echo=0)


def test_verdicts_are_plain_data() -> None:
    assert isinstance(DEMOTE, Demote)
    assert isinstance(DROP, Drop)
    assert Fill() == Fill(echo=0) != Fill(echo=1)


# -- the echo protocol, end to end on L1 (no server) ------------------------------------------
def l1(now: float = 100.0) -> L1:
    o = CacheOptions(ttl=60, max_staleness=30)
    return L1(o, CacheStats(), now=lambda: now, tracking_keepalive=lambda: None)


@given(later_writes=st.integers(0, 3), before_reply=st.integers(0, 1))
def test_pubsub_a_writer_keeps_its_copy_exactly_while_no_later_write_landed(
    later_writes: int, before_reply: int
) -> None:
    # pub/sub: one message per write, in the order the writes ran; ours comes first. The
    # reply to our write arrives after `before_reply` of them (at most our own).
    store = l1()
    k = ("t", "k")
    messages = 1 + later_writes
    seen = min(before_reply, messages)
    store.keep(k, "ours", 1, 60, after_write(seen, InvalidationMode.PUBSUB, distributed=True))
    for _ in range(messages - seen):
        store.invalidate(k)
    e = store.store.map[k]
    assert is_fresh(e, store.store.epoch, 100.0) == (later_writes == 0)


def test_pubsub_a_reply_overtaken_by_two_messages_keeps_no_overwritten_copy() -> None:
    store = l1()
    k = ("t", "k")
    # our SET+PUBLISH, then another writer's SET+PUBLISH; both messages reach the listener
    # before our reply is read
    store.keep(k, "ours", 1, 60, after_write(2, InvalidationMode.PUBSUB, distributed=True))
    e = store.store.map[k]
    assert not is_fresh(e, store.store.epoch, 100.0)  # Redis holds the other writer's value


@given(messages=st.integers(1, 4), before_reply=st.integers(0, 4))
def test_tracking_a_writer_never_keeps_its_copy_fresh_past_the_echo(
    messages: int, before_reply: int
) -> None:
    # CLIENT TRACKING: our write and any others produce 1..n (possibly merged) messages
    store = l1()
    k = ("t", "k")
    seen = min(before_reply, messages)
    store.keep(k, "ours", 1, 60, after_write(seen, InvalidationMode.TRACKING, distributed=True))
    for _ in range(messages - seen):
        store.invalidate(k)
    e = store.store.map.get(k)
    assert e is None or not is_fresh(e, store.store.epoch, 100.0)
    if e is not None:
        assert e.value == "ours"  # still there for fail-safe reads


@given(later_writes=st.integers(0, 3), before_reply=st.integers(0, 3))
def test_tracking_noloop_a_writer_keeps_its_copy_exactly_while_no_later_write_landed(
    later_writes: int, before_reply: int
) -> None:
    # the NOLOOP writer: our own write is never pushed back; each later write by anyone else
    # (one merged into our server cycle after ours included) is, in 1..n messages
    store = l1()
    k = ("t", "k")
    seen = min(before_reply, later_writes)
    verdict = after_write(seen, InvalidationMode.TRACKING, distributed=True, echo=False)
    assert verdict == (Fill(echo=0) if seen == 0 else DEMOTE)
    store.keep(k, "ours", 1, 60, verdict)
    for _ in range(later_writes - seen):
        store.invalidate(k)
    e = store.store.map[k]
    assert is_fresh(e, store.store.epoch, 100.0) == (later_writes == 0)
    assert e.value == "ours"  # kept for fail-safe reads either way


@given(later_writes=st.integers(0, 3), expired_first=st.booleans())
def test_keyspace_an_expiry_before_the_echo_is_never_taken_for_it(
    later_writes: int, expired_first: bool
) -> None:
    # keyspace notifications: a write on a key whose life is over but which Redis has not
    # removed yet publishes `expired` (the old value's removal) before its own `set`; then
    # each later write by anyone publishes one more message
    store = l1()
    k = ("t", "k")
    store.keep(k, "ours", 1, 60, after_write(0, InvalidationMode.KEYSPACE, distributed=True))
    if expired_first:
        assert store.invalidate(k, expiry=True)  # not our echo, and nothing about our value
        assert is_fresh(store.store.map[k], store.store.epoch, 100.0)
    assert store.invalidate(k)  # our own `set`, swallowed
    for _ in range(later_writes):
        store.invalidate(k)
    e = store.store.map[k]
    assert is_fresh(e, store.store.epoch, 100.0) == (later_writes == 0)
    # once the echo came, an expiry is an invalidation like any other (our value's end)
    store.invalidate(k, expiry=True)
    assert not is_fresh(store.store.map[k], store.store.epoch, 100.0)
