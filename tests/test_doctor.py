"""``lowtide doctor`` on live servers: findings on the incident's naive code, a sample that holds
only other clients' commands (MONITOR, and the INFO counters where MONITOR is refused), health
probes that write then read, every provider the settings accept, and the JSON shape."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lowtide import Settings
from lowtide.cli.main import app
from lowtide.doctor import diagnose_live
from lowtide.redis import plain_client
from lowtide.settings import PROVIDERS
from lowtide.testing import ValkeyServer, changes, server_commands
from tests.helpers import eventually

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
    dropin = next(f for f in report.findings if f.kind == "dropin")
    assert "discovery:slack:" in dropin.family.split(", ")  # a prefix to pass to lt.redis()
    static = next(
        f for f in report.findings if f.kind == "static_reads" and f.family.startswith("disc")
    )
    assert "lt.redis(cache_prefixes=('discovery:slack:',))" in static.detail
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


async def monitoring(server: ValkeyServer) -> None:
    """Wait until a MONITOR connection is open (CLIENT LIST is not shown by MONITOR)."""
    await eventually(lambda: b"cmd=monitor" in server.command("CLIENT", "LIST"), within=10)


async def known_traffic(url: str) -> None:
    """50 GETs and 10 SETs (with TTL) from an ordinary client."""
    r = plain_client(url)
    for i in range(50):
        await r.get(f"app:item:{i % 5}")
        if i % 5 == 0:
            await r.set(f"app:item:{i % 5}", "v", ex=60)
    await r.aclose()


async def test_a_live_sample_holds_only_other_clients_commands(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    before = server_commands(server)
    sample = asyncio.create_task(diagnose_live(server.url, 1.5))
    await monitoring(server)
    await known_traffic(server.url)
    report = await sample
    # nothing of the doctor's own: no CLIENT, SUBSCRIBE, self-test SET, control GET, INFO, PING
    assert report.by_command == {"get": 50, "set": 10}
    assert {f["family"] for f in report.families} == {"app:item:*"}
    # while the server counted the doctor's MONITOR as well
    counted = changes(before, server_commands(server), minus={"info": 1})
    assert counted.get("monitor") == 1
    assert counted["get"] == 50


async def test_where_monitor_is_refused_the_counters_hold_only_other_clients_commands(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    server = lowtide_fresh_server
    server.command("ACL", "SETUSER", "doc", "on", ">doc-pw", "~*", "&*", "+@all", "-monitor")
    url = f"redis://doc:doc-pw@{server.host}:{server.port}"
    sample = asyncio.create_task(diagnose_live(url, 1.5))

    def sampling() -> bool:  # the doctor's first INFO is done: its window is open
        return any(
            b"user=doc" in line and b"cmd=info" in line
            for line in server.command("CLIENT", "LIST").splitlines()
        )

    await eventually(sampling, within=10)
    await known_traffic(server.url)
    report = await sample
    assert report.source == "commandstats"
    assert "info" not in report.by_command
    assert "monitor" not in report.by_command
    # the harness's own CLIENT LIST polls, sent inside the window, are the only other commands
    assert {k: v for k, v in report.by_command.items() if k != "client|list"} == {
        "get": 50,
        "set": 10,
    }


async def test_doctor_names_an_unreachable_server() -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["doctor", "--url", url, "--seconds", "1"]
    )
    assert result.exit_code == 2
    assert f"cannot reach {url}" in result.output


async def probe(url: str, name: str, until: asyncio.Event, every: float = 0.2) -> None:
    """A health probe as web apps write them: write the key, read it back, every 0.2 s."""
    r = plain_client(url)
    while not until.is_set():
        await r.set(f"health:{name}", "ok", ex=30)
        await r.get(f"health:{name}")
        await asyncio.sleep(every)
    await r.aclose()


async def app_noise(url: str, until: asyncio.Event) -> None:
    """Ordinary, irregular traffic beside the probes."""
    rng = random.Random(7)
    r = plain_client(url)
    while not until.is_set():
        await r.get(f"cache:tenant-{rng.randrange(50)}:profile")
        await asyncio.sleep(rng.expovariate(40))
    await r.aclose()


@pytest.mark.parametrize("probes", [["web-1"], ["web-1", "web-2", "web-3"]])
async def test_finds_a_write_then_read_health_probe(
    lowtide_fresh_server: ValkeyServer, probes: list[str]
) -> None:
    url = lowtide_fresh_server.url
    stop = asyncio.Event()
    tasks = [asyncio.create_task(app_noise(url, stop))]
    for i, name in enumerate(probes):
        tasks.append(asyncio.create_task(probe(url, name, stop)))
        await asyncio.sleep(0.2 / len(probes) * (i + 0.5))  # probes out of phase
    try:
        report = await diagnose_live(url, 3.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    found = {f.family: f for f in report.findings if f.kind in ("health_check", "background_loop")}
    assert "health:*" in found, report.findings
    assert found["health:*"].kind == "health_check"
    assert "2.0 commands each" in found["health:*"].detail
    assert not any(fam.startswith("cache:") for fam in found)  # the noise is not a loop


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_the_settings_accept_is_a_billing_profile(provider: str) -> None:
    assert Settings(provider=provider).provider == provider
    result = CliRunner().invoke(
        app, ["doctor", "--monitor-log", str(DATA / "monitor.log"), "--provider", provider]
    )
    assert result.exit_code == 0, result.output
    priced = provider == "upstash"
    assert ("/month at upstash rates" in result.output) is priced
    assert ("not priced" in result.output) is not priced


def test_an_unknown_provider_is_refused_with_the_accepted_ones() -> None:
    result = CliRunner().invoke(
        app, ["doctor", "--monitor-log", str(DATA / "monitor.log"), "--provider", "memcached"]
    )
    assert result.exit_code == 2
    assert all(p in result.output for p in PROVIDERS)


async def test_doctor_on_a_quiet_server_reports_nothing_and_says_the_sample_is_short(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    out = tmp_path / "doctor.json"
    args = ["doctor", "--url", lowtide_fresh_server.url, "--seconds", "0.5", "--json", str(out)]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("0 commands in 0.5s (monitor)")
    assert "a short sample (0 commands in 0.5s)" in result.output
    assert "no commands from other clients during the sample" in result.output
    report = json.loads(out.read_text())
    assert report["commands"] == 0
    assert report["by_command"] == {}
    assert report["warnings"]
