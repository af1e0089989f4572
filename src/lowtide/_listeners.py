"""``Listeners[T]``: a list of callbacks with an unsubscribe handle and failure isolation.

Every event source in lowtide (mode changes, breaker transitions, quota events, invalidation
pushes, cache watchers) keeps its callbacks here: :meth:`Listeners.add` returns a function
that removes the callback again, and :meth:`Listeners.emit` calls each one, logging (never
raising) a callback's failure so one buggy subscriber cannot break the source.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Listeners"]

T = TypeVar("T")


class Listeners(Generic[T]):
    """Callbacks taking one event of type ``T`` (see module docs)."""

    __slots__ = ("_callbacks", "_log", "_what")

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._callbacks: list[Callable[[T], None]] = []
        self._log = log
        self._what = what

    def add(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Subscribe ``callback``; returns a function that unsubscribes it (idempotent)."""
        self._callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return remove

    def emit(self, event: T) -> None:
        """Call every callback with ``event``; a failing callback is logged and skipped."""
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                self._log.exception("%s failed", self._what)

    def clear(self) -> None:
        """Unsubscribe everyone."""
        self._callbacks.clear()

    def __len__(self) -> int:
        return len(self._callbacks)

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def __repr__(self) -> str:
        return f"<Listeners {self._what!r} n={len(self._callbacks)}>"
