"""Typed errors raised by lowtide.

Every error lowtide raises on purpose derives from :class:`LowtideError`, so callers can catch
the whole family at once, and each subclass also derives from the closest built-in exception
(``ValueError`` for bad input, ``ConnectionError`` for an unreachable server) so existing
``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpen",
    "ConfigError",
    "InvalidKeyError",
    "LowtideError",
    "RateLimited",
    "RedisCommandError",
    "RedisUnavailable",
    "SerializationError",
    "TenantRequired",
    "ValueTooLarge",
]


class LowtideError(Exception):
    """Base class of every error lowtide raises on purpose."""


class ConfigError(LowtideError, ValueError):
    """A setting or an environment variable has an invalid value.

    The message names the setting and never contains a password.
    """


class InvalidKeyError(LowtideError, ValueError):
    """A tenant id, cache name or key cannot be turned into a Redis key (empty, too long, ...)."""


class SerializationError(LowtideError, ValueError):
    """A value cannot be encoded, or bytes read from Redis cannot be decoded, by the codec."""


class ValueTooLarge(SerializationError):
    """An encoded value is larger than the configured limit (``max_value_bytes``)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class TenantRequired(LowtideError, ValueError):
    """A per-tenant component was called with no ``tenant=`` and no active ``tenant_scope()``."""


class RateLimited(LowtideError):
    """A rate limiter refused the call; ``retry_after`` says when a token may be available."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(LowtideError):
    """A circuit breaker is open for this tenant; ``retry_after`` says when it may probe."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RedisUnavailable(LowtideError, ConnectionError):
    """Redis cannot be used right now: unreachable, timed out, suspended, or not configured.

    Components catch it and fall back to local state; it reaches callers from components
    configured fail-closed, and from cache writes that failed while the hub still uses Redis
    (``reason`` ``busy`` or ``timeout``: the write may or may not have landed).
    """

    def __init__(self, message: str, *, reason: str = "unreachable") -> None:
        super().__init__(message)
        #: one of ``unreachable``, ``timeout``, ``busy`` (every connection stayed busy past the
        #: queue timeout), ``quota`` (the tenant is over its quota), ``suspended``, ``local``,
        #: ``degraded``
        self.reason = reason


class RedisCommandError(LowtideError):
    """The server answered a command with an error reply (WRONGTYPE, OOM, READONLY, ...)."""

    def __init__(self, message: str, *, command: str, code: str | None = None) -> None:
        super().__init__(message)
        #: the command in server naming, e.g. ``get`` or ``client|tracking``
        self.command = command
        self._code = code

    @property
    def code(self) -> str:
        """The error code the server put first in its reply, e.g. ``WRONGTYPE`` or ``OOM``."""
        if self._code:
            return self._code
        first = str(self).split(" ", 1)[0]
        return first if first.isupper() else "ERR"
