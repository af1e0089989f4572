"""Checks for what lowtide reads back from Redis or receives in a push: untrusted input.

Anyone who can write lowtide's keys (or PUBLISH on its channel) chooses these bytes, so every
value is checked for type, range and size before use. Each check here answers a value of the
expected type within the expected range, or ``None``; callers ignore a ``None`` (bad state never
reaches a caller as an exception, and never stops a background task), count it in their
``info()``/stats, and log it through :class:`Warnings`: at most one line per kind per minute,
with the value shown by :func:`shown` (a bounded ``repr``), so hostile text can neither flood
the logs nor forge a log line.
"""

from __future__ import annotations

import logging
import math
import reprlib
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["CLOCK_SLACK", "Warnings", "number", "printable", "shown", "whole"]

#: how far ahead of this hub's clock another hub's deadline may reasonably be (seconds):
#: hubs align on the server's clock, so this only absorbs rounding and measuring error
CLOCK_SLACK: Final = 60.0

_repr = reprlib.Repr()
_repr.maxstring = 90
_repr.maxother = 90
_repr.maxlong = 40


def shown(value: object, limit: int = 100) -> str:
    """A short, single-line ``repr`` of ``value`` for a log line (bounded cost and length)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return repr(bytes(value[: limit + 1]))[:limit]
    try:
        return _repr.repr(value)[:limit]
    except Exception:  # a repr that fails must not turn a warning into an error
        return f"<{type(value).__name__}>"


def number(value: object, *, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """``value`` as a float if it is an int or float (not a bool), finite and within
    ``[lo, hi]``; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    if not math.isfinite(f) or not lo <= f <= hi:
        return None
    return f


def whole(value: object, *, lo: int, hi: int) -> int | None:
    """``value`` if it is an int (not a bool) within ``[lo, hi]``; else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def printable(value: object, limit: int = 200) -> str | None:
    """``value`` with every character that is not printable (newlines, control and format
    characters, lone surrogates) replaced by ``?`` and cut to ``limit`` characters; None if it
    is not a str. Fit for a log line or a health report."""
    if not isinstance(value, str):
        return None
    text = value[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


class Warnings:
    """Rate-limited warnings: at most one line per ``kind`` every ``every`` seconds; the next
    line says how many were left out meanwhile. ``kind`` must come from code, never from data
    (the set of kinds is the set of call sites)."""

    __slots__ = ("_every", "_last", "_log", "_now", "_skipped")

    def __init__(
        self,
        log: logging.Logger,
        every: float = 60.0,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._every = every
        self._now = now
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` at WARNING unless ``kind`` was logged within ``every``
        seconds; True if it was logged."""
        now = self._now()
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        if skipped:
            message += " (%d more like this since the last warning)"
            args = (*args, skipped)
        self._log.warning(message, *args)
        return True
