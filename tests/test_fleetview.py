"""Fleet view: hubs publish one snapshot per minute; ``lowtide top`` shows the fleet."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from lowtide import Lowtide
from lowtide.cli.main import app
from lowtide.fleetview import read_fleet
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
