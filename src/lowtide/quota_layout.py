"""Where quota usage lives in Redis, and how its replies are read (pure: no I/O).

Two hashes per period (``<index>`` counts periods since the UTC epoch)::

    <ns>:q:usage::<period>.<index>.<source>    one per process: tenant -> its absolute units
    <ns>:q:usage::<period>.<index>             the period's directory: "s:<source>" -> 1 for
                                               every process that reported, "n:<tenant>" -> 1
                                               for every tenant seen near its plan

so one ``HSET`` reports every tenant a process served (one command per flush, whatever the
number of tenants), and the fleet's total for a tenant is the sum of its field over the
processes the directory lists (one ``HMGET`` per process, read only when needed).

Everything read back is untrusted (anyone with write access to the namespace can plant
fields): a directory entry is used only if it is valid UTF-8 of bounded length with a known
prefix, at most :data:`MAX_SOURCES` processes are read, and a count is used only if it is a
decimal integer in ``[0, MAX_UNITS]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from lowtide.keys import MAX_KEY_LENGTH, build_key

__all__ = [
    "MAX_SOURCES",
    "MAX_UNITS",
    "Directory",
    "directory_key",
    "parse_count",
    "parse_directory",
    "usage_key",
]

#: the most processes a directory is read for in one period (more entries are ignored)
MAX_SOURCES: Final = 10_000
#: the largest count believed for one tenant in one process's hash
MAX_UNITS: Final = 10**15
_SOURCE = "s:"
_NEAR = "n:"


def directory_key(namespace: str, period: str, index: int) -> str:
    """The period's directory hash (processes that reported, tenants near their plan)."""
    return build_key(namespace, "quota", "usage", None, f"{period}.{index}")


def usage_key(namespace: str, period: str, index: int, source: str) -> str:
    """One process's usage hash for one period (tenant -> absolute units)."""
    return build_key(namespace, "quota", "usage", None, f"{period}.{index}.{source}")


def source_field(source: str) -> str:
    """The directory field that says ``source`` reported this period."""
    return _SOURCE + source


def near_field(tenant: str) -> str:
    """The directory field that says ``tenant`` is near its plan this period."""
    return _NEAR + tenant


@dataclass(slots=True)
class Directory:
    """A directory hash as read: the processes that reported and the tenants near a plan."""

    sources: list[str] = field(default_factory=list)
    near: set[str] = field(default_factory=set)
    #: entries that were not understood (ignored)
    bad: int = 0


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not 2 < len(value) <= MAX_KEY_LENGTH:
        return None
    return value


def parse_directory(reply: object) -> Directory:
    """A directory from an ``HKEYS`` reply (anything else: an empty directory, counted bad)."""
    out = Directory()
    if not isinstance(reply, list):
        out.bad += reply is not None
        return out
    for raw in reply:
        text = _text(raw)
        if text is None:
            out.bad += 1
        elif text.startswith(_SOURCE):
            if len(out.sources) < MAX_SOURCES:
                out.sources.append(text[len(_SOURCE) :])
            else:
                out.bad += 1
        elif text.startswith(_NEAR):
            out.near.add(text[len(_NEAR) :])
        else:
            out.bad += 1
    return out


def parse_count(value: object) -> int | None:
    """A count from an ``HMGET`` value (None: absent, 0); None also for anything that is not a
    count in ``[0, MAX_UNITS]`` (the caller counts those as bad)."""
    if value is None:
        return 0
    if isinstance(value, bytes):
        if not value.isdigit() or len(value) > 16:
            return None
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UNITS:
        return value
    return None


def sum_counts(rows: Iterable[object], tenants: list[str]) -> tuple[dict[str, int], int]:
    """Per-tenant totals from ``HMGET`` replies (one row per process, one value per tenant,
    in ``tenants`` order); returns the totals and how many values were not counts."""
    totals = dict.fromkeys(tenants, 0)
    bad = 0
    for row in rows:
        if not isinstance(row, list) or len(row) != len(tenants):
            bad += 1
            continue
        for tenant, value in zip(tenants, row, strict=True):
            n = parse_count(value)
            if n is None:
                bad += 1
            else:
                totals[tenant] += n
    return totals, bad
