"""Every python snippet of docs/dropin.md and of the "Decorator, tags and purges" section of
docs/cache.md runs as written against a real server."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from lowtide import Lowtide
from lowtide.testing import ValkeyServer, ledger_commands

DOCS = Path(__file__).resolve().parent.parent / "docs"


def snippets() -> list[tuple[str, str]]:
    out = []
    dropin = (DOCS / "dropin.md").read_text()
    cache = (DOCS / "cache.md").read_text()
    start = cache.index("## Decorator, tags and purges")
    section = cache[start : cache.index("\n## ", start + 10)]
    for where, text in (("dropin.md", dropin), ("cache.md", section)):
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            out.append((f"{where}#{i}", block))
    return out


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[w for w, _ in snippets()])
def test_the_snippet_runs_as_written(
    lowtide_fresh_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch, where: str, code: str
) -> None:
    monkeypatch.setenv("LOWTIDE_REDIS_URL", lowtide_fresh_server.url)
    hubs: list[Lowtide] = []
    start = Lowtide.start

    async def recording_start(self: Lowtide) -> None:
        hubs.append(self)
        await start(self)

    monkeypatch.setattr(Lowtide, "start", recording_start)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    assert out.getvalue()  # every snippet prints what it shows
    if where == "dropin.md#0":
        # what its comments say: 1 SET, the read after the write (1, or 2 when the write's
        # own push lands while the first read is in flight), then memory; 1 GET elsewhere
        (hub,) = hubs
        discovery = ledger_commands(hub, component="app", family="discovery:*")
        assert discovery["set"] == 1
        assert discovery["get"] in (1, 2)
        assert ledger_commands(hub, component="app", family="sessions:*") == {"get": 1}
