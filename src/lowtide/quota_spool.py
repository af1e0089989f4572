"""The quota spool: a JSON file where a process keeps the counts the fleet may not have yet.

Shape: ``{"period": "day", "pending": [{"index": n, "source": name, "counts": {tenant: n}}]}``,
written atomically (a temporary file renamed over the old one). The file is local, but it is
still checked on reading: an entry is used only if its index is an int, its source a short
string and its counts positive ints keyed by tenant ids lowtide accepts; anything else is
skipped, so a damaged file never stops a process from starting or flushing.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from lowtide.errors import InvalidKeyError
from lowtide.keys import check_tenant_id

__all__ = ["Orphan", "read_spool", "write_spool"]

log = logging.getLogger("lowtide.quotas")
#: counts of an earlier process still to report: (period index, source, tenant -> units)
Orphan = tuple[int, str, dict[str, int]]
_MAX_SOURCE = 200


def _tenant(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        check_tenant_id(value)
    except InvalidKeyError:
        return False
    return True


def _counts(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {
        t: n
        for t, n in raw.items()
        if _tenant(t) and isinstance(n, int) and not isinstance(n, bool) and n > 0
    }


def read_spool(path: Path, index: int) -> list[Orphan]:
    """The entries of the spool at ``path`` (none if it is absent or unreadable); ``index`` is
    the current period's, for files written before absolute counts."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("could not read the quota spool %s: %s", path, exc)
        return []
    if not isinstance(data, dict):
        return []
    out: list[Orphan] = []
    entries = data.get("pending")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        idx, source = entry.get("index"), entry.get("source")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            continue
        if not isinstance(source, str) or not 0 < len(source) <= _MAX_SOURCE:
            continue
        counts = _counts(entry.get("counts"))
        if counts:
            out.append((idx, source, counts))
    # files written before absolute counts: {"unflushed": {tenant: units}}
    legacy = _counts(data.get("unflushed"))
    if legacy:
        out.append((index, f"spool.{secrets.token_hex(4)}", legacy))
    return out


def write_spool(path: Path, period: str, pending: list[dict[str, Any]]) -> bool:
    """Write ``pending`` to ``path`` (remove the file when nothing is pending); False (logged)
    if the file could not be written."""
    try:
        if pending:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"period": period, "pending": pending}))
            tmp.replace(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not write the quota spool %s: %s", path, exc)
        return False
    return True
