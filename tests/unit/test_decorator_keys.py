"""@cached keys: one key per distinct call (types included), the same key for the same call
however it is spelled, a clear error for arguments that cannot form a key; and the decorated
function keeps its signature for mypy."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.cache.decorator import _Binder, encode_value

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.dates()
    | st.datetimes()
    | st.uuids()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=12,
)


def _canonical(v: Any) -> Any:
    """What two values must share to mean the same call: type and value, recursively."""
    if isinstance(v, list | tuple):
        return (type(v).__name__, tuple(_canonical(x) for x in v))
    if isinstance(v, dict):
        return ("dict", frozenset((k, _canonical(x)) for k, x in v.items()))
    if isinstance(v, frozenset):
        return ("set", frozenset(_canonical(x) for x in v))
    if isinstance(v, float) and v == 0.0:
        return ("float", str(v))  # 0.0 and -0.0 are two calls
    return (type(v).__name__, v)


@settings(max_examples=400, deadline=None)
@given(values, values)
def test_distinct_values_never_share_an_encoding(a: Any, b: Any) -> None:
    if _canonical(a) != _canonical(b):
        assert encode_value(a) != encode_value(b)
    else:
        assert encode_value(a) == encode_value(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=4), st.lists(st.text(), min_size=1, max_size=4))
def test_strings_cannot_imitate_several_arguments(a: list[str], b: list[str]) -> None:
    if a != b:
        assert "".join(map(encode_value, a)) != "".join(map(encode_value, b))


class Color(enum.Enum):
    RED = 1
    BLUE = "1"


def test_types_are_part_of_the_key() -> None:
    same = [1, 1.0, True, "1", b"1", Color.RED, Color.BLUE, decimal.Decimal(1), (1,), [1]]
    assert len({encode_value(v) for v in same}) == len(same)
    moment = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert encode_value(moment) != encode_value(moment.replace(tzinfo=None))
    assert encode_value({"a": 1, "b": 2}) == encode_value({"b": 2, "a": 1})
    assert encode_value({1, 2, 3}) == encode_value({3, 2, 1})
    assert encode_value(uuid.UUID(int=1)) != encode_value(str(uuid.UUID(int=1)))


async def profile(
    user_id: int, *, fields: tuple[str, ...] = ("name",), verbose: bool = False
) -> Any:
    return None


def test_one_call_however_it_is_spelled() -> None:
    b = _Binder(profile, "p", key=None, tenant=None, tags=(), exclude=())
    k = b.key((42,), {})
    assert b.key((), {"user_id": 42}) == k
    assert b.key((42,), {"fields": ("name",)}) == k
    assert b.key((42,), {"verbose": False}) == k
    assert b.key((42,), {"verbose": True}) != k
    assert b.key((43,), {}) != k


class Repo:
    async def get(self, user_id: int) -> Any:
        return None


def test_unkeyable_arguments_raise_naming_the_parameter() -> None:
    b = _Binder(Repo.get, "r", key=None, tenant=None, tags=(), exclude=())
    with pytest.raises(TypeError, match="'self' of type Repo"):
        b.key((Repo(), 1), {})
    ok = _Binder(Repo.get, "r", key=None, tenant=None, tags=(), exclude=("self",))
    assert ok.key((Repo(), 1), {}) == ok.key((Repo(), 1), {})
    assert ok.key((Repo(), 1), {}) != ok.key((Repo(), 2), {})
    with pytest.raises(TypeError, match="'user_id' of type object"):
        ok.key((Repo(), object()), {})


def test_long_arguments_are_digested() -> None:
    b = _Binder(profile, "p", key=None, tenant=None, tags=(), exclude=())
    long_a, long_b = b.key(("x" * 5000,), {}), b.key(("x" * 4999 + "y",), {})
    assert long_a != long_b
    assert len(long_a) < 100
    assert long_a.startswith("p:#")


TYPED = textwrap.dedent(
    """
    import asyncio
    from lowtide import Lowtide

    async def main() -> None:
        lt = Lowtide(None)
        users = lt.cache("users")

        @users.cached(ttl=60)
        async def load(user_id: int, *, full: bool = False) -> dict[str, int]:
            return {"id": user_id}

        @users.cached
        async def count() -> int:
            return 1

        class Repo:
            @users.cached(exclude=("self",))
            async def get(self, user_id: int) -> str:
                return ""

        reveal_type(load)
        got = await load(1, full=True)
        reveal_type(got)
        asyncio.create_task(load(2))
        reveal_type(load.key(1, full=True))
        await load.invalidate(1)
        await load.invalidate(user_id=1, full=False)
        reveal_type(count.key())
        repo = Repo()
        reveal_type(await repo.get(3))
        reveal_type(repo.get.key(repo, 3))
        await repo.get.invalidate(repo, 3)
        Repo.get.key(repo, 3)
        await load("one")  # E: wrong type
        load.key("one")  # E: wrong type
        await load.invalidate(1, full="yes")  # E: wrong type
        load.key(1, fast=True)  # E: no such parameter
        await repo.get("x")  # E: wrong type
        repo.get.key(3)  # E: the instance comes first (two errors)
        load.invalidate(1)  # E: a coroutine, never awaited
    """
)


def test_the_decorated_function_keeps_its_signature_for_mypy(tmp_path: Path) -> None:
    src = tmp_path / "typed_use.py"
    src.write_text(TYPED)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    revealed = [
        line.split("Revealed type is ")[1] for line in out.splitlines() if "Revealed" in line
    ]
    assert revealed == [
        '"lowtide.cache.decorator.CachedFunction[[user_id: int, *, full: bool =], dict[str, int]]"',
        '"dict[str, int]"',
        '"str"',
        '"str"',
        '"str"',
        '"str"',
    ], out
    errors = {line.split(": error: ")[1] for line in out.splitlines() if ": error: " in line}
    assert errors == {
        'Argument 1 to "__call__" of "CachedFunction" has incompatible type "str"; '
        'expected "int"  [arg-type]',
        'Argument 1 to "key" of "CachedFunction" has incompatible type "str"; '
        'expected "int"  [arg-type]',
        'Argument "full" to "invalidate" of "CachedFunction" has incompatible type "str"; '
        'expected "bool"  [arg-type]',
        'Unexpected keyword argument "fast" for "key" of "CachedFunction"  [call-arg]',
        'Argument 1 to "__call__" of "CachedMethod" has incompatible type "str"; '
        'expected "int"  [arg-type]',
        'Missing positional argument "user_id" in call to "key" of "CachedMethod"  [call-arg]',
        'Argument 1 to "key" of "CachedMethod" has incompatible type "int"; '
        'expected "Repo"  [arg-type]',
        'Value of type "Coroutine[Any, Any, None]" must be used  [unused-coroutine]',
    }, out
    # errors on the lines marked "# E" and nowhere else: every right call type-checks
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error: " in line}
    assert lines == {n for n, text in enumerate(TYPED.splitlines(), 1) if "# E:" in text}, out
