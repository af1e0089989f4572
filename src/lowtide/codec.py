"""Value codecs: how cached values become bytes in Redis and back. Never pickle.

The default :class:`JsonCodec` stores JSON-compatible values (dict, list, str, int, float,
bool, None) with orjson and ``bytes`` as they are, behind a one-byte tag, so a reader always
knows what it is decoding and refuses anything else (a value written by another program, or a
pickle, raises :class:`SerializationError` instead of being executed).

A value reads back equal to what was written and of the same type, or it is refused when
written: JSON has no NaN or infinity, and orjson would quietly turn datetimes, UUIDs and enums
into strings, dataclasses into dicts and tuples into lists. So before encoding, the value is
walked once (its cost next to plain orjson is in ``python -m benchmarks.codec``), and anything
that is not exactly ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``, finite
``float``, ``bool`` or ``None`` raises :class:`SerializationError` naming the type and where it
is. Encode such values yourself (for example ``dt.isoformat()``) or pass your own
:class:`Codec`.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, runtime_checkable

import orjson

from lowtide.errors import SerializationError

__all__ = ["Codec", "JsonCodec"]

_JSON: Final = b"j"
_BYTES: Final = b"b"


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back. Implementations must never unpickle."""

    def encode(self, value: Any) -> bytes:
        """Bytes for ``value``; raise SerializationError if it cannot be encoded."""
        ...

    def decode(self, data: bytes) -> Any:
        """The value ``data`` encodes; raise SerializationError if it is not this codec's."""
        ...


class JsonCodec:
    """JSON-compatible values and bytes (see module docs)."""

    def encode(self, value: Any) -> bytes:
        """Tagged bytes for ``value``; SerializationError for anything that would not read
        back equal and of the same type (see module docs)."""
        if isinstance(value, bytes | bytearray | memoryview):
            return _BYTES + bytes(value)
        problem = _not_json(value)
        if problem is not None:
            raise SerializationError(f"cannot store {problem}: it would not read back as written")
        try:
            return _JSON + orjson.dumps(value)
        except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
            raise SerializationError(
                f"cannot encode a value of type {type(value).__name__} as JSON: {exc}"
            ) from None

    def decode(self, data: bytes) -> Any:
        """The value behind tagged ``data``."""
        if not data:
            raise SerializationError("empty value: not written by lowtide")
        tag, body = data[:1], data[1:]
        if tag == _BYTES:
            return bytes(body)
        if tag == _JSON:
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise SerializationError(f"corrupt JSON value: {exc}") from None
        raise SerializationError(
            f"unknown value tag {tag!r}: not written by lowtide's JsonCodec (refusing to decode)"
        )


def _not_json(value: Any) -> str | None:
    """None if ``value`` is plain JSON data that round-trips exactly, else what is wrong."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:  # NaN or infinity: JSON has neither
                return _where(value)
            continue
        if t is list:
            extend(v)
            continue
        if t is dict:
            for k in v:
                if type(k) is not str:
                    return _where(value)
            extend(v.values())
            continue
        return _where(value)
    return None


def _where(value: Any) -> str:
    """Find and describe the first part of ``value`` that is not plain JSON (error path)."""
    stack: list[tuple[Any, str]] = [(value, "the value")]
    while stack:
        v, where = stack.pop()
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:
                return f"float {v!r} at {where}"
            continue
        if t is list:
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))
            continue
        if t is dict:
            for k, item in v.items():
                if type(k) is not str:
                    return f"a {type(k).__name__} dict key at {where}"
                stack.append((item, f"{where}[{k!r}]"))
            continue
        return f"a value of type {t.__module__}.{t.__qualname__} at {where}"
    return "a value"
