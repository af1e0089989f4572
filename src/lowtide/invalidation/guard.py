"""The race guard, pure: did an invalidation of a key arrive while a command on it was in flight?

A reader (or writer) calls :meth:`RaceGuard.begin` before sending a command on a key and
:meth:`RaceGuard.end` with the token once the reply arrived. In between, the listener reports
what it heard: :meth:`RaceGuard.note` for the keys a push named, :meth:`RaceGuard.flush` for
"drop everything" (FLUSHALL, listener lost or re-established). ``end`` answers how many
invalidations of the key were noted in between (a reader may fill process memory only when it
is 0; a writer learns whether the echo of its own write already arrived), or None when a flush
happened in between or the listener is not trusted.

Cost: a dict entry per key with a command in flight (removed when the last one ends), so a key
that is not in flight costs nothing when a push names it. No I/O, no clock, no asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RaceGuard", "Token"]

#: ``(generation, invalidations of the key noted before begin)``: what :meth:`RaceGuard.end` needs
Token = tuple[int, int]


class RaceGuard:
    """Begin/end bookkeeping of commands in flight, per key (see module docs)."""

    __slots__ = ("_pending", "generation")

    def __init__(self) -> None:
        #: bumped by every :meth:`flush`: a token of an older generation can never fill
        self.generation = 0
        self._pending: dict[str, list[int]] = {}  # key -> [commands in flight, invalidations]

    def begin(self, key: str) -> Token:
        """Note that a command on ``key`` is about to be sent; pass the token to :meth:`end`."""
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = [0, 0]
        entry[0] += 1
        return self.generation, entry[1]

    def end(self, key: str, token: Token, *, trusted: bool) -> int | None:
        """End a command begun with :meth:`begin`.

        Returns how many invalidations of ``key`` were noted in between, or ``None`` when
        process memory may not be filled at all (a flush happened, the listener is not
        ``trusted``, or ``key`` has no command in flight).
        """
        entry = self._pending.get(key)
        if entry is None:
            return None
        seen = entry[1] - token[1]
        entry[0] -= 1
        if entry[0] <= 0:
            del self._pending[key]
        if not trusted or token[0] != self.generation:
            return None
        return seen

    def note(self, keys: Iterable[str]) -> None:
        """A push named ``keys``: count it for every command on them still in flight."""
        pending = self._pending
        for k in keys:
            entry = pending.get(k)
            if entry is not None:
                entry[1] += 1

    def flush(self) -> None:
        """Everything may have changed: no command begun before now may fill memory."""
        self.generation += 1

    def in_flight(self, key: str) -> int:
        """How many commands on ``key`` are between :meth:`begin` and :meth:`end`."""
        entry = self._pending.get(key)
        return 0 if entry is None else entry[0]

    def __len__(self) -> int:
        """Keys with a command in flight."""
        return len(self._pending)
