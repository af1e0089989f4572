"""Fuzzing every decoder of values read from Redis or pushed by it (issue 19): whatever the bytes,
a decoder answers a checked value or "not one" (None / a typed error); it never raises anything
else, never returns a value outside its bounds, and its work is bounded."""

from __future__ import annotations

import contextlib
import json
import logging
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide import InvalidKeyError, SerializationError, ValueTooLarge
from lowtide._untrusted import CLOCK_SLACK, Warnings, number, printable, shown, whole
from lowtide.breaker.state import MAX_GEN, MAX_OPENS, FleetState, parse_state
from lowtide.cache.envelope import ENVELOPE_BYTES, unwrap
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.values import MAX_REFUSED, Values
from lowtide.codec import JsonCodec
from lowtide.control import MAX_REASON, MAX_SWITCH_BYTES, parse_switch
from lowtide.fleet import MAX_FLEET_SIZE, heartbeat_count
from lowtide.fleetview import parse_snapshot
from lowtide.keys import MAX_TENANT_LENGTH, check_tenant_id
from lowtide.limiter.agreement import LimitConfig
from lowtide.limiter.state import BadState, check_bucket_reply, check_window_reply
from lowtide.redis.tracking import (
    MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_KEYS,
    MessageStats,
    message_keys,
    publish_batches,
)
from lowtide.tenants import TenantIdCodec

FUZZ = settings(max_examples=200, deadline=None)
PREFIXES = (b"lt:c:", b"lt:t:", b"lt:b:", b"lt:x:")

#: anything a JSON decoder (or a confused writer) could hand over
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
key_bytes = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda p, rest: p + rest, st.sampled_from(PREFIXES), st.binary(max_size=40)),
)


# -- the pushed-message reader -----------------------------------------------------------------
def _check_keys(keys: list[str] | None) -> None:
    if keys is None:
        return
    for k in keys:
        raw = k.encode("utf-8", "surrogateescape")
        assert raw.startswith(PREFIXES)
        assert 0 < len(raw) <= MAX_KEY_BYTES


@FUZZ
@given(st.lists(key_bytes, max_size=20), st.booleans())
def test_message_keys_keeps_only_lowtide_keys(parts: list[bytes], split: bool) -> None:
    stats = MessageStats()
    payload = b"\n".join(parts)
    keys = message_keys(payload, PREFIXES, stats, split=split)
    _check_keys(keys)
    assert keys is not None
    if split:
        wanted = [p for p in payload.split(b"\n") if p.startswith(PREFIXES)]
        assert [k.encode("utf-8", "surrogateescape") for k in keys] == wanted
        assert stats.skipped_keys == len(payload.split(b"\n")) - len(wanted)
    assert stats.malformed == (1 if stats.skipped_keys else 0)


@FUZZ
@given(json_like | st.lists(key_bytes | json_like, max_size=10), st.booleans())
def test_message_keys_of_any_shape_never_raises(payload: object, split: bool) -> None:
    stats = MessageStats()
    _check_keys(message_keys(payload, PREFIXES, stats, split=split))


def test_message_keys_bounds_are_flushes_counted() -> None:
    stats = MessageStats()
    assert message_keys(b"\n" * (8 << 20), PREFIXES, stats, split=True) is None
    assert message_keys(b"lt:c:a\n" * MAX_MESSAGE_KEYS, PREFIXES, stats, split=True) is None
    assert message_keys([b"lt:c:a"] * (MAX_MESSAGE_KEYS + 1), PREFIXES, stats, split=False) is None
    big = [b"lt:c:" + b"x" * 70_000] * 16
    assert message_keys(big, PREFIXES, stats, split=False) is None
    assert stats.oversized == 4
    # just within the bounds: read key by key
    ok = message_keys(b"\n".join([b"lt:c:a"] * MAX_MESSAGE_KEYS), PREFIXES, stats, split=True)
    assert ok is not None
    assert len(ok) == MAX_MESSAGE_KEYS
    assert stats.oversized == 4
    # one key too long to be lowtide's: skipped, not a flush
    assert message_keys(b"lt:c:" + b"x" * MAX_KEY_BYTES, PREFIXES, stats, split=True) == []
    assert stats.skipped_keys == 1


@FUZZ
@given(
    st.lists(
        st.text(min_size=1, max_size=300).map(lambda t: "lt:c:" + t.replace("\n", "_")),
        max_size=50,
    ),
    st.integers(min_value=1, max_value=4),
)
def test_publish_batches_are_always_read_key_by_key(keys: list[str], copies: int) -> None:
    keys = keys * copies
    stats = MessageStats()
    read: list[str] = []
    for batch in publish_batches(keys):
        got = message_keys(batch.encode("utf-8", "surrogateescape"), PREFIXES, stats, split=True)
        assert got is not None
        read += got
    assert read == keys
    assert stats.oversized == 0


def test_publish_batches_split_at_the_bounds() -> None:
    many = [f"lt:c:n:t:k{i}" for i in range(25_000)]
    batches = publish_batches(many)
    assert len(batches) == 3
    assert all(b.count("\n") < MAX_MESSAGE_KEYS for b in batches)
    long = ["lt:c:n:t:" + "x" * 70_000] * 40
    batches = publish_batches(long)
    assert all(len(b.encode()) <= MAX_MESSAGE_BYTES for b in batches)
    assert sum(b.count("\n") + 1 for b in batches) == 40


# -- the shared helpers ------------------------------------------------------------------------
@FUZZ
@given(json_like)
def test_untrusted_number_checks(value: object) -> None:
    f = number(value, lo=0, hi=1e12)
    if f is not None:
        assert isinstance(f, float)
        assert math.isfinite(f)
        assert 0 <= f <= 1e12
        assert not isinstance(value, bool)
    i = whole(value, lo=0, hi=10_000)
    if i is not None:
        assert type(i) is int
        assert 0 <= i <= 10_000


def test_untrusted_number_edge_cases() -> None:
    assert number(True) is None
    assert number(float("nan")) is None
    assert number(float("inf")) is None
    assert number(10**400) is None
    assert number("1") is None
    assert number(5, hi=4) is None
    assert number(4) == 4.0
    assert whole(True, lo=0, hi=1) is None
    assert whole(1.0, lo=0, hi=1) is None


@FUZZ
@given(json_like | st.text())
def test_shown_and_printable_make_one_bounded_line(value: object) -> None:
    text = shown(value)
    assert len(text) <= 100
    assert "\n" not in text
    assert "\r" not in text
    p = printable(value, limit=50)
    if p is not None:
        assert len(p) <= 50
        assert p.isprintable()


def test_shown_is_cheap_for_huge_values() -> None:
    assert len(shown("x\n" * 10_000_000)) <= 100
    assert len(shown(b"\n" * 10_000_000)) <= 100
    assert len(shown(list(range(1_000_000)))) <= 100


def test_warnings_are_rate_limited_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = logging.getLogger("lowtide.test.untrusted")
    warnings = Warnings(log, 60.0, now=lambda: now[0])
    with caplog.at_level(logging.WARNING, "lowtide.test.untrusted"):
        assert warnings.warn("a", "first %s", 1)
        assert not warnings.warn("a", "again %s", 2)
        assert not warnings.warn("a", "again %s", 3)
        assert warnings.warn("b", "other kind")
        now[0] = 61.0
        assert warnings.warn("a", "later %s", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "first 1",
        "other kind",
        "later 4 (2 more like this since the last warning)",
    ]


# -- cache values: the envelope, the size limit on reads, the codecs --------------------------
def _values(limit: int) -> Values:
    options = CacheOptions(ttl=60.0, max_staleness=10.0, max_value_bytes=limit)
    return Values(
        JsonCodec(), options, 1 << 20, CacheStats(), what="cache 'x'", now=lambda: 0.0, epoch=int
    )


@FUZZ
@given(st.binary(max_size=200))
def test_envelope_unwrap_of_any_bytes(raw: bytes) -> None:
    try:
        expires_ms, payload = unwrap(raw)
    except SerializationError:
        return
    assert 0 <= expires_ms < 2**64
    assert raw.endswith(payload)


@FUZZ
@given(st.binary(max_size=120), st.integers(min_value=1, max_value=100))
def test_values_refuse_what_is_over_the_limit_before_decoding(raw: bytes, limit: int) -> None:
    values = _values(limit)
    if len(raw) - ENVELOPE_BYTES > limit:
        with pytest.raises(ValueTooLarge) as info:
            values.unwrap(raw)
        assert info.value.size == len(raw) - ENVELOPE_BYTES
        assert values._stats.oversized == 1
        return
    try:
        _, payload = values.unwrap(raw)
    except SerializationError:
        return
    assert len(payload) <= limit
    with contextlib.suppress(SerializationError):
        values.decode(payload)


def test_values_remember_a_refused_key_until_it_changes() -> None:
    now = [0.0]
    epoch = [0]
    stats = CacheStats()
    options = CacheOptions(ttl=60.0, max_staleness=10.0, max_value_bytes=10)
    values = Values(
        JsonCodec(), options, 1 << 20, stats, what="c", now=lambda: now[0], epoch=lambda: epoch[0]
    )
    k = ("t", "k")
    values.refuse(k, ValueTooLarge("big", size=11, limit=10), remember=True)
    first, second = values.refused(k), values.refused(k)
    assert isinstance(first, ValueTooLarge)
    assert first is not second  # a fresh error each time (no traceback piling up)
    assert stats.unreadable_hits == 2
    values.forget(k)
    assert values.refused(k) is None
    values.refuse(k, SerializationError("x"), remember=True)
    epoch[0] += 1  # a flush
    assert values.refused(k) is None
    values.refuse(k, SerializationError("x"), remember=True)
    now[0] = 10.0  # min(ttl, max_staleness) later
    assert values.refused(k) is None
    values.refuse(k, SerializationError("x"), remember=False)  # a read the race guard refused
    assert values.refused(k) is None
    for i in range(MAX_REFUSED + 10):
        values.refuse(("t", str(i)), SerializationError("x"), remember=True)
    assert len(values._refused) == MAX_REFUSED
    assert stats.unreadable == 4 + MAX_REFUSED + 10


@FUZZ
@given(json_like)
def test_json_codec_decodes_any_json_it_is_handed_or_refuses_it(value: object) -> None:
    try:
        data = b"j" + orjson.dumps(value)
    except TypeError:
        return  # not JSON at all (bytes, out-of-range integers)
    with contextlib.suppress(SerializationError):
        JsonCodec().decode(data)


@FUZZ
@given(json_like | st.binary(max_size=40))
def test_tenant_ids_read_back_are_valid_ids_or_refused(value: object) -> None:
    codec = TenantIdCodec()
    if isinstance(value, bytes):
        data = b"j" + value
    else:
        try:
            data = b"j" + orjson.dumps(value)
        except TypeError:
            return
    try:
        tenant = codec.decode(data)
    except SerializationError:
        return
    assert check_tenant_id(tenant) == tenant


@FUZZ
@given(st.text(min_size=1, max_size=MAX_TENANT_LENGTH))
def test_valid_tenant_ids_round_trip_through_the_tenant_codec(tenant: str) -> None:
    try:
        check_tenant_id(tenant)
    except InvalidKeyError:
        return  # lone surrogates
    assert TenantIdCodec().decode(TenantIdCodec().encode(tenant)) == tenant
    assert len(TenantIdCodec().encode(tenant)) <= MAX_TENANT_LENGTH * 6 + 16


def test_the_tenant_codec_refuses_what_build_key_refuses() -> None:
    for bad in ("", "t" * (MAX_TENANT_LENGTH + 1), 42, None, ["t"]):
        with pytest.raises(SerializationError):
            TenantIdCodec().encode(bad)
        with pytest.raises(SerializationError):
            TenantIdCodec().decode(b"j" + orjson.dumps(bad))


# -- breaker state -------------------------------------------------------------------------------
state_fields = st.fixed_dictionaries(
    {},
    optional={
        "until": json_like | st.floats(min_value=-1e20, max_value=1e20),
        "gen": json_like | st.integers(min_value=-1, max_value=2**64),
        "opens": json_like | st.integers(min_value=-1, max_value=2000),
    },
)


@FUZZ
@given(state_fields | json_like, st.floats(min_value=0, max_value=4e9), st.floats(1, 1e5))
def test_breaker_state_parser_accepts_only_well_formed_states(
    value: object, now: float, max_open: float
) -> None:
    state = parse_state(value, now=now, max_open=max_open)
    if state is None:
        return
    assert isinstance(value, dict)
    assert math.isfinite(state.until)
    assert 0 <= state.until <= now + max_open + CLOCK_SLACK
    assert 0 <= state.gen <= MAX_GEN
    assert 0 <= state.opens <= MAX_OPENS
    assert parse_state(state.to_dict(), now=now, max_open=max_open) == state


def test_breaker_state_parser_examples() -> None:
    now = 1_700_000_000.0
    ok = {"until": now + 30, "gen": 1_700_000_000_000, "opens": 2}
    assert parse_state(ok, now=now, max_open=300) == FleetState(now + 30, 1_700_000_000_000, 2)
    assert parse_state({"until": now}, now=now, max_open=300) == FleetState(now, 0, 0)
    many = {"until": now, "opens": 10**6}  # a dependency down for weeks: counted at most 1000
    assert parse_state(many, now=now, max_open=300) == FleetState(now, 0, MAX_OPENS)
    for bad in (
        {"until": "soon"},
        [1],
        None,
        {"until": float("nan")},
        {"until": float("inf")},
        {"until": now + 1e9},
        {"until": True},
        {"until": now, "gen": 1.5},
        {"until": now, "gen": True},
        {"until": now, "opens": -1},
        {"until": now, "opens": 1.0},
    ):
        assert parse_state(bad, now=now, max_open=300) is None, bad


# -- limiter state -------------------------------------------------------------------------------
reply_part = json_like | st.binary(max_size=30) | st.integers(min_value=-(2**70), max_value=2**70)


@FUZZ
@given(reply_part, st.integers(min_value=1, max_value=1000))
def test_window_counter_replies_are_checked(counter: object, charged: int) -> None:
    try:
        value = check_window_reply(counter, charged)
    except BadState:
        return
    assert type(value) is int
    assert value >= charged


@FUZZ
@given(st.lists(reply_part, min_size=0, max_size=4) | reply_part, st.floats(1, 1e6))
def test_token_bucket_replies_are_checked(reply: object, max_wait_ms: float) -> None:
    try:
        granted, retry_ms, left = check_bucket_reply(reply, max_wait_ms)
    except BadState:
        return
    assert granted >= 0
    assert left >= 0
    assert 0 <= retry_ms <= max_wait_ms


def test_token_bucket_replies_as_the_script_sends_them() -> None:
    assert check_bucket_reply([3, b"0", 7], 100.0) == (3, 0.0, 7)
    assert check_bucket_reply([0, b"12.500", 0], 100.0) == (0, 12.5, 0)
    for bad in ([0, b"1e300", 0], [0, b"nan", 0], [-1, b"0", 0], [0, b"0"], None, b"x"):
        with pytest.raises(BadState):
            check_bucket_reply(bad, 100.0)


@FUZZ
@given(
    st.text(max_size=120)
    | st.builds(
        "/".join,
        st.tuples(
            st.sampled_from(["fixed_window", "token_bucket", "x"]),
            st.text(max_size=25),
            st.text(max_size=25),
        ),
    )
    | json_like
)
def test_stored_limiter_configurations_are_parsed_defensively(value: object) -> None:
    config = LimitConfig.parse(value)
    if config is None:
        return
    assert config.algorithm in ("fixed_window", "token_bucket")
    assert 1 <= config.limit < 10**18
    assert math.isfinite(config.per)
    assert config.per > 0
    assert LimitConfig.parse(config.text()) == config


# -- the kill switch -------------------------------------------------------------------------------
@FUZZ
@given(
    st.binary(max_size=200)
    | json_like.map(lambda v: json.dumps(v, default=repr).encode())
    | st.fixed_dictionaries(
        {"state": st.sampled_from(["suspended", "active"]) | json_like},
        optional={"reason": json_like | st.text(max_size=400), "at": json_like},
    ).map(lambda v: json.dumps(v, default=repr).encode())
)
def test_only_a_well_formed_suspension_suspends(raw: bytes) -> None:
    state = parse_switch(raw)
    if state is None:
        return
    assert set(state) == {"state", "reason", "at"}
    assert state["state"] == "suspended"
    assert isinstance(state["reason"], str)
    assert state["reason"].isprintable()
    assert 0 < len(state["reason"]) <= MAX_REASON
    assert state["at"] is None or math.isfinite(state["at"])


def test_switch_examples() -> None:
    ok = parse_switch(b'{"state": "suspended", "reason": "incident 42", "at": 1.5}')
    assert ok == {"state": "suspended", "reason": "incident 42", "at": 1.5}
    assert parse_switch(b'{"state": "suspended"}') == {
        "state": "suspended",
        "reason": "fleet switch",
        "at": None,
    }
    for bad in (b"garbage", b"[1]", b"null", b'"suspended"', b"{}", b"[" * 5000, None, 42):
        assert parse_switch(bad) is None
    big = b'{"state": "suspended", "x": "' + b"y" * MAX_SWITCH_BYTES + b'"}'
    assert parse_switch(big) is None


# -- heartbeats and fleet snapshots ----------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=25) | json_like | st.integers())
def test_heartbeat_counts_are_bounded(value: object) -> None:
    n = heartbeat_count(value)
    if n is not None:
        assert type(n) is int
        assert 0 <= n <= MAX_FLEET_SIZE


def test_heartbeat_count_examples() -> None:
    assert heartbeat_count(None) == 0
    assert heartbeat_count(b"42") == 42
    assert heartbeat_count(7) == 7
    for bad in (b"text", b"1000000000000", b"-5", b" 7", b"1_0", b"\xd9\xa1", 10**12, True, -1):
        assert heartbeat_count(bad) is None


snapshot_like = st.fixed_dictionaries(
    {"instance": st.text(max_size=10) | json_like},
    optional={
        "mode": st.text(max_size=10) | json_like,
        "billed_per_day": st.floats(allow_nan=False, allow_infinity=False) | json_like,
        "commands": st.integers(min_value=-5, max_value=10**6) | json_like,
        "by_family": st.dictionaries(st.text(max_size=10), st.integers(-5, 100) | json_like),
        "saved": json_like,
    },
)


@FUZZ
@given(
    st.binary(max_size=200)
    | json_like.map(lambda v: json.dumps(v, default=repr).encode())
    | snapshot_like.map(lambda v: json.dumps(v, default=repr).encode())
)
def test_fleet_snapshots_are_checked_before_use(raw: bytes) -> None:
    snap = parse_snapshot(raw)
    if snap is None:
        return
    for name in ("instance", "provider", "mode"):
        assert isinstance(snap[name], str)
    for name in ("at", "elapsed_s", "commands", "billed", "per_day", "billed_per_day"):
        assert math.isfinite(snap[name])
        assert snap[name] >= 0
    for name in ("by_component", "by_command", "by_family", "by_tenant", "saved"):
        assert isinstance(snap[name], dict)
        assert all(isinstance(k, str) for k in snap[name])
        assert all(math.isfinite(v) and v >= 0 for v in snap[name].values())
    # what lowtide top computes from it
    float(snap["billed_per_day"])
    sum(snap["saved"].values())


def test_a_published_snapshot_reads_back_unchanged() -> None:
    snap = {
        "instance": "web-1",
        "provider": "upstash",
        "mode": "distributed",
        "at": 1_700_000_000.5,
        "elapsed_s": 61.0,
        "commands": 120,
        "billed": 118,
        "per_day": 170_000.0,
        "billed_per_day": 168_000.0,
        "usd_per_month": 10.08,
        "by_component": {"cache": 100, "limiter": 20},
        "by_command": {"get": 100},
        "by_family": {"lt:c:profiles:*": 100},
        "by_tenant": {"t1": 100},
        "saved": {"cache": 900},
    }
    assert parse_snapshot(json.dumps(snap).encode()) == snap
