"""The README, docs/performance.md, docs/cache.md and docs/limiter.md quote the same recorded
benchmark runs (``benchmarks/results/*.json``) the same way: the cache's L1-hit latencies, the
hot paths' median (min-max), and the limiter's billed commands per 1,000 decisions (median of 3
runs in limiter.md, the recorded JSON being one of them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def read(name: str) -> str:
    return " ".join((ROOT / name).read_text(encoding="utf-8").split())


def recorded(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def row(text: str, starts: str) -> str:
    """The table row (of whitespace-joined ``text``) that starts with ``starts``."""
    m = re.search(re.escape(f"| {starts}") + r"[^|]*\|([^|]*)\|", text)
    assert m, starts
    return m.group(1)


def test_the_cache_latencies_are_the_recorded_runs_everywhere() -> None:
    us = recorded("cache.json")["latency_us"]
    lowtide, loader = us["lowtide get (L1 hit)"], us["lowtide get_or_load (L1 hit)"]
    mem, near = us["cashews mem:// get"], us["cashews client_side get (L1 hit)"]
    aio, plain = us["aiocache SimpleMemoryCache get"], us["redis-py GET (loopback)"]
    cache = read("docs/cache.md")
    assert row(cache, "lowtide `get` (L1 hit)").strip() == f"{lowtide:.2f}"
    assert row(cache, "lowtide `get_or_load` (L1 hit)").strip() == f"{loader:.2f}"
    assert row(cache, "cashews `mem://` `get`").strip() == f"{mem:.2f}"
    assert row(cache, "cashews `client_side`").strip() == f"{near:.2f}"
    assert row(cache, "aiocache").strip() == f"{aio:.2f}"
    assert row(cache, "redis-py `GET` over loopback").strip() == f"{plain:.0f}"
    quoted = f"{lowtide:.2f} vs {mem:.2f} / {near:.2f} vs {aio:.2f} vs {plain:.0f} µs"
    assert quoted in row(read("README.md"), "cache L1 hit latency")
    performance = read("docs/performance.md")
    assert row(performance, "cache L1 hit, lowtide").strip() == f"{lowtide:.2f} / {loader:.2f}"
    assert row(performance, "cashews `mem://`").strip() == f"{mem:.2f} / {near:.2f}"


def spread(stats: dict[str, float], unit: str) -> str:
    """``0.42 µs (0.42-0.56)``: median and min-max, as the docs write them."""
    return f"{stats['median']:.2f}{unit} ({stats['min']:.2f}-{stats['max']:.2f})"


TIMES = "\u00d7"  # limiter.md writes ratios with a multiplication sign


def test_the_hot_paths_are_quoted_as_recorded_median_and_range() -> None:
    paths = recorded("hot_paths.json")["paths"]
    acquire, hit = paths["acquire"], paths["l1_hit"]
    performance, readme = read("docs/performance.md"), read("README.md")
    limiter, cache = read("docs/limiter.md"), read("docs/cache.md")
    assert spread(acquire["us"], " µs") in row(performance, "`acquire` with a lease in hand")
    assert spread(hit["ratio"], "x") + f", {hit['us']['median']:.2f} µs" in row(
        performance, "L1 hit <= 2x"
    )
    hot = row(readme, "hot paths, median (min-max) of 9 rounds")
    assert f"{acquire['us']['median']:.2f} µs ({acquire['ratio']['median']:.1f}x)" in hot
    assert f"{hit['us']['median']:.2f} µs ({hit['ratio']['median']:.1f}x)" in hot
    a_us, a_ratio = acquire["us"], acquire["ratio"]
    assert (
        f"**{a_us['median']:.2f} µs** ({a_us['min']:.2f}-{a_us['max']:.2f}), "
        f"**{a_ratio['median']:.1f}{TIMES}** ({a_ratio['min']:.1f}-{a_ratio['max']:.1f})"
    ) in limiter
    h_us, h_ratio = hit["us"], hit["ratio"]
    assert (
        f"**{h_us['median']:.2f} µs** ({h_us['min']:.2f}-{h_us['max']:.2f}), "
        f"**{h_ratio['median']:.2f}x** ({h_ratio['min']:.2f}-{h_ratio['max']:.2f})"
    ) in cache


def test_the_limiter_figures_are_limiter_mds_medians_and_hold_the_recorded_run() -> None:
    limiter = read("docs/limiter.md")
    medians = []
    runs = [
        r
        for r in recorded("limiter_cost.json")["rows"]
        if r["kind"] == "lowtide" and r["algorithm"] == "fixed_window"
    ]
    for run in runs:
        demand = f"{run['demand'] * 100:.0f} %"
        m = re.search(
            re.escape(f"| {demand}") + r"[^|]*\| [\d,]+ \| \*\*(\d+)\*\* \((\d+)-(\d+)\)", limiter
        )
        assert m, demand
        median, low, high = (int(g) for g in m.groups())
        assert low <= round(run["billed_per_1000"]) <= high  # the recorded run is one of the 3
        medians.append(median)
    readme = row(read("README.md"), "limiter, 4 processes on one 200-per-2 s fixed window")
    assert readme.strip().startswith(" / ".join(str(m) for m in medians) + " (median of 3 runs)")


DEMO_RUNS = (
    "naive",
    "ttl-fix",
    "dropin",
    "lowtide/tracking",
    "lowtide/keyspace",
    "lowtide/pubsub",
)


def _cells(text: str, starts: str) -> list[str]:
    """Every cell after the first of the table row (of whitespace-joined ``text``) that starts
    with ``starts``."""
    m = re.search(re.escape(f"| {starts} |") + r"((?:[^|]*\|)+?) (?=\| |$)", text)
    assert m, starts
    return [c.strip() for c in m.group(1).split("|") if c.strip()]


def test_the_demo_tables_quote_the_recorded_set() -> None:
    """README and docs/demo.md quote benchmarks/results/demo_runs.json's medians (min-max)."""
    summary = recorded("demo_runs.json")["summary"]

    def billed(run: str) -> str:
        b = summary[run]["billed_per_day"]
        return f"{b['median']:,.0f} ({b['min']:,.0f}-{b['max']:,.0f})"

    def ratio(run: str) -> str:
        r = summary[run]["bound_ratio"]
        return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"

    for doc in ("README.md", "docs/demo.md"):
        text = read(doc)
        assert [billed(r) for r in DEMO_RUNS] == _cells(text, "billed commands/day")[:6], doc
        ratios = [c for c in _cells(text, "lowtide / bound") if c != "-"]
        lowtide = ("lowtide/tracking", "lowtide/keyspace", "lowtide/pubsub")
        assert ratios[:3] == [ratio(r) for r in lowtide], doc
