"""The CLI's output of untrusted strings and its checks of fleet snapshots, with no server.

Rendered through a real 80-column console: what a terminal shows is what is asserted.
"""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from lowtide.cli.main import _fleet_tables
from lowtide.cli.output import MAX_CELL, cell, parse_snapshot, printable

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
        "at": 1.7e9,
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
        snapshot(billed_per_day=None),
        snapshot(usd_per_month=float("nan")),
        snapshot(commands=10**400),  # too large for a float
        snapshot(per_day=-5),
        snapshot(by_tenant=[1]),
        snapshot(by_tenant={"t": "x"}),
        snapshot(saved={"cache": True}),
        snapshot(by_family={f"f{i}": 1 for i in range(1001)}),
    ]
    text = render(_fleet_tables([good, *malformed, other], unreadable=2))
    for s in ("web:x:[/1]", "acme[/eu]", "user:id:*", "flags:[/red]", "lt:x:selftest:*"):
        assert s in text
    assert "❌" not in text
    assert "🆔" not in text
    assert "2 hub(s) publishing" in text
    assert f"{len(malformed) + 2} malformed snapshot(s) skipped" in text
    assert text.index("web-2") < text.index("web:x:[/1]")  # busiest first


def test_checked_snapshots_keep_their_fields_and_dump_to_json() -> None:
    raw = snapshot(extra=[[[[1]]]])
    checked = parse_snapshot(raw)
    assert checked is not None
    d = checked.to_dict()
    assert d == {k: v for k, v in raw.items() if k != "extra"}
    assert json.loads(json.dumps(d)) == d
    assert parse_snapshot({}) is not None  # missing fields read as ?, 0 or empty (older hubs)


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
def test_any_decoded_snapshot_is_shown_or_skipped_never_fatal(snaps: list[Any]) -> None:
    text = render(_fleet_tables(snaps))
    shown = [p for p in map(parse_snapshot, snaps) if p is not None]
    assert f"{len(shown)} hub(s) publishing" in text
    if len(shown) < len(snaps):
        assert f"{len(snaps) - len(shown)} malformed snapshot(s) skipped" in text
    for p in shown:
        json.dumps(p.to_dict(), allow_nan=False)
