"""``lowtide demo`` end to end on a real server with real processes (a short, compressed run)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lowtide.cli.main import app
from lowtide.testing import ValkeyServer

SMALL = ["--seconds", "60", "--warmup", "30", "--speedup", "30", "--machines", "2"]


def test_demo_runs_every_strategy_in_both_modes_and_writes_json_and_chart(
    lowtide_server: ValkeyServer, tmp_path: Path
) -> None:
    out, chart = tmp_path / "demo.json", tmp_path / "demo.png"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--url",
            lowtide_server.url,
            *SMALL,
            "--dropin",
            "--invalidation",
            "all",
            "--json",
            str(out),
            "--chart",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    runs = {"naive", "ttl-fix", "dropin", "lowtide/tracking", "lowtide/keyspace", "lowtide/pubsub"}
    assert set(data["strategies"]) == runs
    assert data["config"]["speedup"] == 30
    for s in data["strategies"].values():
        for field in (
            "gets_per_day",
            "billed_per_day",
            "usd_per_month",
            "local_hit_ratio",
            "stale_reads",
            "stale_beyond_bound",
            "max_staleness_s",
            "overshoot",
            "admitted",
        ):
            assert field in s
    naive = data["strategies"]["naive"]
    assert naive["gets_per_day"] > 0
    assert naive["lower_bound"] is None
    for mode in ("tracking", "keyspace", "pubsub"):
        lt = data["strategies"][f"lowtide/{mode}"]
        assert lt["invalidation"] == mode
        assert lt["billed_per_day"] < naive["billed_per_day"]
        assert lt["overshoot"] == 0
        assert lt["stale_beyond_bound"] == 0
        assert lt["local_hit_ratio"] > 0
        bound = data["lower_bounds"][mode]
        assert 0 < bound["per_day"] < lt["billed_per_day"]  # a bound: lowtide cannot beat it
        assert lt["bound_ratio"] == lt["billed_per_day"] / bound["per_day"]
    # the naive code on lt.redis(): same commands minus the reads answered from memory
    dropin = data["strategies"]["dropin"]
    assert dropin["gets_per_day"] < naive["gets_per_day"] / 2
    assert dropin["billed_per_day"] < naive["billed_per_day"]
    assert dropin["local_hit_ratio"] > 0
    assert dropin["stale_beyond_bound"] == 0
    assert dropin["attribution"]  # its commands are in its hub's ledger
    # pub/sub mode publishes every write; tracking needs no command for a push
    assert data["strategies"]["lowtide/pubsub"]["commands"].get("publish", 0) > 0
    assert data["strategies"]["lowtide/tracking"]["commands"].get("publish", 0) == 0
    # keyspace notifications: the server publishes; lowtide's writers send no PUBLISH
    assert data["strategies"]["lowtide/keyspace"]["commands"].get("publish", 0) == 0
    # one trace: the parts of the bound that do not depend on the run's clock are the same
    tracking, pubsub = data["lower_bounds"]["tracking"], data["lower_bounds"]["pubsub"]
    assert (tracking["writes"], tracking["discovery"]) == (pubsub["writes"], pubsub["discovery"])
    assert tracking["notifications"] == 0
    keyspace = data["lower_bounds"]["keyspace"]
    assert (keyspace["writes"], keyspace["notifications"]) == (tracking["writes"], 0)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # output redirected (not a terminal): plain progress lines, then an 80-column table
    lines = result.output.splitlines()
    assert any(line.endswith("naive: setting up 2 machines") for line in lines)
    assert any("lowtide pub/sub: warm-up (not measured)" in line for line in lines)
    assert any("lowtide tracking: measuring" in line for line in lines)
    assert sum(" done in " in line for line in lines) == 6
    assert "Time compressed 30x" in result.output
    table = lines[lines.index(next(x for x in lines if x.startswith("Measured by"))) :]
    assert max(len(line) for line in table[:20]) <= 80
    assert any(line.strip().startswith("lowtide / bound") for line in table)
    assert "cache hit ratio" not in result.output
    # the demo cleans up its keys on a server it did not start
    assert lowtide_server.command("KEYS", "ltdemo*") == []


def test_demo_measures_the_invalidation_modes_asked_for() -> None:
    # the plan is printed before the server is reached (this URL has no server)
    for mode, runs in (
        ("pubsub", "lowtide pub/sub"),
        ("tracking", "lowtide tracking"),
        ("keyspace", "lowtide keyspace"),
        ("both", "lowtide tracking, lowtide keyspace"),
    ):
        result = CliRunner().invoke(
            app, ["demo", "--invalidation", mode, "--url", "redis://127.0.0.1:1"]
        )
        assert result.exit_code == 2
        assert f"runs: naive, ttl-fix, {runs} (" in " ".join(result.output.split())


def test_demo_refuses_an_unknown_mode() -> None:
    result = CliRunner().invoke(app, ["demo", "--invalidation", "push", "--url", "redis://x:1"])
    assert result.exit_code == 2
    assert "tracking, keyspace, pubsub, both or all" in result.output
