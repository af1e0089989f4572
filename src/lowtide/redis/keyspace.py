"""Keyspace notifications as an invalidation feed (pure: no I/O).

With ``notify-keyspace-events`` holding ``K`` and the event classes of the commands lowtide's
keys see, the server publishes ``<event>`` on ``__keyspace@<db>__:<key>`` for every change of
every key, by any client: one message per change (no merging), in the order the server applied
them, none for a write that changed nothing (a ``SET NX`` that found a value, a ``DEL`` of a
missing key). The listener subscribes to one pattern per tracked prefix.

What lowtide needs (:data:`REQUIRED_FLAGS`): ``K`` (keyspace channels), ``g`` (``DEL``,
``EXPIRE``, ``RENAME``...), ``$`` (``SET``), ``h`` (hashes: tag purges), ``x`` (expiry) and
``e`` (eviction). :func:`missing_flags` says what an existing setting lacks; lowtide adds it
and never removes a flag someone else set.

Events that change only a key's time to live (:data:`TTL_ONLY_EVENTS`: ``expire`` follows every
``SET ... PX``) are not invalidations: a copy's freshness is bounded by the life its writer gave
it, and the key's end arrives as ``expired`` or ``del``. Nor are ``new`` and ``keymiss``
(classes lowtide does not ask for: a key's creation comes with its own write event, a miss
changes nothing). Every other event is one invalidation.

What no event announces: ``FLUSHALL``, ``FLUSHDB`` and ``SWAPDB`` remove keys silently. The
fleet notices them through a sentinel key per server, shared by every process (see
:mod:`lowtide.invalidation.probes`): the ``expire`` events of that key are the one TTL-only
event the listener reports (:class:`Checked`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "REQUIRED_FLAGS",
    "TTL_ONLY_EVENTS",
    "Checked",
    "Expired",
    "channel_prefix",
    "missing_flags",
    "pattern",
]

#: the ``notify-keyspace-events`` classes keyspace invalidation needs
REQUIRED_FLAGS: Final = "Kg$hxe"
#: what the ``A`` flag stands for
_ALL: Final = "g$lshzxe"
#: events that change a key's time to live only (never its value)
TTL_ONLY_EVENTS: Final = frozenset({b"expire", b"persist"})
#: events that are no change of their own: ``new`` (class ``n``) comes with the write that
#: created the key, ``keymiss`` (class ``m``) is a read that found nothing. lowtide never
#: asks for either, but never removes a class someone else set.
_NOT_CHANGES: Final = TTL_ONLY_EVENTS | {b"new", b"keymiss"}
#: longest event name accepted from a message (Valkey's longest is under 20 bytes)
MAX_EVENT_BYTES: Final = 64


class Expired(list[str]):
    """The keys of an ``expired`` event: Redis removed a value whose life was over.

    It is never the message of a write a process is waiting for: a write on a key whose life is
    over but which Redis has not removed yet publishes ``expired`` (the old value's removal)
    *before* its own ``set``, and a value written later than ours cannot expire before its own
    ``set`` arrives. So a writer expecting its own message must not take an ``expired`` for it
    (:meth:`lowtide.cache.l1.L1.invalidate`); for everyone else it is an invalidation like any
    other (it is a ``list``)."""

    __slots__ = ()


class Checked(list[str]):
    """The key of a TTL-only event (``expire``) on a flush sentinel: some process of the fleet
    just checked that the sentinel is still there (see :mod:`lowtide.invalidation.probes`).
    Not an invalidation."""

    __slots__ = ()


def missing_flags(current: str) -> str:
    """The flags of :data:`REQUIRED_FLAGS` that the setting ``current`` lacks (``A`` counts
    as all the event classes it stands for)."""
    have = set(current)
    if "A" in have:
        have.update(_ALL)
    return "".join(f for f in REQUIRED_FLAGS if f not in have)


def channel_prefix(db: int) -> str:
    """The part of a keyspace channel before the key."""
    return f"__keyspace@{db}__:"


def pattern(db: int, key_prefix: str) -> str:
    """The PSUBSCRIBE pattern for every key under ``key_prefix`` (glob characters escaped)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in key_prefix)
    return f"{channel_prefix(db)}{escaped}*"


def is_invalidation(event: object) -> bool:
    """True if a keyspace message's payload (the event name) means the value may have
    changed; anything not a short byte string counts as a change (the safe side)."""
    if isinstance(event, bytes) and len(event) <= MAX_EVENT_BYTES:
        return event not in _NOT_CHANGES
    return True
