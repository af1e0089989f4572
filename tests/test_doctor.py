"""``lowtide doctor``: MONITOR parsing, id masking, findings on a live server running the incident's
naive code, and the JSON shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from lowtide.cli.main import app
from lowtide.doctor import diagnose_live
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer

DATA = Path(__file__).parent / "data"


async def naive_app(url: str, seconds: float) -> None:
    """The incident's code: quota GET before every cache GET, discovery GETs, a PING loop."""
    r = plain_client(url)
    await r.set("discovery:slack:T024BE7LD", "tenant-001")
    for t in range(5):
        await r.set(f"quota:tenant-{t:03d}:used", 0)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def pinger() -> None:
        while loop.time() < end:
            await r.ping()
            await asyncio.sleep(0.05)

    ping = asyncio.create_task(pinger())
    i = 0
    while loop.time() < end:
        t = f"tenant-{i % 5:03d}"
        await r.get(f"quota:{t}:used")
        await r.get(f"cache:{t}:profile:{i % 7}")
        await r.get("discovery:slack:T024BE7LD")
        if i % 10 == 0:
            await r.set(f"upload:{t}:{i}", "x")  # no TTL
        i += 1
        await asyncio.sleep(0.003)
    await ping
    await r.aclose()


async def test_live_server_findings(lowtide_fresh_server: ValkeyServer, tmp_path: Path) -> None:
    url = lowtide_fresh_server.url
    app_task = asyncio.create_task(naive_app(url, 2.5))
    await asyncio.sleep(0.2)
    report = await diagnose_live(url, 2.0)
    await app_task
    kinds = {(f.kind, f.family) for f in report.findings}
    assert ("amplification", "quota:*:used") in kinds
    assert ("static_reads", "discovery:slack:*") in kinds
    assert ("health_check", "PING") in kinds
    assert ("no_ttl", "upload:*") in kinds
    assert report.per_day > 0
    assert report.source == "monitor"
    data = report.to_dict()
    for key in ("commands", "seconds", "per_day", "usd_per_month", "families", "findings"):
        assert key in data
    out = tmp_path / "doctor.json"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["doctor", "--monitor-log", str(DATA / "monitor.log"), "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["families"][0]["family"]
