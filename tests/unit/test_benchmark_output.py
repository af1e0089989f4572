"""Running a benchmark never rewrites the recorded (tracked) results; ``--write`` does."""

from __future__ import annotations

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
    tracked = subprocess.run(
        ["git", "ls-files", "benchmarks/out"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.stdout == ""
