"""The stamp a purgeable cache puts in front of each value's codec bytes: when the value was
written and its tags.

``b"\\x00LTS" + 8-byte big-endian write time (server-aligned unix ms) + 1-byte tag count +
per tag: 2-byte length + UTF-8 bytes``. A reader compares the write time with the purge
markers of the value's cache, tenant and tags (:mod:`lowtide.cache.purge`). Only caches
created with ``purgeable=True`` write stamps; a payload without the magic is unstamped
(written at time 0, no tags). JsonCodec output never starts with the magic (its first byte is
``j`` or ``b``).

Stamps are read from Redis, so they are untrusted: :func:`parse` bounds the work (at most
:data:`MAX_TAGS` tags of at most :data:`MAX_TAG_BYTES` bytes) and raises
:class:`SerializationError` for anything malformed.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from lowtide.errors import ConfigError, SerializationError

__all__ = [
    "MAGIC",
    "MAX_STAMP_BYTES",
    "MAX_TAGS",
    "MAX_TAG_BYTES",
    "Stamp",
    "check_tags",
    "make",
    "parse",
]

MAGIC: Final = b"\x00LTS"
_TIME: Final = struct.Struct(">Q")
_LEN: Final = struct.Struct(">H")
#: most tags on one value, and longest tag (UTF-8 bytes)
MAX_TAGS: Final = 32
MAX_TAG_BYTES: Final = 256
#: largest stamp :func:`make` writes
MAX_STAMP_BYTES: Final = len(MAGIC) + _TIME.size + 1 + MAX_TAGS * (_LEN.size + MAX_TAG_BYTES)


class Stamp(NamedTuple):
    """What a stamp says about a value."""

    #: when it was written (server-aligned unix ms; 0 for an unstamped value)
    written_ms: int
    tags: tuple[str, ...]


#: what an unstamped payload means
UNSTAMPED: Final = Stamp(0, ())


def check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` as a tuple of distinct tags; ConfigError for anything else (a bare ``str``,
    non-``str`` items, empty or over-long tags, more than :data:`MAX_TAGS`)."""
    if isinstance(tags, str | bytes) or not hasattr(tags, "__iter__"):
        raise ConfigError("tags: give a tuple of str, e.g. tags=('plan:pro',)")
    out = tuple(dict.fromkeys(tags))
    if len(out) > MAX_TAGS:
        raise ConfigError(f"tags: at most {MAX_TAGS} tags per value, got {len(out)}")
    for tag in out:
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"tags: {tag!r} is not a non-empty str")
        try:
            size = len(tag.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError("tags: a tag is not valid unicode") from None
        if size > MAX_TAG_BYTES:
            raise ConfigError(f"tags: a tag is {size} bytes; the limit is {MAX_TAG_BYTES}")
    return out


def make(written_ms: int, tags: tuple[str, ...]) -> bytes:
    """The stamp of a value written at ``written_ms`` with ``tags`` (checked already)."""
    parts = [MAGIC, _TIME.pack(written_ms), bytes((len(tags),))]
    for tag in tags:
        b = tag.encode("utf-8")
        parts += [_LEN.pack(len(b)), b]
    return b"".join(parts)


def parse(payload: bytes) -> tuple[Stamp, int]:
    """``(stamp, offset of the codec bytes)``; an unstamped payload is ``(UNSTAMPED, 0)``."""
    if not payload.startswith(MAGIC):
        return UNSTAMPED, 0
    at = len(MAGIC)
    try:
        (written_ms,) = _TIME.unpack_from(payload, at)
        at += _TIME.size
        count = payload[at]
        at += 1
        if count > MAX_TAGS:
            raise SerializationError(f"value stamp has {count} tags; the limit is {MAX_TAGS}")
        tags: list[str] = []
        for _ in range(count):
            (n,) = _LEN.unpack_from(payload, at)
            at += _LEN.size
            if n == 0 or n > MAX_TAG_BYTES or at + n > len(payload):
                raise SerializationError("value stamp holds a malformed tag")
            tags.append(payload[at : at + n].decode("utf-8"))
            at += n
    except (struct.error, IndexError, UnicodeDecodeError):
        raise SerializationError("value stamp is malformed") from None
    return Stamp(written_ms, tuple(tags)), at
