"""Every benchmark in one run, on this machine: ``python -m benchmarks [--quick] [--write]``.

Runs, one after another (each starts its own embedded server): the L1 map comparison, the codec
comparison, the ledger overhead, the hot paths against their floors, the cache (latency vs
cashews/aiocache/redis-py and commands per operation), the limiter and breaker (vs limits,
pybreaker, purgatory), memory with 100,000 tenants and, unless ``--quick``, cost growth at
1x/10x/100x traffic, the limiter at 1-150 % demand against its lower bound (``limiter_cost``,
~10 minutes), the cache on production-shaped workloads against its lower bound
(``cache_shapes``, ~25 minutes) and three default ``lowtide demo`` runs (~13 minutes).
Each writes its JSON to ``benchmarks/out/``; this collects them into
``benchmarks/out/results.json`` and ``results.md`` and prints where everything is. With
``--write`` all of it goes to the tracked files instead (``benchmarks/results/``,
``benchmarks/results.json``, ``benchmarks/results.md``). The soak
(``python -m benchmarks.soak``) is separate: it takes 10 minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks._common import HERE, RESULTS, WRITE

MODULES = [
    "l1_maps",
    "codec",
    "ledger",
    "hot_paths",
    "cache",
    "coordination",
    "memory",
    "growth",
    "limiter_cost",
    "cache_shapes",
    "demo_gap",
    "demo_runs",
]
SLOW = ("growth", "limiter_cost", "cache_shapes", "demo_runs")


def main() -> None:
    quick = "--quick" in sys.argv
    modules = [m for m in MODULES if not (quick and m in SLOW)]
    timings: dict[str, float] = {}
    report = ["# Benchmark results", "", f"`python -m benchmarks{' --quick' if quick else ''}`", ""]
    for name in modules:
        print(f"\n===== benchmarks.{name} =====", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{name}", *(["--write"] if WRITE else [])],
            check=True,
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        )
        print(done.stdout, end="", flush=True)
        timings[name] = round(time.perf_counter() - t0, 1)
        tables = [
            line
            for line in done.stdout.splitlines()
            if line.startswith("|") or (line and not line.startswith("wrote"))
        ]
        report += [f"## {name}", "", *tables, ""]
    summary = HERE if WRITE else RESULTS
    summary.mkdir(exist_ok=True)
    (summary / "results.md").write_text("\n".join(report) + "\n")
    combined: dict[str, object] = {"seconds": timings}
    for name in modules:
        path = RESULTS / f"{name}.json"
        if path.exists():
            combined[name] = json.loads(path.read_text())
    out = summary / "results.json"
    out.write_text(json.dumps(combined, indent=2, sort_keys=True))
    print(f"\nwrote {out} and {summary / 'results.md'}")
    print(", ".join(f"{k} {v}s" for k, v in timings.items()))


if __name__ == "__main__":
    main()
