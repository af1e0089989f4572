"""Printing untrusted strings, and reading fleet-view snapshots defensively, for the CLI.

Key names, tenant ids, key families, instance names, modes, reasons and error messages come from
Redis, from MONITOR or from other processes: the CLI never lets rich read them as markup
(``acme[/eu]``, ``flags:[/red]``) or emoji codes (``lt:x:selftest:*``, ``user:id:*``). They are
printed as :class:`rich.text.Text`, character for character, except that control and
bidirectional-override characters are shown escaped (``\\x1b``, ``\\u202e``), so a value can
neither drive the terminal nor forge a line, and a value longer than :data:`MAX_CELL` characters
is cut (its length is shown).

A fleet-view snapshot is checked field by field before use (:func:`parse_snapshot`); one that
does not fit is skipped and counted by the caller, never fatal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from rich.text import Text

__all__ = ["MAX_CELL", "FleetSnapshot", "cell", "parse_snapshot", "printable"]

#: longest untrusted value printed whole (tenant ids are at most 256 characters)
MAX_CELL: Final = 512
#: most entries read from one of a snapshot's tables (hubs publish at most 20 per dimension)
MAX_ENTRIES: Final = 1_000
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, limit: int = MAX_CELL) -> str:
    """``value`` as text with control characters escaped, cut after ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text):,} characters)"
    return _UNSAFE.sub(_escape, text)


def cell(value: object, style: str = "") -> Text:
    """An untrusted value as literal text: never markup, never emoji codes."""
    return Text(printable(value), style=style)


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """One hub's published snapshot (see :func:`lowtide.fleetview.snapshot_payload`), checked:
    every field has its type, numbers are finite and not negative, tables are flat and small."""

    instance: str
    provider: str
    mode: str
    at: float
    elapsed_s: float
    commands: float
    billed: float
    per_day: float
    billed_per_day: float
    usd_per_month: float
    by_component: dict[str, float]
    by_command: dict[str, float]
    by_family: dict[str, float]
    by_tenant: dict[str, float]
    saved: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The checked fields under their published names (what ``top --json`` writes)."""
        return {name: getattr(self, name) for name in self.__slots__}


class _Malformed(Exception):
    pass


def _number(raw: dict[str, Any], name: str, default: float = 0.0) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(name)
    try:
        as_float = float(value)
    except OverflowError:  # an int too large for a float
        raise _Malformed(name) from None
    if not math.isfinite(as_float) or as_float < 0:
        raise _Malformed(name)
    return value


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name, "?")
    if not isinstance(value, str):
        raise _Malformed(name)
    return value


def _table(raw: dict[str, Any], name: str) -> dict[str, float]:
    value = raw.get(name, {})
    if not isinstance(value, dict) or len(value) > MAX_ENTRIES:
        raise _Malformed(name)
    return {str(k): _number(value, k) for k in value}


def parse_snapshot(raw: object) -> FleetSnapshot | None:
    """The snapshot ``raw`` (decoded JSON) describes, or None when it is malformed.

    A missing field reads as ``?``, 0 or empty (older hubs); a field of the wrong type, a
    negative or non-finite number, or a table of more than :data:`MAX_ENTRIES` entries makes
    the whole snapshot malformed. Fields not listed are ignored.
    """
    if not isinstance(raw, dict):
        return None
    try:
        return FleetSnapshot(
            instance=_text(raw, "instance"),
            provider=_text(raw, "provider"),
            mode=_text(raw, "mode"),
            at=_number(raw, "at"),
            elapsed_s=_number(raw, "elapsed_s", 1.0),
            commands=_number(raw, "commands"),
            billed=_number(raw, "billed"),
            per_day=_number(raw, "per_day"),
            billed_per_day=_number(raw, "billed_per_day"),
            usd_per_month=_number(raw, "usd_per_month"),
            by_component=_table(raw, "by_component"),
            by_command=_table(raw, "by_command"),
            by_family=_table(raw, "by_family"),
            by_tenant=_table(raw, "by_tenant"),
            saved=_table(raw, "saved"),
        )
    except _Malformed:
        return None
