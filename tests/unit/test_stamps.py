"""Value stamps of purgeable caches: they round-trip, and bytes read back from Redis (planted
or corrupt) either parse or raise SerializationError, with bounded work."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide import ConfigError, SerializationError
from lowtide.cache import stamps

tags = st.lists(st.text(min_size=1, max_size=40), max_size=5, unique=True)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1), tags, st.binary(max_size=50))
def test_a_stamp_round_trips(written: int, tag_list: list[str], body: bytes) -> None:
    try:
        checked = stamps.check_tags(tag_list)
    except ConfigError:
        return  # lone surrogates: refused when written
    payload = stamps.make(written, checked) + body
    stamp, at = stamps.parse(payload)
    assert stamp == stamps.Stamp(written, checked)
    assert payload[at:] == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_planted_stamps_parse_or_raise_serialization_error(junk: bytes) -> None:
    for payload in (junk, stamps.MAGIC + junk):
        try:
            stamp, at = stamps.parse(payload)
        except SerializationError:
            continue
        assert 0 <= at <= len(payload)
        assert len(stamp.tags) <= stamps.MAX_TAGS


def test_unstamped_payloads_are_written_at_zero() -> None:
    assert stamps.parse(b"j{}") == (stamps.UNSTAMPED, 0)


@pytest.mark.parametrize(
    "bad",
    ["plan:pro", ("",), (1,), tuple(f"t{i}" for i in range(stamps.MAX_TAGS + 1)), ("x" * 300,)],
)
def test_tags_are_checked(bad: object) -> None:
    with pytest.raises(ConfigError):
        stamps.check_tags(bad)
