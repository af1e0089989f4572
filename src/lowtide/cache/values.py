"""Values on their way to and from Redis: the codec, the size limit (both ways), and the memory
of values that could not be read.

Whatever is read from Redis is untrusted (anyone with write access may have planted it):

* a value larger than the cache's limit (``min(max_value_bytes of the cache, of the
  settings)``, the same limit writes obey) is refused **before it is decoded**
  (:class:`ValueTooLarge`), and so is anything the envelope or the codec refuses
  (:class:`SerializationError`); the cache answers such a value as unreadable: ``get`` raises
  the typed error, ``get_or_load`` loads and overwrites it;
* so that a planted value is not downloaded again on every read, the key is remembered as
  unreadable (at most :data:`MAX_REFUSED` keys per cache) until a push names it, any flush
  (listener lost, mode change), a write by this process, or ``min(ttl, max_staleness)`` passes;
  meanwhile a read of it raises the same typed error **with no command**. Only a read the race
  guard lets fill L1 is remembered (nothing changed the key while it was in flight).

Every refusal is counted (:attr:`CacheStats.unreadable`, :attr:`CacheStats.oversized`,
:attr:`CacheStats.unreadable_hits`) and logged at most once a minute per cache, without the
value.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import lowtide.cache.stamps as stamps
from lowtide._untrusted import Warnings
from lowtide.cache.envelope import ENVELOPE_BYTES, unwrap
from lowtide.cache.options import CacheOptions, CacheStats
from lowtide.cache.stamps import MAX_STAMP_BYTES, Stamp
from lowtide.cache.store import Key
from lowtide.codec import Codec
from lowtide.errors import SerializationError, ValueTooLarge

__all__ = ["MAX_REFUSED", "Values"]

log = logging.getLogger("lowtide.cache")

#: keys remembered as unreadable per cache (the oldest is forgotten first)
MAX_REFUSED: Final = 1024

#: builds a fresh copy of the error a remembered key raises (never one instance raised twice)
_Error = Callable[[], SerializationError]


class Values:
    """Encoding, checked decoding, and the unreadable keys of one cache (see module docs)."""

    __slots__ = (
        "_epoch",
        "_now",
        "_refused",
        "_stats",
        "_warnings",
        "codec",
        "lifetime",
        "limit",
        "what",
    )

    def __init__(
        self,
        codec: Codec,
        options: CacheOptions,
        settings_limit: int,
        stats: CacheStats,
        *,
        what: str,
        now: Callable[[], float],
        epoch: Callable[[], int],
    ) -> None:
        self.codec = codec
        #: the largest encoded value written or read (bytes, without the envelope)
        self.limit = min(options.max_value_bytes, settings_limit)
        #: how long a key is remembered as unreadable (seconds)
        self.lifetime = min(options.ttl, options.max_staleness)
        self.what = what
        self._stats = stats
        self._now = now
        self._epoch = epoch
        self._refused: OrderedDict[Key, tuple[float, int, _Error]] = OrderedDict()
        self._warnings = Warnings(log)

    # -- writes ---------------------------------------------------------------------------------
    def encode(self, value: Any, stamp: bytes = b"") -> bytes:
        """The codec's bytes for ``value`` (after ``stamp``, see :mod:`lowtide.cache.stamps`);
        raises for None (TypeError), for what the codec refuses (SerializationError) and above
        the limit (ValueTooLarge, which applies to the codec's bytes)."""
        if value is None:
            raise TypeError("None cannot be cached (it means 'no value'); use delete()")
        payload = self.codec.encode(value)
        if len(payload) > self.limit:
            raise ValueTooLarge(
                f"value for {self.what} is {len(payload)} bytes encoded; the limit is {self.limit}",
                size=len(payload),
                limit=self.limit,
            )
        return stamp + payload if stamp else payload

    # -- reads ----------------------------------------------------------------------------------
    def unwrap(self, raw: bytes) -> tuple[int, bytes]:
        """``(expires_ms, payload)`` of an L2 reply; ValueTooLarge above the limit (nothing
        decoded), SerializationError if it is not an envelope."""
        return self._checked(raw, self.limit)

    def open(self, raw: bytes) -> tuple[int, Stamp, bytes]:
        """``(expires_ms, stamp, codec bytes)`` of an L2 reply: :meth:`unwrap` with the stamp
        of a purgeable cache's value split off (:data:`~lowtide.cache.stamps.UNSTAMPED` when
        there is none); the size limit applies to the codec bytes, checked before decoding."""
        expires_ms, payload = self._checked(raw, self.limit + MAX_STAMP_BYTES)
        stamp, at = stamps.parse(payload)
        if len(payload) - at > self.limit:
            self._too_large(len(payload) - at)
        return expires_ms, stamp, payload[at:] if at else payload

    def _checked(self, raw: bytes, limit: int) -> tuple[int, bytes]:
        size = len(raw) - ENVELOPE_BYTES
        if size > limit:
            self._too_large(size)
        return unwrap(raw)

    def _too_large(self, size: int) -> None:
        self._stats.oversized += 1
        raise ValueTooLarge(
            f"value for {self.what} in Redis is {size} bytes encoded; the limit is "
            f"{self.limit}: not decoded",
            size=size,
            limit=self.limit,
        )

    def decode(self, payload: bytes) -> Any:
        """The codec's value for ``payload`` (a stamp in front is skipped; SerializationError
        if the codec refuses it)."""
        if payload.startswith(stamps.MAGIC):
            payload = payload[stamps.parse(payload)[1] :]
        return self.codec.decode(payload)

    def refuse(self, k: Key, exc: SerializationError, *, remember: bool) -> None:
        """Count and log an unreadable L2 value of ``k``; with ``remember``, later reads of
        ``k`` raise a copy of ``exc`` without a command (see module docs)."""
        self._stats.unreadable += 1
        self._warnings.warn(
            "unreadable", "%s: unreadable value in Redis (%s)", self.what, type(exc).__name__
        )
        if not remember or self.lifetime <= 0:
            return
        refused = self._refused
        refused.pop(k, None)
        if len(refused) >= MAX_REFUSED:
            refused.popitem(last=False)
        refused[k] = (self._now() + self.lifetime, self._epoch(), _copier(exc))

    def refused(self, k: Key) -> SerializationError | None:
        """A fresh copy of the error ``k`` was refused with, while it is remembered (counted
        in ``unreadable_hits``); else None."""
        held = self._refused.get(k)
        if held is None:
            return None
        until, epoch, error = held
        if epoch != self._epoch() or until <= self._now():
            del self._refused[k]
            return None
        self._stats.unreadable_hits += 1
        return error()

    def forget(self, k: Key) -> None:
        """``k`` changed (a push, or a write by this process): read it again next time."""
        if self._refused:
            self._refused.pop(k, None)


def _copier(exc: SerializationError) -> _Error:
    message = str(exc)
    if isinstance(exc, ValueTooLarge):
        size, limit = exc.size, exc.limit
        return lambda: ValueTooLarge(message, size=size, limit=limit)
    return lambda: SerializationError(message)
