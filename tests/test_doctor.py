"""``lowtide doctor``: MONITOR parsing, id masking, findings on a live server running the seeds'
naive code, and the JSON shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from lowtide.cli.main import app
from lowtide.doctor import diagnose_live, diagnose_log, family_of, parse_line
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer

DATA = Path(__file__).parent / "data"


def test_parses_ipv6_unix_lua_and_escapes() -> None:
    ipv6 = parse_line('1700000000.1 [0 [::1]:50001] "GET" "k"')
    assert ipv6 is not None
    assert ipv6.client == "[::1]:50001"
    unix = parse_line('1700000000.2 [3 unix:/tmp/redis.sock] "SET" "a b" "x\\"y\\\\z\\x41"')
    assert unix is not None
    assert unix.db == 3
    assert unix.client == "unix:/tmp/redis.sock"
    assert unix.args == ("a b", 'x"y\\zA')
    lua = parse_line('1700000000.3 [0 lua] "INCRBY" "k" "4"')
    assert lua is not None
    assert (lua.client, lua.name) == ("lua", "incrby")
    assert parse_line("OK") is None


@given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=5))
def test_quoting_round_trips(args: list[str]) -> None:
    def quote(a: str) -> str:
        out = []
        for ch in a:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 32 or ord(ch) == 127:
                out.append(f"\\x{ord(ch):02x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    line = "1700000000.5 [0 127.0.0.1:1] " + " ".join(quote(a) for a in ["get", *args])
    cmd = parse_line(line)
    assert cmd is not None
    assert list(cmd.args) == args


def test_families_mask_ids() -> None:
    assert family_of("quota:tenant-042:used") == "quota:*:used"
    assert family_of("discovery:slack:T024BE7LD") == "discovery:slack:*"
    assert family_of("session:9f8e7d6c5b4a39281706f5e4d3c2b1a0") == "session:*"
    assert family_of("lt:c:profiles:t1:user%3A42") == "lt:c:profiles:*"
    assert family_of("config") == "config"


def test_saved_log() -> None:
    report = diagnose_log(DATA / "monitor.log")
    families = {(f["family"], f["command"]): f["count"] for f in report.families}
    assert families[("quota:*:used", "get")] == 2
    assert families[("cache:*:profile:*", "get")] == 2
    assert families[("lt:r:hubspot:*", "incrby")] == 1  # the Lua line is kept
    assert report.commands == 8
    assert any(f.kind == "no_ttl" and f.family == "session:*" for f in report.findings)


async def naive_app(url: str, seconds: float) -> None:
    """The seeds' code: quota GET before every cache GET, discovery GETs, a PING loop."""
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
