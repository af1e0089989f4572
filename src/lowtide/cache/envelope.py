"""The L2 envelope: what a cache value looks like in Redis.

``b"L" + 8-byte big-endian expiry (unix ms, 0 = none) + codec bytes``. Carrying the expiry in
the value lets a reader cap its L1 copy at the L2 entry's remaining life and decide when to
refresh eagerly, without a PTTL command (which would be billed). Nine bytes per value.
"""

from __future__ import annotations

import struct
from typing import Final

from lowtide.errors import SerializationError

__all__ = ["ENVELOPE_BYTES", "unwrap", "wrap"]

_MAGIC: Final = b"L"
_HEADER: Final = struct.Struct(">Q")
_SIZE: Final = 1 + _HEADER.size
#: bytes the envelope adds to the codec's bytes
ENVELOPE_BYTES: Final = _SIZE


def wrap(payload: bytes, expires_ms: int) -> bytes:
    """Envelope ``payload`` with its expiry time (unix ms; 0 for none)."""
    return _MAGIC + _HEADER.pack(expires_ms) + payload


def unwrap(data: bytes) -> tuple[int, bytes]:
    """``(expires_ms, payload)`` of an envelope; SerializationError if ``data`` is not one."""
    if len(data) < _SIZE or data[:1] != _MAGIC:
        raise SerializationError(
            "value in Redis was not written by a lowtide cache (no envelope); refusing to decode"
        )
    (expires_ms,) = _HEADER.unpack_from(data, 1)
    return expires_ms, data[_SIZE:]
