"""The demo's chart from synthetic series, with no server: the warm-up is not drawn (its readings
are made far higher than the measured ones, so drawing any would show), and the run labels, the
title, the axis labels and the legend do not overlap one another or the lines (text bounding
boxes from matplotlib's own renderer)."""

from __future__ import annotations

import itertools
import random

import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from lowtide.demo import DemoConfig, DemoResult, StrategyResult
from lowtide.demo.chart import NAMES, draw_chart, measured_points

#: billed commands per minute of trace in the measured window (about the demo's own)
RATES = {
    "naive": 1965.0,
    "ttl-fix": 1454.0,
    "dropin": 700.0,
    "lowtide/tracking": 489.0,
    "lowtide/pubsub": 630.0,
}
STEP = 15.0  # trace seconds between readings
WARM_UP_FACTOR = 40.0  # warm-up readings: this many times the measured rate


def strategy(name: str, per_min: float, cfg: DemoConfig, rng: random.Random) -> StrategyResult:
    series = []
    for i in range(int(cfg.total_seconds / STEP) + 1):
        t = i * STEP
        rate = per_min * (WARM_UP_FACTOR if t <= cfg.warmup else rng.uniform(0.95, 1.05))
        series.append((t, rate, 0.7 * rate))
    mode = name.partition("/")[2] or None
    return StrategyResult(
        name=name,
        seconds=cfg.seconds,
        commands={},
        gets_per_day=0.7 * per_min * 1440,
        commands_per_day=per_min * 1440,
        billed_per_day=per_min * 1440,
        usd_per_month=per_min * 1440 * 30 * 0.2 / 100_000,
        hit_ratio=1.0,
        local_hit_ratio=0.5 if mode else 0.0,
        reads=0,
        stale_reads=0,
        stale_beyond_bound=0,
        max_staleness_s=0.0,
        p99_staleness_s=0.0,
        overshoot=0,
        admitted=0,
        db_queries=0,
        errors={},
        reduction_vs_naive=None,
        invalidation=mode,
        lower_bound=None,
        bound_ratio=1.57 if mode else None,
        attribution={},
        series=series,
    )


def demo_result(scale: float, dropin: bool) -> DemoResult:
    cfg = DemoConfig(scale=scale, dropin=dropin)
    rng = random.Random(7)
    runs = {
        name: strategy(name, rate * scale, cfg, rng)
        for name, rate in RATES.items()
        if dropin or name != "dropin"
    }
    return DemoResult(
        config=cfg,
        strategies=runs,
        bounds={},
        naive_gets_per_day_model=cfg.naive_gets_per_min * 1440,
        events=1,
    )


def test_measured_points_leave_out_the_warm_up_and_start_at_zero() -> None:
    series = [(0.0, 9.0, 9.0), (600.0, 9.0, 9.0), (615.0, 1.0, 2.0), (1200.0, 3.0, 4.0)]
    assert measured_points(series, 600.0) == [(15.0, 1.0, 2.0), (600.0, 3.0, 4.0)]


@pytest.mark.parametrize(("scale", "dropin"), [(1.0, False), (100.0, True)])
def test_the_warm_up_is_not_drawn(scale: float, dropin: bool) -> None:
    result = demo_result(scale, dropin)
    cfg = result.config
    ax = draw_chart(result).axes[0]
    measured = int(cfg.seconds / STEP)  # readings after the warm-up, per run
    for k, name in enumerate(result.strategies):
        lines = [
            line
            for line in ax.get_lines()
            if str(line.get_label()).startswith(f"{NAMES.get(name, name)}:")
        ]
        assert len(lines) == 2  # billed commands and GETs
        for line in lines:
            xs = [float(x) for x in line.get_xdata()]
            ys = [float(y) for y in line.get_ydata()]
            assert len(xs) == measured
            assert k * cfg.seconds < min(xs)
            assert max(xs) <= (k + 1) * cfg.seconds
            assert max(ys) <= 1.05 * RATES[name] * scale  # no warm-up reading, smoothed or not


@pytest.mark.parametrize(("scale", "dropin"), [(1.0, False), (100.0, True)])
def test_labels_clear_the_title_each_other_and_the_lines(scale: float, dropin: bool) -> None:
    result = demo_result(scale, dropin)
    fig = draw_chart(result)
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    (dollars,) = ax.child_axes
    labels = list(ax.texts)
    assert len(labels) == len(result.strategies)
    legend = ax.get_legend()
    assert legend is not None
    boxes: dict[str, Bbox] = {
        "title": ax.title.get_window_extent(renderer),
        "x label": ax.xaxis.label.get_window_extent(renderer),
        "y label": ax.yaxis.label.get_window_extent(renderer),
        "$ label": dollars.yaxis.label.get_window_extent(renderer),
        "legend": legend.get_window_extent(renderer),
    }
    boxes |= {
        f"label of {name}": t.get_window_extent(renderer)
        for name, t in zip(result.strategies, labels, strict=True)
    }
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        assert not box_a.overlaps(box_b), f"{a} overlaps {b}"
    plot = ax.get_window_extent(renderer)
    drawn = [line for line in ax.get_lines() if not str(line.get_label()).startswith("_")]
    highest = max(  # the data lines and the model line (x of an axhline: axes fraction)
        ax.transData.transform((0.0, float(y)))[1] for line in drawn for y in line.get_ydata()
    )
    # the run boundaries (vertical lines from the bottom of the plot to its top)
    bounds = [
        ax.transData.transform((float(line.get_xdata()[0]), 0.0))[0]
        for line in ax.get_lines()
        if str(line.get_label()).startswith("_")
    ]
    assert len(bounds) == len(result.strategies)
    for name, text in zip(result.strategies, labels, strict=True):
        box = text.get_window_extent(renderer)
        assert plot.x0 <= box.x0, f"{name}'s label leaves the plot"
        assert box.x1 <= plot.x1, f"{name}'s label leaves the plot"
        assert box.y1 <= plot.y1, f"{name}'s label leaves the plot"
        assert box.y0 > highest, f"a line crosses {name}'s label"
        assert not any(box.x0 < x < box.x1 for x in bounds), f"a boundary crosses {name}'s label"
        assert "/month" in text.get_text()
    entries = [t.get_text() for t in legend.get_texts()]
    assert f"the incident's {result.config.naive_gets_per_min:,.0f} GETs/min" in entries
    assert "$/month" in dollars.get_ylabel()
