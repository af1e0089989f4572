"""Parsing MONITOR output, including what redis-faina drops: Lua, IPv6 and unix-socket lines.

A MONITOR line looks like::

    1700000000.123456 [0 127.0.0.1:52102] "GET" "quota:t1:used"
    1700000000.123999 [0 [::1]:52102] "SET" "k" "v"
    1700000000.124100 [0 unix:/tmp/redis.sock] "PING"
    1700000000.124200 [0 lua] "INCRBY" "lt:r:hubspot:t1:w1" "4"

Arguments are double-quoted with backslash escapes (``\\"``, ``\\\\``, ``\\n``, ``\\xNN``).

The input is untrusted (a saved log, or whatever a server sends): parsing never raises, takes
time linear in the line, and a line that looks like neither a command nor MONITOR's ``OK`` is
skipped and counted (:class:`ParseStats`), never fatal. Numbers are bounded before they are
converted (a db field of 5,000 digits is a bad line, not Python's int() digit-limit error).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["Command", "ParseStats", "parse_line", "parse_lines", "split_args"]

# ASCII digits only, bounded lengths, no nested quantifiers: a linear match whatever the input
_LINE = re.compile(
    r"\+?(?P<ts>[0-9]{1,20}(?:\.[0-9]{1,20})?) "
    r"\[(?P<db>[0-9]{1,20}) (?P<client>\[[0-9A-Za-z:.%]{0,64}\]:[0-9]{1,10}|[^\]]{0,1024})\] "
    r"(?P<args>\".*)",
    re.DOTALL,
)
_IGNORED = frozenset({"", "OK", "+OK"})
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


@dataclass(frozen=True, slots=True)
class Command:
    """One command the server executed."""

    ts: float
    db: int
    client: str  # "127.0.0.1:52102", "[::1]:52102", "unix:/tmp/redis.sock" or "lua"
    name: str  # lower case, e.g. "get"
    args: tuple[str, ...]

    @property
    def key(self) -> str | None:
        """The first key argument, when the command has one."""
        return self.args[0] if self.args else None


def split_args(text: str) -> list[str]:
    """Split MONITOR's quoted argument list."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != '"':
            i += 1
            continue
        i += 1
        buf: list[str] = []
        while i < n and text[i] != '"':
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if nxt == "x" and i + 3 < n:
                    try:
                        buf.append(chr(int(text[i + 2 : i + 4], 16)))
                        i += 4
                        continue
                    except ValueError:
                        pass
                buf.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            buf.append(ch)
            i += 1
        out.append("".join(buf))
        i += 1
    return out


@dataclass(slots=True)
class ParseStats:
    """What :func:`parse_lines` read: lines, commands, and lines skipped as malformed."""

    lines: int = 0
    commands: int = 0
    skipped: int = 0
    #: the first few skipped lines (cut to 200 characters), to show what was wrong
    examples: list[str] = field(default_factory=list)

    def skip(self, line: str) -> None:
        """Count one malformed line."""
        self.skipped += 1
        if len(self.examples) < 3:
            self.examples.append(line[:200])


def parse_line(line: str) -> Command | None:
    """The command on one MONITOR line, or None for anything else. Never raises."""
    m = _LINE.fullmatch(line.strip())
    if not m:
        return None
    args = split_args(m.group("args"))
    if not args or not args[0]:
        return None
    return Command(
        float(m.group("ts")),
        int(m.group("db")),
        m.group("client"),
        args[0].lower(),
        tuple(args[1:]),
    )


def parse_lines(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[Command]:
    """Every command in ``lines``: blank lines and ``OK`` are passed over, any other line that
    is not a command is skipped and counted in ``stats``."""
    for line in lines:
        cmd = parse_line(line)
        if stats is not None:
            stats.lines += 1
            if cmd is not None:
                stats.commands += 1
            elif line.strip() not in _IGNORED:
                stats.skip(line)
        if cmd is not None:
            yield cmd
