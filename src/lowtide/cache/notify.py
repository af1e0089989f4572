"""When a write must tell the fleet, in pub/sub backplane mode (pure: no I/O).

With CLIENT TRACKING the server tells every process about every write, for free. On the pub/sub
backplane every message is a billed PUBLISH, so a writer sends one only when another process
may hold something the write makes wrong. It can tell from what its write replaced, which the
write itself returns at no extra command (``SET ... GET``, ``GETDEL``):

* **nothing** (the key was absent): a *fill* (``get_or_load`` storing what its loader returned,
  ``SET NX``) tells no one: every copy in any process's memory came from a Redis copy and is
  never fresh past that copy's expiry, and every removal of a Redis copy by a lowtide writer
  was itself announced, so no copy of an earlier value can be live. A process may remember the
  *absence* (a ``get`` that found nothing): it keeps answering None for at most
  ``min(ttl, max_staleness)`` after the fill, which the staleness bound allows (a reader using
  ``get_or_load`` loads and gets the value). An explicit ``set`` of an absent key does tell
  the fleet, since such a remembered absence may be control state (a breaker that is not open,
  a limiter without a penalty) whose change must reach every process at once; a ``delete`` of
  an absent key changes nothing and tells no one;
* **the same bytes** the write stores: copies elsewhere are still right (they expire with the
  old copy's expiry and are read again);
* **a value marked "no copies"** (see :mod:`lowtide.cache.envelope`): nobody holds one;
* **anything else** (a different value that copies may exist of, or a reply that is not a
  well-formed envelope): one PUBLISH.

What lowtide cannot see is left to the staleness bound, as writes by other programs already
are in this mode: a Redis copy removed behind its back (eviction under ``maxmemory``, a foreign
``DEL``, ``FLUSHALL``) lets copies of it live on for at most ``min(ttl, max_staleness)``.
"""

from __future__ import annotations

import enum

from lowtide.cache.envelope import copies_allowed, same_payload

__all__ = ["Replaced", "notifies", "replaced"]


class Replaced(enum.Enum):
    """What a write replaced, as far as the fleet's copies are concerned."""

    #: the key held nothing
    ABSENT = "absent"
    #: the same bytes as written now
    SAME = "same"
    #: a value nobody may keep a copy of, different from the new one
    PRIVATE = "private"
    #: a value copies may exist of, different from the new one (or not lowtide's)
    SHARED = "shared"


def replaced(old: object, payload: bytes | None) -> Replaced:
    """Classify the reply of ``SET ... GET`` or ``GETDEL`` (``old``) for a write of ``payload``
    (codec bytes; None for a delete). Anything but bytes or None reads as :attr:`SHARED`, the
    safe side."""
    if old is None:
        return Replaced.ABSENT
    if not isinstance(old, bytes):
        return Replaced.SHARED
    if payload is not None and same_payload(old, payload):
        return Replaced.SAME
    return Replaced.SHARED if copies_allowed(old) else Replaced.PRIVATE


def notifies(what: Replaced, *, delete: bool = False) -> bool:
    """True if a write that replaced ``what`` must PUBLISH (see module docs); ``delete`` for
    a delete (an absent key stays absent: nothing to tell)."""
    if what is Replaced.SHARED:
        return True
    return what is Replaced.ABSENT and not delete
