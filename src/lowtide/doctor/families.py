"""Key families: a key with its ids masked, so traffic groups by shape, not by tenant.

``quota:tenant-042:used`` -> ``quota:*:used``; ``discovery:slack:T024BE7LD`` ->
``discovery:slack:*``; lowtide's own keys (``lt:c:profiles:t1:user%3A42``) keep namespace,
component and name: ``lt:c:profiles:*``. A segment is an id when it holds a digit, is a UUID or
long hex string, or is longer than 24 characters.
"""

from __future__ import annotations

import re

from lowtide.errors import InvalidKeyError
from lowtide.keys import family as lowtide_family
from lowtide.keys import parse_key

__all__ = ["family_of"]

_HEX = re.compile(r"^[0-9a-fA-F-]{16,}$")
_SPLIT = re.compile(r"([:/|.{}])")


def _is_id(segment: str) -> bool:
    return any(c.isdigit() for c in segment) or bool(_HEX.match(segment)) or len(segment) > 24


def family_of(key: str) -> str:
    """The family of ``key`` (see module docs)."""
    try:
        parsed = parse_key(key)
    except (InvalidKeyError, ValueError):  # ValueError: a bad %-escape or bad UTF-8 in a segment
        parsed = None
    if parsed is not None:
        return lowtide_family(parsed.namespace, parsed.component, parsed.name)
    parts = _SPLIT.split(key)
    masked = [p if _SPLIT.fullmatch(p) or not p or not _is_id(p) else "*" for p in parts]
    out = "".join(masked)
    # collapse runs like "*:*" produced by composite ids
    while "*:*" in out:
        out = out.replace("*:*", "*")
    return out
