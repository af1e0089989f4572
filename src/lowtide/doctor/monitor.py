"""Parsing MONITOR output, including what redis-faina drops: Lua, IPv6 and unix-socket lines.

A MONITOR line looks like::

    1700000000.123456 [0 127.0.0.1:52102] "GET" "quota:t1:used"
    1700000000.123999 [0 [::1]:52102] "SET" "k" "v"
    1700000000.124100 [0 unix:/tmp/redis.sock] "PING"
    1700000000.124200 [0 lua] "INCRBY" "lt:r:hubspot:t1:w1" "4"

Arguments are double-quoted with backslash escapes (``\\"``, ``\\\\``, ``\\n``, ``\\xNN``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Command", "parse_line", "parse_lines", "split_args"]

_LINE = re.compile(r"^\+?(?P<ts>\d+(?:\.\d+)?) \[(?P<db>\d+) (?P<client>.*?)\] (?P<args>\".*)$")
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


def parse_line(line: str) -> Command | None:
    """The command on one MONITOR line, or None for anything else (``OK``, blank lines)."""
    m = _LINE.match(line.strip())
    if not m:
        return None
    args = split_args(m.group("args"))
    if not args:
        return None
    return Command(
        float(m.group("ts")),
        int(m.group("db")),
        m.group("client"),
        args[0].lower(),
        tuple(args[1:]),
    )


def parse_lines(lines: Iterable[str]) -> Iterator[Command]:
    """Every command in ``lines`` (other lines skipped)."""
    for line in lines:
        cmd = parse_line(line)
        if cmd is not None:
            yield cmd
