"""A value reads back equal and of the same type, or it is refused with a typed error."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide import SerializationError
from lowtide.codec import JsonCodec

codec = JsonCodec()


class Color(enum.Enum):
    RED = 1


class Level(enum.StrEnum):
    HIGH = "high"


class Size(enum.IntEnum):
    BIG = 3


Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Profile:
    name: str


class MyDict(dict):  # type: ignore[type-arg]
    pass


REFUSED: list[tuple[Any, str]] = [
    (math.nan, "float nan"),
    (math.inf, "float inf"),
    (-math.inf, "float -inf"),
    ({"score": math.nan}, "float nan at the value['score']"),
    (datetime.datetime(2026, 1, 1), "datetime.datetime"),
    (datetime.date(2026, 1, 1), "datetime.date"),
    (uuid.UUID(int=7), "uuid.UUID"),
    (Color.RED, "Color"),
    (Level.HIGH, "Level"),
    (Size.BIG, "Size"),
    (Profile("ada"), "Profile"),
    ((1, 2), "builtins.tuple"),
    (Point(1, 2), "Point"),
    ({"a": [1, (2,)]}, "at the value['a'][1]"),
    ({1, 2}, "builtins.set"),
    (decimal.Decimal("1.5"), "decimal.Decimal"),
    ({1: "x"}, "int dict key"),
    (MyDict(a=1), "MyDict"),
]


@pytest.mark.parametrize(("value", "named"), REFUSED)
def test_values_that_would_not_read_back_as_written_are_refused(value: Any, named: str) -> None:
    with pytest.raises(SerializationError, match="cannot store") as info:
        codec.encode(value)
    assert named in str(info.value)


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text().filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=10).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(plain)
def test_plain_json_values_read_back_equal_and_of_the_same_type(value: Any) -> None:
    assert _same(codec.decode(codec.encode(value)), value)
