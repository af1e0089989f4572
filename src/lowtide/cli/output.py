"""Printing untrusted strings for the CLI.

Key names, tenant ids, key families, instance names, modes, reasons and error messages come from
Redis, from MONITOR or from other processes: the CLI never lets rich read them as markup
(``acme[/eu]``, ``flags:[/red]``) or emoji codes (``lt:x:selftest:*``, ``user:id:*``). They are
printed as :class:`rich.text.Text`, character for character, except that control and
bidirectional-override characters are shown escaped (``\\x1b``, ``\\u202e``), so a value can
neither drive the terminal nor forge a line, and a value longer than :data:`MAX_CELL` characters
is cut (its length is shown).

(Fleet-view snapshots are checked field by field where they are read:
:func:`lowtide.fleetview.parse_snapshot`.)
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

__all__ = ["MAX_CELL", "cell", "printable"]

#: longest untrusted value printed whole (tenant ids are at most 256 characters)
MAX_CELL: Final = 512
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
    """An untrusted value as literal text: never markup, never emoji codes, and in a narrow
    table column folded over lines rather than cut with an ellipsis (a key is shown whole)."""
    return Text(printable(value), style=style, overflow="fold")
