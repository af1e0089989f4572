"""Fleet view: hubs publish one snapshot per minute; ``lowtide top`` shows the fleet (each
snapshot's age, dollars only where the provider has prices, the fleet-wide switch, and a hint
when nothing is published)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from lowtide import Lowtide
from lowtide.cli.main import app
from lowtide.fleetview import read_fleet
from lowtide.modes import Mode
from lowtide.testing import ValkeyServer
from tests.helpers import eventually


async def test_hubs_publish_and_top_reads_them(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    server = lowtide_fresh_server
    async with (
        Lowtide(server.url, instance="web-1", fleet_view=True) as a,
        Lowtide(server.url, instance="web-2", fleet_view=True) as b,
        Lowtide(server.url, instance="quiet") as c,  # not opted in
    ):
        cache = a.cache("profiles")
        assert await a.invalidations.wait_healthy(5)
        await cache.set("k", 1, tenant="t1")
        await asyncio.sleep(0.05)  # the write's own invalidation
        await cache.get("k", tenant="t1")  # read back once
        await cache.get("k", tenant="t1")  # answered from L1: one command saved
        assert a.publisher is not None
        assert b.publisher is not None
        await eventually(lambda: a.publisher.published >= 1 and b.publisher.published >= 1)
        await a.publisher.publish()  # now with the cache traffic in it
        snaps = await read_fleet(c)
        assert {s["instance"] for s in snaps} == {"web-1", "web-2"}
        web1 = next(s for s in snaps if s["instance"] == "web-1")
        assert web1["by_component"]["cache"] >= 1
        assert web1["saved"]["cache"] >= 1
        assert web1["mode"] == "distributed"
        sets = a.ledger.snapshot().by_family.get("lt:m:snap:*", 0)
        assert sets == a.publisher.published  # one command per snapshot
        pttl = server.command("PTTL", "lt:m:snap::web-1")
        assert 0 < pttl <= 180_000
        out = tmp_path / "fleet.json"
        args = ["top", "--url", server.url, "--once", "--json", str(out)]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)  # its own event loop
        assert result.exit_code == 0, result.output
        assert "web-1" in result.output
        assert "by component" in result.output
        assert {s["instance"] for s in json.loads(out.read_text())} == {"web-1", "web-2"}


async def test_top_on_an_empty_fleet_says_how_to_publish(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    args = ["top", "--url", lowtide_fresh_server.url, "--once"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no hub publishes a snapshot in namespace 'lt'" in result.output
    assert "LOWTIDE_FLEET_VIEW=true" in result.output


async def test_top_shows_ages_prices_and_a_suspended_fleet(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    runner = CliRunner()
    async with Lowtide(url, instance="web-1", fleet_view=True) as hub:
        assert hub.publisher is not None
        await eventually(lambda: hub.publisher is not None and hub.publisher.published >= 1)
        top = ["top", "--url", url, "--once"]
        result = await asyncio.to_thread(runner.invoke, app, top, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        row = next(line for line in result.output.splitlines() if "web-1" in line)
        assert re.search(r"│\s+\d+s\s+│", row), row  # its age
        assert "$" not in row  # provider redis: counted, not priced
        assert "no $ figures" in result.output

        suspend = ["suspend", "--url", url, "--reason", "incident 42"]
        done = await asyncio.to_thread(runner.invoke, app, suspend)
        assert done.exit_code == 0, done.output
        await eventually(lambda: hub.mode is Mode.SUSPENDED)
        # top is not suspended by the switch it shows
        result = await asyncio.to_thread(runner.invoke, app, top, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        first = result.output.splitlines()[0]
        assert "fleet SUSPENDED" in first
        assert "incident 42" in first
        assert "web-1" in result.output  # its last snapshot, still there
        done = await asyncio.to_thread(runner.invoke, app, ["resume", "--url", url])
        assert done.exit_code == 0, done.output
        await eventually(lambda: hub.mode is Mode.DISTRIBUTED)
        result = await asyncio.to_thread(runner.invoke, app, top, env={"COLUMNS": "200"})
        assert "SUSPENDED" not in result.output


async def test_top_prices_hubs_on_a_priced_provider(lowtide_fresh_server: ValkeyServer) -> None:
    url = lowtide_fresh_server.url
    async with Lowtide(url, instance="paid", fleet_view=True, provider="upstash") as hub:
        assert hub.publisher is not None
        await hub.publisher.publish()
        args = ["top", "--url", url, "--once"]
        result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "$/month" in result.output
    assert re.search(r"fleet: \$\d+\.\d\d/month projected", result.output)
