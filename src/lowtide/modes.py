"""The hub's modes and the record of how it got into the current one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["InvalidationMode", "Mode", "ModeChange"]


class Mode(StrEnum):
    """Where the hub keeps shared state right now."""

    #: Redis is in use: caches are shared, limits and breakers are fleet-wide
    DISTRIBUTED = "distributed"
    #: Redis was configured but is not answering; lowtide works on local state and reconnects
    DEGRADED = "degraded"
    #: switched off on purpose (env, ``suspend()`` or fleet-wide); no command is sent
    SUSPENDED = "suspended"
    #: no Redis configured (``url=None``): local state only
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class ModeChange:
    """One transition of the hub's mode."""

    old: Mode
    new: Mode
    #: why: ``start``, ``env``, ``runtime``, ``failure``, ``recovered``, ``resume``, ``close``
    reason: str
    #: wall-clock time of the change
    at: float
    detail: str = ""


class InvalidationMode(StrEnum):
    """How process memory learns about writes."""

    TRACKING = "tracking"  # CLIENT TRACKING BCAST pushes (any writer, no extra commands)
    PUBSUB = "pubsub"  # backplane: lowtide writers PUBLISH changed keys (+1 command per write)
    KEYSPACE = "keyspace"  # keyspace notifications: the server publishes every writer's changes
    TTL = "ttl"  # no push by choice: entries live at most max_staleness
    OFF = "off"  # not established (yet): callers must bypass process memory
