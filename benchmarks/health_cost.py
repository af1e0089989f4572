"""What one ``lt.health()`` and one Prometheus scrape cost as the ledger grows, before and after.

A local hub (no server: the ledger is in-process) gets 14,000 and then 50,000 distinct
(tenant, key family) ledger rows (half as many tenants, two families each, uneven counts). Then,
each timed on its own with ``perf_counter`` and reported as median and range over repeated runs:

* ``health()``: one ``lt.health()`` call (what GET /health runs);
* ``collect() first``: the first scrape of a new ``LowtideCollector`` (top tenants chosen);
* ``collect() steady``: every later scrape of the same collector;
* ``record() ns``: the ledger's hot path, one ``record()`` of one command on an existing row
  (best of 9 runs of 100,000: the least disturbed by other work on a shared machine).

The "before" column runs the same measurement in a subprocess on the source tree of ``--base``
(default: the merge base with ``main``), extracted with ``git archive``, so both columns come
from one run on one machine. Every call blocks the event loop for as long as it takes.

Run: ``python -m benchmarks.health_cost [--base REV] [--repeats 11]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import timeit
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks._common import table, write

ROOT = Path(__file__).parent.parent
SIZES = (14_000, 50_000)


def _fill(ledger: Any, rows: int) -> None:
    from lowtide.context import Attribution

    entries = []
    for i in range(rows // 2):
        for fam in ("lt:c:profiles:*", "lt:t:slack:*"):
            entries += [("get", Attribution("cache", fam, f"tenant-{i:05d}"))] * (i % 13 + 1)
    for start in range(0, len(entries), 10_000):
        ledger.record(entries[start : start + 10_000])


def _times_ms(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


def _measure_size(rows: int, repeats: int) -> dict[str, Any]:
    from lowtide import Lowtide
    from lowtide.context import Attribution
    from lowtide.integrations.prometheus import LowtideCollector

    lt = Lowtide(None, instance="bench")
    _fill(lt.ledger, rows)
    assert lt.health()["ledger"]["commands"] == lt.ledger.total

    def first_scrape() -> None:
        list(LowtideCollector(lt).collect())

    steady = LowtideCollector(lt)
    samples = sum(len(m.samples) for m in steady.collect() if m.name == "lowtide_redis_commands")
    hot = [("get", Attribution("cache", "lt:c:profiles:*", "tenant-00001"))]
    return {
        "health_ms": _times_ms(lt.health, repeats),
        "collect_first_ms": _times_ms(first_scrape, repeats),
        "collect_steady_ms": _times_ms(lambda: list(steady.collect()), repeats),
        "record_ns": min(timeit.repeat(lambda: lt.ledger.record(hot), number=100_000, repeat=9))
        / 100_000
        * 1e9,
        "command_series": samples,
    }


def measure(repeats: int) -> dict[str, Any]:
    """Time health() and collect() at each size with whatever ``lowtide`` is importable."""
    import lowtide

    return {
        "lowtide": str(Path(lowtide.__file__).parent),
        "sizes": {str(rows): _measure_size(rows, repeats) for rows in SIZES},
    }


def _measure_base(base: str, repeats: int) -> dict[str, Any]:
    """:func:`measure` on the ``src`` tree of commit ``base``, in a subprocess."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", base, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(tmp) / "src"), str(ROOT)]))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.health_cost",
                "--measure",
                "--repeats",
                str(repeats),
            ],
            check=True,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["lowtide"].startswith(tmp):
        raise RuntimeError(f"the base run imported lowtide from {result['lowtide']}")
    return result


def _cell(t: dict[str, float]) -> str:
    return f"{t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f})"


def main() -> None:
    """Measure before and after and report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default=None, help="commit to compare with (default: main)")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeats)))
        return
    base = (
        args.base
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    before = _measure_base(base, args.repeats)
    after = measure(args.repeats)
    rows: list[list[object]] = []
    for size in map(str, SIZES):
        b, a = before["sizes"][size], after["sizes"][size]
        for key, label in (
            ("health_ms", "health() ms"),
            ("collect_first_ms", "collect() first ms"),
            ("collect_steady_ms", "collect() steady ms"),
        ):
            ratio = b[key]["median"] / max(a[key]["median"], 1e-9)
            rows.append([f"{int(size):,}", label, _cell(b[key]), _cell(a[key]), f"{ratio:,.0f}x"])
        rows.append(
            [
                f"{int(size):,}",
                "record() ns/command, best of 9",
                f"{b['record_ns']:.0f}",
                f"{a['record_ns']:.0f}",
                f"{b['record_ns'] / a['record_ns']:.2f}x",
            ]
        )
        rows.append(
            [
                f"{int(size):,}",
                "lowtide_redis_commands series",
                b["command_series"],
                a["command_series"],
                "",
            ]
        )
    print(
        table(
            ["ledger rows", "measure", f"before ({base[:8]})", "after", "before/after"],
            rows,
        )
    )
    print(f"median (min-max) over {args.repeats} runs each")
    print(
        "wrote",
        write(
            "health_cost",
            {"base": base, "repeats": args.repeats, "before": before, "after": after},
        ),
    )


if __name__ == "__main__":
    main()
