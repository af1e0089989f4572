"""The CLI's output of untrusted strings and ``lowtide top``'s screen, with no server.

Snapshots go through the check ``top`` reads them with (:func:`lowtide.fleetview.parse_snapshot`);
rendered through a real console of 80 (and 40) columns: what a terminal shows is asserted.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from lowtide.cli.output import MAX_CELL, cell, printable
from lowtide.cli.top import STALE_AFTER, FleetView, fleet_tables
from lowtide.fleetview import parse_snapshot

NOW = 1.7e9 + 30

HOSTILE = [
    "acme[/eu]",
    "flags:[/red]",
    "lt:x:selftest:*",
    "lt:b:crm:*",
    "user:id:*",
    "room:[bold]:x",
    "[link=http://evil]x[/link]",
    ":thumbs_up:",
]


def render(renderable: Any, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue()


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "instance": "web-1",
        "provider": "upstash",
        "mode": "distributed",
        "at": NOW - 30,
        "elapsed_s": 60.0,
        "commands": 100,
        "billed": 90,
        "per_day": 144_000.0,
        "billed_per_day": 129_600.0,
        "usd_per_month": 7.776,
        "by_component": {"cache": 80, "quota": 20},
        "by_command": {"get": 100},
        "by_family": {"lt:c:profiles:*": 80},
        "by_tenant": {"t1": 100},
        "saved": {"cache": 5},
    }
    return base | fields


def test_hostile_strings_print_verbatim_in_cells_and_messages() -> None:
    for s in HOSTILE:
        assert render(cell(s)).strip() == s
    assert render(cell("a\x1b[2Jb\nc\u202ed")).strip() == "a\\x1b[2Jb\\nc\\u202ed"
    long = "t" * (MAX_CELL + 10)
    assert printable(long) == "t" * MAX_CELL + f"... ({MAX_CELL + 10:,} characters)"


def encode(raw: Any) -> str:
    return json.dumps(raw, allow_nan=True)  # as planted: NaN goes in as the token NaN


def view(raws: list[Any], **fields: Any) -> FleetView:
    """What ``top`` builds from these values read from Redis (each checked, busiest first)."""
    checked = [parse_snapshot(encode(r)) for r in raws]
    good = [c for c in checked if c is not None]
    good.sort(key=lambda s: -float(s["billed_per_day"] or 0.0))
    return FleetView("lt", good, len(checked) - len(good), read_at=NOW, **fields)


def test_top_shows_hostile_names_verbatim_and_counts_malformed_snapshots() -> None:
    good = snapshot(
        instance="web:x:[/1]",
        mode="distributed",
        by_tenant={"acme[/eu]": 60, "user:id:*": 40},
        by_family={"flags:[/red]": 70, "lt:x:selftest:*": 30},
    )
    other = snapshot(instance="web-2", billed_per_day=1e6, by_tenant={"beta": 1})
    malformed: list[Any] = [
        [1, 2],
        "text",
        None,
        snapshot(instance=["x"]),
        snapshot(per_day="lots"),
        snapshot(billed=None),
        snapshot(per_day=True),
        snapshot(usd_per_month=float("nan")),
        snapshot(commands=10**400),  # too large for a float
        snapshot(per_day=-5),
        snapshot(by_tenant=[1]),
        snapshot(by_tenant={"t": "x"}),
        snapshot(saved={"cache": True}),
        snapshot(by_family={f"f{i}": 1 for i in range(1001)}),
    ]
    text = render(fleet_tables(view([good, *malformed, other])))
    for s in ("web:x:[/1]", "acme[/eu]", "user:id:*", "flags:[/red]", "lt:x:selftest:*"):
        assert s in text
    assert "❌" not in text
    assert "🆔" not in text
    assert "2 hub(s) publishing" in text
    assert f"{len(malformed)} malformed snapshot(s) skipped" in text
    assert text.index("web-2") < text.index("web:x:[/1]")  # busiest first


def test_top_shows_each_snapshots_age_and_marks_stale_ones() -> None:
    fresh = snapshot(instance="fresh", at=NOW - 12)
    stale = snapshot(instance="gone", at=NOW - STALE_AFTER - 30)
    text = render(fleet_tables(view([fresh, stale])), 120)
    fresh_row = next(line for line in text.splitlines() if "fresh" in line)
    gone_row = next(line for line in text.splitlines() if "gone" in line)
    assert " 12s " in fresh_row
    assert "stale" not in fresh_row
    assert "2m stale" in gone_row
    assert "stale: no snapshot for over 90s" in text


def test_an_empty_fleet_says_how_to_publish() -> None:
    text = render(fleet_tables(view([])), 100).replace("\n", " ")
    assert "no hub publishes a snapshot in namespace 'lt'" in text
    assert "LOWTIDE_FLEET_VIEW=true" in text
    assert "┏" not in text  # no empty tables
    junk = render(fleet_tables(view([[1], "x"])), 100)
    assert "2 malformed snapshot(s) skipped" in junk


def test_dollars_only_for_hubs_whose_provider_has_prices() -> None:
    unpriced = [
        snapshot(instance=f"web-{p}", provider=p, usd_per_month=0.0)
        for p in ("redis", "valkey", "dragonfly")
    ]
    text = render(fleet_tables(view(unpriced)), 120)
    assert "$/month" not in text
    assert "$0" not in text
    assert "no $ figures" in text.replace("\n", " ")
    mixed = render(fleet_tables(view([*unpriced, snapshot(instance="up")])), 120)
    assert "$/month" in mixed
    assert "$7.78" in mixed
    assert "3 hub(s) without prices" in mixed
    row = next(line for line in mixed.splitlines() if "web-redis" in line)
    assert re.search(r"│\s+-\s+│", row), row  # its $ cell


def test_a_suspended_fleet_is_shown_above_the_tables() -> None:
    switch = {"state": "suspended", "reason": "incident [/red] 42", "at": NOW - 40}
    text = render(fleet_tables(view([snapshot()], switch=switch)), 120)
    first = text.splitlines()[0]
    assert "fleet SUSPENDED for 40s" in first
    assert "incident [/red] 42" in first


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
snapshot_fields = st.dictionaries(
    st.sampled_from(sorted(snapshot())) | st.text(max_size=8), json_values, max_size=8
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(json_values, snapshot_fields, snapshot_fields.map(lambda f: snapshot(**f))),
        max_size=5,
    )
)
def test_any_planted_snapshot_is_shown_or_skipped_never_fatal(snaps: list[Any]) -> None:
    shown = view(snaps)
    text = render(fleet_tables(shown))
    if shown.snapshots:
        assert f"{len(shown.snapshots)} hub(s) publishing" in text
    else:
        assert "no hub publishes a snapshot" in text
    if shown.skipped:
        assert f"{shown.skipped} malformed snapshot(s) skipped" in text
    for p in shown.snapshots:
        json.dumps(p, allow_nan=False)
        assert math.isfinite(float(p["at"]))
        # a projection is a finite number, or null (the hub counted for under a minute)
        assert all(p[k] is None or math.isfinite(p[k]) for k in ("per_day", "usd_per_month"))


def test_top_shows_no_per_day_figures_for_a_hub_counting_for_under_a_minute() -> None:
    # what a hub publishes 1 s after start: 7 start-up commands and no projection (null)
    young = snapshot(
        instance="young",
        elapsed_s=1.0,
        commands=7,
        billed=7,
        per_day=None,
        billed_per_day=None,
        usd_per_month=None,
        by_family={"lt:x:boot:*": 7},
        by_tenant={},
    )
    text = render(fleet_tables(view([snapshot(), young])), 120)
    assert "2 hub(s) publishing" in text
    (row,) = [line for line in text.splitlines() if "young" in line]
    cells = [c.strip() for c in row.split("│")]
    assert cells[4:7] == ["-", "-", "-"]  # commands/day, billed/day, $/month
    assert "604,800" not in text  # 7 commands in 1 s, as a day
    assert "1 hub(s) counting for under 60s: no per-day figures yet" in text
    (boot,) = [line for line in text.splitlines() if "lt:x:boot:*" in line]
    assert boot.split("│")[2].strip() == "-"  # listed, with no per-day figure
    (web,) = [line for line in text.splitlines() if "lt:c:profiles:*" in line]
    assert web.split("│")[2].strip() == "115,200"  # 80 of web-1's 100 commands: 144,000/day
    assert "fleet: $7.78/month projected" in text  # web-1's alone


def test_the_doctors_tables_fit_80_columns_with_each_title_on_one_line() -> None:
    from lowtide.cli.doctor import render_report
    from lowtide.doctor import Command, analyse

    # a narrow families table (short keys): its title is wider than its columns
    cmds = [Command(i * 0.2, 0, "c1", "get", (f"user:{i % 3}:profile",)) for i in range(200)]
    cmds += [Command(0.1 + i, 0, "c1", "set", (f"upload:t{i}:a", "v")) for i in range(2)]
    out = io.StringIO()
    render_report(analyse(cmds, 40.0), Console(file=out, width=80, color_system=None))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    titles = [line.strip() for line in lines]
    assert "Where the commands come from (key families, ids masked)" in titles
    assert "Findings" in titles
