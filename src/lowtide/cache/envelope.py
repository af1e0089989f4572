"""The L2 envelope: what a cache value looks like in Redis.

``b"L" + 8-byte big-endian word + codec bytes``, nine bytes on top of the codec's. The word's
low 63 bits are the value's expiry (unix ms, 0 = none): carrying it in the value lets a reader
cap its L1 copy at the L2 entry's remaining life and decide when to refresh eagerly, without a
PTTL command (which would be billed).

The word's top bit marks a value **no process may keep a copy of** (every read goes to Redis),
so that replacing it needs no message on the pub/sub backplane (see
:mod:`lowtide.cache.notify` and :mod:`lowtide.cache.adaptive`). Earlier versions never set it
(an expiry in ms is far below 2**63) and read a marked value as one expiring in the far future,
which their copy cap (``min(ttl, max_staleness)`` without verified push) still bounds.
"""

from __future__ import annotations

import struct
from typing import Final

from lowtide.errors import SerializationError

__all__ = ["ENVELOPE_BYTES", "copies_allowed", "same_payload", "unwrap", "wrap"]

_MAGIC: Final = b"L"
_HEADER: Final = struct.Struct(">Q")
_SIZE: Final = 1 + _HEADER.size
#: the top bit of the expiry word: nobody keeps a copy of this value
_NO_COPIES: Final = 1 << 63
#: bytes the envelope adds to the codec's bytes
ENVELOPE_BYTES: Final = _SIZE


def wrap(payload: bytes, expires_ms: int, *, copies: bool = True) -> bytes:
    """Envelope ``payload`` with its expiry time (unix ms; 0 for none); ``copies=False``
    marks a value no process may keep a copy of."""
    word = expires_ms if copies else expires_ms | _NO_COPIES
    return _MAGIC + _HEADER.pack(word) + payload


def unwrap(data: bytes) -> tuple[int, bytes]:
    """``(expires_ms, payload)`` of an envelope; SerializationError if ``data`` is not one."""
    if len(data) < _SIZE or data[:1] != _MAGIC:
        raise SerializationError(
            "value in Redis was not written by a lowtide cache (no envelope); refusing to decode"
        )
    (word,) = _HEADER.unpack_from(data, 1)
    return word & ~_NO_COPIES, data[_SIZE:]


def copies_allowed(data: bytes) -> bool:
    """True unless ``data`` is an envelope marked "no copies" (anything else, even bytes that
    are no envelope at all, answers True: the safe side for a writer deciding whether to tell
    the fleet)."""
    return not (len(data) >= _SIZE and data[:1] == _MAGIC and data[1] & 0x80)


def same_payload(data: bytes, payload: bytes) -> bool:
    """True if the envelope ``data`` carries exactly ``payload`` (whatever its expiry)."""
    return len(data) == _SIZE + len(payload) and data[:1] == _MAGIC and data[_SIZE:] == payload
