"""``lowtide demo``'s output with no server: the results table through a real 80-column
console, the plain progress lines printed when output is not a terminal, and the live bars
shown on a terminal, driven by synthetic progress events on a fake clock."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lowtide.cli.demo import LiveProgress, PlainProgress, progress_bars, render_demo
from lowtide.demo import DemoConfig, DemoResult, LowerBound, ProgressEvent, StrategyResult


def _result(name: str, billed: float, *, scale: float = 1.0) -> StrategyResult:
    mode = name.partition("/")[2] or None
    bound = LowerBound(mode or "tracking", 600.0, 81, 1543, 55, 1438, 60 if mode == "pubsub" else 0)
    return StrategyResult(
        name=name,
        seconds=600.0,
        commands={"get": int(billed / 144)},
        gets_per_day=billed * 0.75,
        commands_per_day=billed,
        billed_per_day=billed,
        usd_per_month=billed * 30 * 0.2 / 100_000,
        hit_ratio=1.0,
        local_hit_ratio=0.911 if mode else 0.0,
        reads=int(4980 * scale),
        stale_reads=int(3 * scale),
        stale_beyond_bound=0,
        max_staleness_s=0.012,
        p99_staleness_s=0.0,
        overshoot=0 if mode else int(141 * scale),
        admitted=int(1691 * scale),
        db_queries=10,
        errors={},
        reduction_vs_naive=None if name == "naive" else 0.5,
        invalidation=mode,
        lower_bound=bound.to_dict() if mode else None,
        bound_ratio=billed / bound.per_day if mode else None,
        attribution={"limiter incrby": 1993, "cache get": 2159} if mode else {},
    )


def _demo(scale: float) -> DemoResult:
    runs = {"naive": 2.83e6, "ttl-fix": 2.09e6, "lowtide/tracking": 9.9e5, "lowtide/pubsub": 1.2e6}
    return DemoResult(
        config=DemoConfig(scale=scale),
        strategies={n: _result(n, b * scale, scale=scale) for n, b in runs.items()},
        bounds={},
        naive_gets_per_day_model=2_196_000 * scale,
        events=100,
    )


def _render(result: DemoResult) -> str:
    out = io.StringIO()
    render_demo(result, Console(file=out, width=80, color_system=None, emoji=False))
    return out.getvalue()


def test_the_table_fits_80_columns_one_line_per_row_at_every_scale() -> None:
    for scale in (1.0, 100.0):
        text = _render(_demo(scale))
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 80
        labels = ("billed commands/day", "$/month", "lowtide / bound", "stale", "over the limit")
        for label in labels:
            (row,) = [line for line in lines if line.strip().startswith(label)]
            assert len(row.split()) >= len(label.split()) + 4  # four values on the same line
        assert "cache hit ratio" not in text
        assert "reads in process" in text


def test_the_table_says_lowtide_over_its_bound_for_each_mode() -> None:
    lines = _render(_demo(1.0)).splitlines()
    (row,) = [line for line in lines if line.strip().startswith("lowtide / bound")]
    tracking = 9.9e5 / LowerBound("tracking", 600.0, 81, 1543, 55, 1438).per_day
    pubsub = 1.2e6 / LowerBound("pubsub", 600.0, 81, 1543, 55, 1438, 60).per_day
    assert row.split()[-2:] == [f"{tracking:.2f}x", f"{pubsub:.2f}x"]
    (naive_vs,) = [line for line in lines if line.strip().startswith("vs naive")]
    assert naive_vs.split()[2] == "-"  # naive is not compared with itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_lines_as_it_goes_with_a_timer_per_run() -> None:
    clock, lines = FakeClock(), []
    progress = PlainProgress(lines.append, machines=4, clock=clock)
    progress(ProgressEvent("naive", "setup"))
    for t in range(0, 601, 50):
        clock.now += 2.5
        progress(ProgressEvent("naive", "warm-up", float(t), 600.0))
    for t in range(0, 601, 50):
        clock.now += 2.5
        progress(ProgressEvent("naive", "measuring", float(t), 600.0))
    clock.now += 1
    progress(ProgressEvent("naive", "done", result=_result("naive", 2.83e6)))
    clock.now += 5
    progress(ProgressEvent("lowtide/pubsub", "setup"))
    assert lines[0] == "[0:00:00] naive: setting up 4 machines"
    warm = [line for line in lines if "warm-up (not measured)" in line]
    measuring = [line for line in lines if "measuring" in line]
    # one line per quarter of each phase, not one per reading
    assert [line.split(": ", 2)[-1] for line in warm] == [
        f"{t} of 600 s of trace" for t in (0, 150, 300, 450, 600)
    ]
    assert len(measuring) == 5
    assert measuring[0].endswith("measuring: 0 of 600 s of trace")
    assert lines[-2] == "[0:01:06] naive: done in 0:01:06, 2,830,000 billed commands/day"
    # the next run's clock starts when that run starts
    assert lines[-1] == "[0:00:00] lowtide pub/sub: setting up 4 machines"


def test_live_progress_times_each_run_from_its_start_and_fills_the_bar_in_warm_up() -> None:
    clock = FakeClock()
    config = DemoConfig()  # 600 s of warm-up, then 600 s measured
    console = Console(file=io.StringIO(), width=120, color_system=None, emoji=False)
    bars = progress_bars(console, get_time=clock)
    live = LiveProgress(bars, ("naive", "lowtide/pubsub"), config)
    naive, pubsub = bars.tasks

    def row(task_index: int) -> str:
        out = io.StringIO()
        Console(file=out, width=120, color_system=None).print(bars.make_tasks_table(bars.tasks))
        return out.getvalue().splitlines()[task_index]

    def elapsed(task_index: int) -> str:
        return row(task_index).split()[-1]

    assert "waiting" in row(0)
    assert elapsed(0) == "-:--:--"
    clock.now += 40  # launch: the embedded server, the trace
    live(ProgressEvent("naive", "setup"))
    assert "setting up" in row(0)
    assert elapsed(0) == "0:00:00"
    assert "waiting" in row(1)
    assert elapsed(1) == "-:--:--"
    filled = []
    for done in (150.0, 300.0, 450.0):
        clock.now += 7.5
        live(ProgressEvent("naive", "warm-up", done, config.warmup))
        filled.append(naive.completed)
        assert f"warm-up (not measured) {done:,.0f} s" in row(0)
        assert "measuring" not in row(0)
    assert filled == [150.0, 300.0, 450.0]  # the bar moves during the warm-up
    # of warm-up + measured window
    assert naive.percentage == pytest.approx(100 * 450 / (config.warmup + config.seconds))
    assert elapsed(0) == "0:00:22"
    clock.now += 7.5
    live(ProgressEvent("naive", "measuring", 150.0, config.seconds))
    assert f"measuring 150/{config.seconds:,.0f} s" in row(0)
    assert "warm-up" not in row(0)
    assert naive.completed == config.warmup + 150.0
    clock.now += 30
    live(ProgressEvent("naive", "done", result=_result("naive", 2.83e6)))
    assert "done" in row(0)
    assert naive.finished
    assert elapsed(0) == "0:01:00"
    clock.now += 25
    live(ProgressEvent("lowtide/pubsub", "setup"))
    live(ProgressEvent("dropin", "warm-up", 10.0, 600.0))  # a run not shown: ignored
    clock.now += 5
    assert elapsed(0) == "0:01:00"  # a finished run's timer stops
    assert elapsed(1) == "0:00:05"  # the next run's timer starts with that run
    assert pubsub.completed == 0
    assert "setting up" in row(1)
