"""``lowtide top`` and ``lowtide doctor`` on hostile names and malformed data, on real servers.

Tenant ids, instance names and keys that look like rich markup (``acme[/eu]``, ``flags:[/red]``)
or emoji codes (``lt:x:selftest:*``, ``user:id:*``) print verbatim through the real command in
a real terminal 80 and 40 columns wide (in a narrow column a key folds over lines, never cut);
malformed snapshots and MONITOR lines are skipped and counted; ``--json`` files are written
before anything is printed.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import lowtide.cli.doctor
from lowtide import Lowtide
from lowtide.cli.main import app
from lowtide.cli.top import fleet_tables, read_view
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer
from tests.terminal import column, run_in_terminal

EMOJI = ("❌", "🆔", "🅱", "👍")
INSTANCE = "w:x:[/1]"
TENANT = "acme[/eu]"
JUNK = {
    "list": "[1,2]",  # JSON, not an object
    "text": "not json",
    "fields": '{"instance": "junk-fields", "per_day": "lots"}',
    "null": '{"instance": "junk-null", "billed": null}',  # (a projection may be null)
    "deep": "[" * 100_000 + "]" * 100_000,
}


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "80"})


def render(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(renderable)
    return out.getvalue()


async def test_top_shows_a_hostile_tenant_verbatim_and_skips_malformed_snapshots(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    server = lowtide_fresh_server
    async with Lowtide(server.url, instance=INSTANCE, fleet_view=True) as hub:
        assert await hub.ready()
        cache = hub.cache("profiles")
        await cache.set("k", 1, tenant=TENANT)
        await cache.get("k", tenant=TENANT)
        assert hub.ledger.billed_by_tenant()[TENANT] >= 1
        assert hub.publisher is not None
        await hub.publisher.publish()
        for name, value in JUNK.items():  # what anyone who can write the namespace can plant
            server.command("SET", f"lt:m:snap::{name}", value)

        async with Lowtide(server.url, instance="reader") as reader:
            view = await read_view(reader, "lt")
        assert view.skipped == len(JUNK)
        text = render(fleet_tables(view))
        assert INSTANCE in text
        assert TENANT in text
        assert "1 hub(s) publishing" in text
        assert "junk-" not in text
        assert f"{len(JUNK)} malformed snapshot(s) skipped" in text

        out = tmp_path / "fleet.json"
        result = await asyncio.to_thread(
            invoke, ["top", "--url", server.url, "--once", "--json", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert INSTANCE in result.output
        assert TENANT in result.output
        assert not any(e in result.output for e in EMOJI)
        written = json.loads(out.read_text())
        assert [s["instance"] for s in written] == [INSTANCE]
        assert written[0]["by_tenant"][TENANT] >= 1

        for width in (80, 40):  # the real command in a real terminal
            rc, shown = await asyncio.to_thread(
                run_in_terminal, ["top", "--url", server.url, "--once"], width
            )
            assert rc == 0, shown
            assert column(shown, "publishing", 0) == [INSTANCE]
            assert TENANT in column(shown, "by tenant", 0)
            assert not any(e in shown for e in EMOJI)
            assert max(map(len, shown.splitlines())) <= width


MONITOR_LOG = "\n".join(
    [
        "OK",
        *(
            f'1700000000.{i:06d} [0 127.0.0.1:5000{i % 3}] "{cmd}" "{key}"'
            for i, (cmd, key) in enumerate(
                [
                    ("GET", "flags:[/red]"),
                    ("GET", "lt:x:selftest:1"),
                    ("GET", "user:id:123"),
                    ("GET", "room:[bold]:x"),
                    ("GET", "lt:b:crm:42"),
                    ("SET", "flags:[/red]"),
                ]
                * 3
            )
        ),
        "1700000001.000000 [" + "7" * 5000 + ' 127.0.0.1:50000] "GET" "digits"',
        "a line that is not MONITOR output",
        '1700000001.100000 [0 127.0.0.1:50000] "GET" "user:id:124"',
        "",
    ]
)
FAMILIES = ("flags:[/red]", "lt:x:selftest:*", "user:id:*", "room:[bold]:x", "lt:b:crm:*")


def test_doctor_log_with_hostile_keys_prints_them_verbatim_and_counts_bad_lines(
    tmp_path: Path,
) -> None:
    log = tmp_path / "monitor.log"
    log.write_text(MONITOR_LOG)
    out = tmp_path / "doctor.json"
    result = invoke(["doctor", "--monitor-log", str(log), "--json", str(out)])
    assert result.exit_code == 0, result.output
    for family in FAMILIES:
        assert family in result.output
    assert not any(e in result.output for e in EMOJI)
    assert "2 malformed MONITOR line(s) skipped" in result.output
    report = json.loads(out.read_text())
    assert report["skipped_lines"] == 2
    assert report["commands"] == 19
    assert {f["family"] for f in report["families"]} == set(FAMILIES)
    expected = [(f["family"], f["command"]) for f in report["families"]]
    for width in (80, 40):  # the real command in a real terminal
        out.unlink()
        rc, shown = run_in_terminal(
            ["doctor", "--monitor-log", str(log), "--json", str(out)], width
        )
        assert rc == 0, shown
        title = "Where the commands come from"
        assert list(zip(column(shown, title, 0), column(shown, title, 1), strict=True)) == expected
        assert column(shown, "Findings", 1, starts=0) == ["flags:[/red]"]
        assert not any(e in shown for e in EMOJI)
        assert max(map(len, shown.splitlines())) <= width
        assert json.loads(out.read_text())["families"] == report["families"]


def test_doctor_writes_its_json_before_printing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "monitor.log"
    log.write_text(MONITOR_LOG)
    out = tmp_path / "doctor.json"

    def broken_terminal(report: object) -> None:
        raise OSError("the terminal went away")

    monkeypatch.setattr(lowtide.cli.doctor, "render_report", broken_terminal)
    result = invoke(["doctor", "--monitor-log", str(log), "--json", str(out)])
    assert result.exit_code != 0
    assert json.loads(out.read_text())["skipped_lines"] == 2


async def test_doctor_on_a_live_server_prints_hostile_keys_verbatim(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    url = lowtide_fresh_server.url
    done = asyncio.Event()

    async def traffic() -> None:
        r = plain_client(url)
        while not done.is_set():
            for key in ("flags:[/red]", "lt:x:selftest:1", "user:id:123", "room:[bold]:x"):
                await r.get(key)
            await asyncio.sleep(0.02)
        await r.aclose()

    task = asyncio.create_task(traffic())
    out = tmp_path / "doctor.json"
    try:
        result = await asyncio.to_thread(
            invoke, ["doctor", "--url", url, "--seconds", "1.5", "--json", str(out)]
        )
    finally:
        done.set()
        await task
    assert result.exit_code == 0, result.output
    for family in ("flags:[/red]", "lt:x:selftest:*", "user:id:*", "room:[bold]:x"):
        assert family in result.output
    assert not any(e in result.output for e in EMOJI)
    assert json.loads(out.read_text())["skipped_lines"] == 0
