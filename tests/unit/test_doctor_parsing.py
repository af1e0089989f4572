"""``lowtide doctor`` with no server: MONITOR line parsing, id masking, a saved log."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lowtide.doctor import diagnose_log, family_of, parse_line

DATA = Path(__file__).parent.parent / "data"


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
