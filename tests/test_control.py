"""The fleet-wide kill switch: every hub switches within 1 s, without polling, and back."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

from typer.testing import CliRunner

from lowtide import Lowtide, Mode
from lowtide.cli.main import app
from lowtide.control import write_switch
from lowtide.testing import ValkeyServer, ledger_total
from tests.helpers import eventually


async def test_fleet_switch_reaches_every_hub_within_a_second(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(Lowtide(url, instance=f"web-{i}")) for i in range(3)
        ]
        operator = await stack.enter_async_context(Lowtide(url, fleet_switch=False))
        caches = [h.cache("profiles") for h in hubs]
        for h in hubs:
            assert await h.invalidations.wait_healthy(5)
        await caches[0].set("k", "v", tenant="t1")

        t0 = time.monotonic()
        await write_switch(operator, suspend=True, reason="incident 42")
        await eventually(lambda: all(h.mode is Mode.SUSPENDED for h in hubs), within=1.0)
        assert time.monotonic() - t0 < 1.0
        for h in hubs:
            health = h.health()
            assert health["status"] == "suspended"
            assert health["reason"] == "fleet"
            assert h.fleet_suspended
        before = [ledger_total(h, component="cache") for h in hubs]
        for c in caches:  # the app keeps working on local state, with no data traffic
            await c.set("local", 1, tenant="t1")
            assert await c.get("local", tenant="t1") == 1
        assert [ledger_total(h, component="cache") for h in hubs] == before

        t1 = time.monotonic()
        await write_switch(operator, suspend=False)
        await eventually(lambda: all(h.mode is Mode.DISTRIBUTED for h in hubs), within=2.0)
        assert time.monotonic() - t1 < 2.0  # push + one PING each (recovery is immediate)
        assert await caches[1].get("k", tenant="t1") == "v"


async def test_a_hub_started_during_a_fleet_suspension_starts_suspended(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    url = lowtide_fresh_server.url
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["suspend", "--url", url, "--reason", "maintenance"]
    )
    assert result.exit_code == 0, result.output
    async with Lowtide(url, instance="late") as lt:
        await eventually(lambda: lt.mode is Mode.SUSPENDED, within=2.0)
        assert lt.health()["reason"] == "fleet"
        result = await asyncio.to_thread(CliRunner().invoke, app, ["resume", "--url", url])
        assert result.exit_code == 0, result.output
        await eventually(lambda: lt.mode is Mode.DISTRIBUTED, within=2.0)


async def test_pubsub_hubs_hear_the_switch_too(lowtide_fresh_server: ValkeyServer) -> None:
    url = lowtide_fresh_server.url
    async with (
        Lowtide(url, invalidation="pubsub") as hub,
        Lowtide(url, fleet_switch=False) as operator,
    ):
        assert await hub.invalidations.wait_healthy(5)
        await write_switch(operator, suspend=True)
        await eventually(lambda: hub.mode is Mode.SUSPENDED, within=1.0)
        await write_switch(operator, suspend=False)
        await eventually(lambda: hub.mode is Mode.DISTRIBUTED, within=2.0)
