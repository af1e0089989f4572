"""Fuzzing the decoders of what Redis pushes and of cache values read back (issue 19): whatever
the bytes, a decoder answers a checked value or "not one" (None / a typed error); it never raises
anything else, never returns a value outside its bounds, and its work is bounded."""

from __future__ import annotations

import contextlib
import logging
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide import InvalidKeyError, SerializationError, ValueTooLarge
from lowtide._untrusted import Warnings, number, printable, shown, whole
from lowtide.cache.envelope import ENVELOPE_BYTES, unwrap
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.values import MAX_REFUSED, Values
from lowtide.codec import JsonCodec
from lowtide.keys import MAX_TENANT_LENGTH, check_tenant_id
from lowtide.redis.tracking import (
    MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_KEYS,
    MessageStats,
    message_keys,
    publish_batches,
)
from lowtide.tenants import TenantIdCodec
from tests.unit.untrusted_strategies import FUZZ, json_like

PREFIXES = (b"lt:c:", b"lt:t:", b"lt:b:", b"lt:x:")
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
