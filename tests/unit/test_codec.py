"""The default codec: JSON values and bytes round-trip; nothing else is ever decoded."""

from __future__ import annotations

import contextlib
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide import SerializationError
from lowtide.codec import Codec, JsonCodec

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
codec = JsonCodec()


def _has_surrogate(v: object) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(v, list):
        return any(_has_surrogate(x) for x in v)
    if isinstance(v, dict):
        return any(_has_surrogate(k) or _has_surrogate(x) for k, x in v.items())
    return False


@given(json_values)
def test_json_values_round_trip(value: object) -> None:
    if _has_surrogate(value):
        with pytest.raises(SerializationError):
            codec.encode(value)
        return
    assert codec.decode(codec.encode(value)) == value


@given(st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    assert codec.decode(codec.encode(value)) == value


@given(st.binary())
def test_decoding_random_bytes_never_does_anything_but_fail_cleanly(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        codec.decode(data)


@pytest.mark.parametrize("value", [object(), {1: "int key"}, {"s": {1, 2}}, 2**70, b"ok".decode])
def test_unserializable_values_raise_typed_errors(value: object) -> None:
    with pytest.raises(SerializationError):
        codec.encode(value)


def test_pickles_are_refused() -> None:
    with pytest.raises(SerializationError, match="refusing"):
        codec.decode(pickle.dumps({"a": 1}))


def test_corrupt_json_is_a_typed_error() -> None:
    with pytest.raises(SerializationError):
        codec.decode(b"j{not json")
    with pytest.raises(SerializationError):
        codec.decode(b"")


def test_protocol() -> None:
    assert isinstance(codec, Codec)
