"""Shared helpers: timing with repeats, machine description, JSON output.

Results go to ``benchmarks/out/`` (not tracked by git), so running a benchmark never rewrites
the recorded results; ``--write`` (accepted by every benchmark, taken off ``sys.argv`` here
before a module parses its own arguments) writes them to ``benchmarks/results/``, the tracked
files the docs quote.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
#: True when this run records its results (``--write``)
WRITE = "--write" in sys.argv
if WRITE:
    sys.argv.remove("--write")
#: where results and charts are written (see module docs)
RESULTS = HERE / ("results" if WRITE else "out")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def per_call_us(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the time per call in microseconds."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number * 1e6)
    return statistics.median(runs)


def write(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the machine) to :data:`RESULTS`/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, sort_keys=True))
    return path


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
