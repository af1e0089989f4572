"""The CLI's self-test reconciles on a real server, embedded or given by URL."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lowtide.cli.main import app
from lowtide.testing import ValkeyServer

runner = CliRunner()


def test_selftest_against_a_url_reconciles(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    out = tmp_path / "selftest.json"
    result = runner.invoke(app, ["selftest", "--url", lowtide_fresh_server.url, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "reconciled" in result.output
    data = json.loads(out.read_text())
    assert data["reconciled"] is True
    assert data["ledger"] == data["server"]
    assert data["ledger"]["get"] > 100
    assert data["billed_upstash"] > 0


def test_selftest_starts_an_embedded_server() -> None:
    result = runner.invoke(app, ["selftest"])
    assert result.exit_code == 0, result.output
    assert "started embedded Valkey" in result.output


def test_selftest_reports_unreachable_server() -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    result = runner.invoke(app, ["selftest", "--url", url])
    assert result.exit_code == 2
    assert "cannot reach" in result.output


def test_selftest_rejects_bad_url() -> None:
    result = runner.invoke(app, ["selftest", "--url", "http://user:pw123@nope"])
    assert result.exit_code == 2
    assert "unsupported scheme" in result.output
    assert "pw123" not in result.output
