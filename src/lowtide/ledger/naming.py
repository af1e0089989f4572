"""Command names in the server's own naming (``get``, ``client|tracking``).

The same names INFO commandstats uses, so ledger and server can be compared key by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["CONTAINER_COMMANDS", "command_name", "known_name"]

#: commands whose first argument is a subcommand; INFO commandstats reports them as ``cmd|sub``
CONTAINER_COMMANDS: Final[frozenset[str]] = frozenset(
    {
        "acl",
        "client",
        "cluster",
        "command",
        "commandlog",
        "config",
        "function",
        "hotkeys",
        "latency",
        "memory",
        "module",
        "object",
        "pubsub",
        "script",
        "slowlog",
        "xgroup",
        "xinfo",
    }
)

_simple_cache: dict[object, str] = {}
#: ``known_name(args[0])``: the name of a command without a subcommand that
#: :func:`command_name` has named before, else None. One dict lookup and no Python frame, for
#: the counting connection's hot path (``known_name(args[0]) or command_name(args)``).
known_name: Final = _simple_cache.get


def _text(arg: object) -> str:
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg).decode("utf-8", "replace")
    return str(arg)


def command_name(args: Sequence[object]) -> str:
    """Name the command ``args`` would run, as the server counts it.

    >>> command_name(("GET", "k"))
    'get'
    >>> command_name(("CLIENT TRACKING", "ON"))
    'client|tracking'
    >>> command_name((b"CONFIG", b"GET", b"maxmemory"))
    'config|get'
    """
    first = args[0]
    cached = _simple_cache.get(first)
    if cached is not None:
        return cached
    words = _text(first).split()
    if not words:
        return ""
    cmd = words[0].lower()
    if cmd in CONTAINER_COMMANDS:
        sub: object | None = words[1] if len(words) > 1 else (args[1] if len(args) > 1 else None)
        if sub is None:
            return cmd
        return f"{cmd}|{_text(sub).lower()}"
    if len(_simple_cache) < 4096:
        _simple_cache[first] = cmd
    return cmd
