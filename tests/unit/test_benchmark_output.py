"""Running a benchmark never rewrites the recorded (tracked) results; ``--write`` does. What
the README and docs suggest writing at the top of a checkout (``demo.png``, ``--json`` files, a
MONITOR log) is ignored by git. The growth benchmark reports every profile as median (min-max)
of its repetitions, per lowtide invalidation mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SHOW = "import sys, benchmarks._common as c; print(c.RESULTS.relative_to(c.HERE)); print(sys.argv)"


def results_dir(*args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SHOW, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    where, argv = done.stdout.splitlines()
    return where, argv


def test_results_go_to_an_untracked_folder_unless_asked_to_write() -> None:
    assert results_dir() == ("out", "['-c']")
    assert results_dir("--write", "--seconds", "5") == ("results", "['-c', '--seconds', '5']")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/out/cache.json"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "benchmarks/out/ is not ignored by git"
    # the README's main command writes demo.png where it runs
    demo_png = subprocess.run(["git", "check-ignore", "-q", "demo.png"], cwd=ROOT, check=False)
    assert demo_png.returncode == 0, "demo.png is not ignored by git"
    tracked = subprocess.run(
        ["git", "ls-files", "benchmarks/out"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.stdout == ""


#: a file a command in the README or docs writes: ``--chart F``, ``--json F``, ``> F``
WRITES = re.compile(r"(?:--chart|--json)[ =]([\w.-]+\.\w+)|> *([\w.-]+\.\w+)")


def test_files_the_docs_suggest_writing_are_ignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in WRITES.finditer(doc.read_text(encoding="utf-8")):
            written.add(m.group(1) or m.group(2))
    assert {"demo.png", "out.json", "report.json", "monitor.log"} <= written  # the pattern works
    for name in sorted(written):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{name} (written as the docs suggest) is not ignored"


def test_growth_summarises_every_repetition_as_median_and_range_per_mode() -> None:
    from benchmarks.growth import MODES, SCALES, rows, summarise

    def run(billed: int, bound: int | None) -> dict[str, object]:
        ratio = billed / bound if bound else None
        return {
            "billed_per_day": billed,
            "gets_per_day": 0,
            "bound_per_day": bound,
            "bound_ratio": ratio,
        }

    reps = [
        [
            {
                "runs": {
                    "naive": run(1000 * (i + 1) + r, None),
                    **{f"lowtide/{m}": run(100 * (i + 1) + 10 * r, 80 * (i + 1)) for m in MODES},
                }
            }
            for i in range(len(SCALES))
        ]
        for r in (4, 0, 1)  # the median is neither the mean nor the first or last repetition
    ]
    summary = summarise(reps)
    assert summary["billed_per_day"]["naive"][1] == {"median": 2001, "min": 2000, "max": 2004}
    assert set(summary["lower_bound_per_day"]) == set(MODES)
    assert set(summary["bound_ratio"]) == {f"lowtide/{m}" for m in MODES}  # naive has none
    assert summary["bound_ratio"]["lowtide/keyspace"][0]["median"] == 110 / 80
    table = rows(summary)
    assert [r[0] for r in table][-2:] == [f"lowtide/{m} / bound" for m in MODES]
    naive = next(r for r in table if r[0] == "naive")
    cells = ["1,001 (1,000-1,004)", "2,001 (2,000-2,004)", "3,001 (3,000-3,004)"]
    assert naive[1:] == [*cells, f"{2001 / 1001:.2f}x", f"{3001 / 2001:.2f}x"]
    assert next(r for r in table if r[0] == "lowtide/tracking / bound")[1] == "1.38x (1.25-1.75)"
