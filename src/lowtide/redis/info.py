"""Parsing ``INFO`` replies (the server's own view of what it was sent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["parse_commandstats", "parse_info"]


def parse_info(text: str | bytes) -> dict[str, str]:
    """``{field: value}`` of an INFO reply (section headers and blank lines skipped)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def parse_commandstats(text: str | bytes | Mapping[str, Any]) -> dict[str, int]:
    """``{command: calls + rejected_calls}`` from an ``INFO commandstats`` reply.

    Command names are the server's (``get``, ``client|tracking``); rejected calls (wrong arity,
    ACL, OOM...) are counted because the server received them and providers bill them.
    """
    out: dict[str, int] = {}
    # redis-py parses INFO replies itself (a dict of dicts); raw replies are text
    items = text.items() if isinstance(text, Mapping) else parse_info(text).items()
    for k, v in items:
        if not k.startswith("cmdstat_"):
            continue
        if isinstance(v, Mapping):
            fields = v
        else:
            fields = dict(item.split("=", 1) for item in v.split(",") if "=" in item)
        out[k[len("cmdstat_") :]] = int(fields.get("calls", 0)) + int(
            fields.get("rejected_calls", 0)
        )
    return out
