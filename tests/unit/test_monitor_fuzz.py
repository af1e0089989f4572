"""The MONITOR parser and ``doctor``'s analysis on hostile input: never raise, never hang.

Fuzzed with a bounded budget (200 examples each, no deadline: CI machines are shared); the
pytest timeout catches a hang, and the large pathological lines below would take minutes with a
backtracking pattern.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.doctor import Command, ParseStats, analyse, family_of, parse_line, parse_lines

FUZZ = settings(max_examples=200, deadline=None)

digits = st.text(alphabet="0123456789", min_size=0, max_size=30)
clients = st.one_of(
    st.sampled_from(["127.0.0.1:1", "[::1]:2", "unix:/tmp/r.sock", "lua", "", "]", "[", "[[]]"]),
    st.text(max_size=30),
)
quoted = st.text(max_size=40).map(lambda a: '"' + a + '"')
args = st.lists(st.one_of(quoted, st.text(max_size=20)), max_size=6).map(" ".join)
separators = st.sampled_from([" ", "", "  ", "\t", "\n", "\r", "\x00"])


@st.composite
def monitor_like(draw: st.DrawFn) -> str:
    """Lines shaped like MONITOR's, each part possibly wrong."""
    ts = draw(digits) + draw(st.sampled_from(["", ".", "." + draw(digits), "e5", "\u0663"]))
    db = draw(st.one_of(digits, st.text(max_size=5)))
    return (
        draw(st.sampled_from(["", "+", "-"]))
        + ts
        + draw(separators)
        + "["
        + db
        + draw(separators)
        + draw(clients)
        + "]"
        + draw(separators)
        + draw(args)
    )


lines = st.one_of(monitor_like(), st.text(max_size=200))


def check(cmd: Command | None) -> None:
    if cmd is not None:
        assert cmd.name
        assert math.isfinite(cmd.ts)
        assert all(isinstance(a, str) for a in cmd.args)


@FUZZ
@given(lines)
def test_parse_line_never_raises(line: str) -> None:
    check(parse_line(line))


@FUZZ
@given(st.lists(lines, max_size=30), st.sampled_from(["upstash", "redis"]))
def test_parse_and_analyse_never_raise_and_count_every_line(
    batch: list[str], provider: str
) -> None:
    stats = ParseStats()
    cmds = list(parse_lines(batch, stats))
    assert stats.lines == len(batch)
    assert stats.commands == len(cmds)
    blank = sum(1 for line in batch if line.strip() in ("", "OK", "+OK"))
    assert stats.commands + stats.skipped + blank == len(batch)
    times = [c.ts for c in cmds]
    seconds = max(times) - min(times) if len(times) > 1 else 1.0
    report = analyse(cmds, seconds, provider=provider)
    assert report.commands == len([c for c in cmds if c.name != "monitor"])
    assert math.isfinite(report.per_day)


@FUZZ
@given(st.text(max_size=80))
def test_family_of_never_raises(key: str) -> None:
    assert isinstance(family_of(key), str)
    assert isinstance(family_of("lt:c:" + key), str)


def test_out_of_range_numbers_are_bad_lines_not_errors() -> None:
    stats = ParseStats()
    batch = [
        "OK",
        '1700000000.1 [0 127.0.0.1:1] "GET" "a"',
        "1700000000.2 [" + "9" * 5000 + ' 127.0.0.1:1] "GET" "b"',  # int() digit limit
        "9" * 400 + ' [0 127.0.0.1:1] "GET" "c"',  # a float that would be inf
        '1700000000.3 [0 127.0.0.1:1] "GET" "d"',
        '1700000000.4 [0 127.0.0.1:1] ""',  # no command name
        "garbage",
        "",
    ]
    cmds = list(parse_lines(batch, stats))
    assert [c.args for c in cmds] == [("a",), ("d",)]
    assert (stats.lines, stats.commands, stats.skipped) == (8, 2, 4)
    assert stats.examples[0].startswith("1700000000.2 [999")
    assert all(len(e) <= 200 for e in stats.examples)


@pytest.mark.timeout(30)
def test_pathological_lines_parse_in_linear_time() -> None:
    # with a lazy client group and an embedded newline, the old pattern retried every '] "'
    n = 200_000
    assert parse_line('1 [0 a] "x' + '] "' * n + "\n" + '"') is not None
    assert parse_line("1 [0 " + "] " * n + "\n") is None
    assert parse_line("1" * n + " [0 a] " + '"x"') is None
    assert parse_line('1 [0 a] "' + "\\x" * n + '"') is not None
    assert parse_line("1 [0 a] " + '"' * n) is None  # empty command names
