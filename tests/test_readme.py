"""The README's Quickstart, executed verbatim against a real server: it runs, and every command
count its comments state is what the ledger and the server count."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

import lowtide
from lowtide.testing import ValkeyServer, changes, server_commands

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the Quickstart has a python block"
    return match.group(1)


def test_the_quickstart_runs_as_written_and_its_counts_are_true(
    lowtide_fresh_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOWTIDE_REDIS_URL", lowtide_fresh_server.url)
    hubs: list[lowtide.Lowtide] = []
    original = lowtide.Lowtide.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls: type[lowtide.Lowtide], *args: Any, **kwargs: Any) -> lowtide.Lowtide:
        hub = original(cls, *args, **kwargs)
        hubs.append(hub)  # keep the hub to read its ledger after the run
        return hub

    monkeypatch.setattr(lowtide.Lowtide, "from_env", classmethod(from_env))
    before = server_commands(lowtide_fresh_server)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(quickstart(), str(README), "exec"), {"__name__": "__main__"})
    (hub,) = hubs
    snap = hub.ledger.snapshot()
    by_family: dict[str, dict[str, int]] = {}
    for row in snap.rows:
        fam = by_family.setdefault(row.family, {})
        fam[row.command] = fam.get(row.command, 0) + row.count
    # get_or_load: 1 GET, the loader, 1 SET; the first get at most 1 GET; the second 0
    profiles = by_family["lt:c:profiles:*"]
    assert profiles["set"] == 1
    assert profiles["get"] in (1, 2)
    assert set(profiles) == {"get", "set"}
    # remember: 1 SET; resolve right after: at most 1 GET
    tenants = by_family["lt:t:slack:*"]
    assert tenants["set"] == 1
    assert tenants.get("get", 0) <= 1
    assert set(tenants) <= {"get", "set"}
    assert "tenant-1" in out.getvalue()
    # the ledger is what the server counted, command by command
    server = changes(before, server_commands(lowtide_fresh_server), minus={"info": 1})
    assert server == snap.by_command
