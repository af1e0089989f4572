"""``lowtide demo`` end to end on a real server with real processes (short run)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lowtide.cli.main import app
from lowtide.testing import ValkeyServer


def test_demo_runs_three_strategies_and_writes_json_and_chart(
    lowtide_server: ValkeyServer, tmp_path: Path
) -> None:
    out, chart = tmp_path / "demo.json", tmp_path / "demo.png"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--url",
            lowtide_server.url,
            "--seconds",
            "4",
            "--warmup",
            "120",
            "--machines",
            "2",
            "--json",
            str(out),
            "--chart",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["strategies"]) == {"naive", "ttl-fix", "lowtide"}
    for s in data["strategies"].values():
        for field in (
            "gets_per_day",
            "billed_per_day",
            "usd_per_month",
            "hit_ratio",
            "stale_reads",
            "stale_beyond_bound",
            "max_staleness_s",
            "p99_staleness_s",
            "overshoot",
        ):
            assert field in s
    naive, lowtide = data["strategies"]["naive"], data["strategies"]["lowtide"]
    assert naive["gets_per_day"] > 0
    assert lowtide["billed_per_day"] < naive["billed_per_day"]
    assert lowtide["overshoot"] == 0
    assert lowtide["stale_beyond_bound"] == 0
    assert data["lower_bound_per_day"] > 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reduction vs" in result.output
    # the demo cleans up its keys on a server it did not start
    assert lowtide_server.command("KEYS", "ltdemo*") == []
