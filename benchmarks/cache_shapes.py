"""Billed commands of the tiered cache on production-shaped workloads, against their lower bound.

Run: ``python -m benchmarks.cache_shapes [--runs 3] [--shapes a,b] [--modes a,b] [--quick]``;
``python -m benchmarks.cache_shapes --compare BEFORE.json AFTER.json`` prints two result files
side by side (per shape and mode: billed and ratio to the bound, median and range);
``python -m benchmarks.cache_shapes --rebound FILE`` recomputes a results file's bounds and
ratios with the current bound (same seeded traces, measured commands kept).

For each shape of :mod:`benchmarks._shape_trace` (operation mix, Zipf skew and value size of a
published Twitter cache cluster) and each mode, 4 real processes (each its own event loop and
hub) replay the same trace against one embedded Valkey:

* ``tracking``: lowtide with CLIENT TRACKING (RESP3 listener);
* ``keyspace``: lowtide with keyspace notifications (what Upstash gets);
* ``pubsub``: lowtide with the pub/sub backplane (servers with neither);
* ``cache-aside``: plain redis-py, no lowtide (GET, on a miss load + SET; SET; DEL).

Commands are the server's own (``INFO commandstats`` between the edges of the measured window,
minus the runner's INFO), billed under the Upstash profile (PING, INFO... free), and each
process's ledger (component ``cache``) for the same window. The lower bound is computed from
the trace (:func:`benchmarks._shape_trace.bounds`). Each run has a seed of its own; every mode of a
run replays the same trace. Median and range over runs. Results: ``results/cache_shapes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import table, write
from benchmarks._shape_trace import SHAPES, Timing, bounds, generate
from lowtide.ledger import billing_profile
from lowtide.testing import ValkeyServer, commandstats_delta

UPSTASH = billing_profile("upstash")
MODES = ("tracking", "keyspace", "pubsub", "cache-aside")
ROOT = Path(__file__).resolve().parent.parent


def run_one(
    server: ValkeyServer, shape: str, mode: str, seed: int, timing: Timing, tag: str
) -> dict[str, Any]:
    """One shape in one mode: 4 processes, measured by the server."""
    server.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        go = d / "go"
        procs = []
        for p in range(timing.processes):
            cfg = {
                "shape": shape,
                "seed": seed,
                "timing": timing.to_dict(),
                "process": p,
                "mode": mode,
                "url": server.url,
                "namespace": f"b{tag}",
                "ready": str(d / f"ready{p}"),
                "go": str(go),
                "out": str(d / f"out{p}.json"),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks._shape_worker", json.dumps(cfg)],
                    cwd=ROOT,
                )
            )
        deadline = time.time() + 60
        while not all((d / f"ready{p}").exists() for p in range(timing.processes)):
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                for proc in procs:
                    proc.kill()
                raise SystemExit(f"{shape}/{mode}: a process did not start")
            time.sleep(0.01)
        t0 = time.time() + 0.5
        (d / "go.tmp").write_text(repr(t0))
        (d / "go.tmp").rename(go)  # atomic: a process never reads it half-written
        time.sleep(max(0.0, t0 + timing.warmup - time.time()))
        before = server.commandstats()
        for proc in procs:
            if proc.wait(timeout=timing.warmup + timing.measured + 120) != 0:
                raise SystemExit(f"{shape}/{mode}: a process failed")
        delta = commandstats_delta(before, server.commandstats())
        delta["info"] = delta.get("info", 0) - 1
        outs = [json.loads((d / f"out{p}.json").read_text()) for p in range(timing.processes)]
    server_cmds = {k: v for k, v in delta.items() if v}
    ledger: dict[str, int] = {}
    for out in outs:
        for k, v in out["ledger_cache_window"].items():
            ledger[k] = ledger.get(k, 0) + v
    stats: dict[str, int] = {}
    for out in outs:
        for k, v in out.get("cache", {}).items():
            if isinstance(v, int) and not isinstance(v, bool):
                stats[k] = stats.get(k, 0) + v
    return {
        "server": server_cmds,
        "billed": UPSTASH.billed(server_cmds),
        "ledger_cache": ledger,
        "ledger_cache_billed": UPSTASH.billed(ledger),
        "cache_stats": stats,
        "errors": [o["errors"] for o in outs],
        "mode_changes": [o.get("mode_changes", []) for o in outs],
        "late_ms_p99": max(o["late_ms_p99"] for o in outs),
        "loads": sum(o["loads"] for o in outs),
    }


def _mr(values: list[float], fmt: str = "{:,.0f}") -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def compare(before_path: str, after_path: str) -> None:
    """Print two result files side by side (see module docs)."""
    before = json.loads(Path(before_path).read_text())["results"]
    after = json.loads(Path(after_path).read_text())["results"]
    rows = []
    for shape in [s for s in SHAPES if s in after]:
        r = after[shape]
        bound = [b["bound"] for b in r["bound"]]
        for mode in [m for m in MODES if m in r["modes"]]:
            ones = r["modes"][mode]
            old = before.get(shape, {}).get("modes", {}).get(mode, [])
            row = [shape, mode, _mr(bound)]
            for runs in (old, ones):
                if runs:
                    row += [
                        _mr([o["billed"] for o in runs]),
                        _mr([o["ratio"] for o in runs], "{:.2f}"),
                        _mr([o["server"].get("publish", 0) for o in runs]),
                    ]
                else:
                    row += ["-", "-", "-"]
            rows.append(row)
    headers = ["shape", "mode", "lower bound", "billed before", "ratio before", "PUBLISH before"]
    headers += ["billed after", "ratio after", "PUBLISH after"]
    print(table(headers, rows))


def rebound(path: str) -> None:
    """Recompute the bound of every run of a results file with the current :func:`bounds`
    (each run's trace is seeded, so it is the same trace) and each run's ratio to it; the
    measured commands are kept as they were. Writes the file back."""
    data = json.loads(Path(path).read_text())
    timing = Timing(**data["timing"])
    for shape, r in data["results"].items():
        r["bound"] = [
            bounds(generate(SHAPES[shape], timing, run + 1), timing) for run in range(data["runs"])
        ]
        for ones in r["modes"].values():
            for run, one in enumerate(ones):
                one["ratio"] = round(one["billed"] / r["bound"][run]["bound"], 3)
    data["rebound"] = "bounds recomputed by: python -m benchmarks.cache_shapes --rebound FILE"
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"rewrote {path}")


def main() -> None:
    """Measure every shape in every mode; print tables and write JSON."""
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--rebound":
        rebound(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--quick", action="store_true", help="1 run, 10 s measured")
    ap.add_argument("--out", default="cache_shapes", help="results file name")
    args = ap.parse_args()
    timing = Timing(measured=10.0) if args.quick else Timing()
    runs = 1 if args.quick else args.runs
    shapes = args.shapes.split(",")
    modes = args.modes.split(",")
    results: dict[str, Any] = {}
    with ValkeyServer() as server:
        for run in range(runs):
            seed = run + 1
            for shape in shapes:
                b = bounds(generate(SHAPES[shape], timing, seed), timing)
                r = results.setdefault(shape, {"bound": [], "modes": {}})
                r["bound"].append(b)
                for mode in modes:
                    tag = f"{run}{shape[:2]}{mode[:2]}"
                    one = run_one(server, shape, mode, seed, timing, tag)
                    one["ratio"] = round(one["billed"] / b["bound"], 3)
                    one["disturbed"] = any(one["errors"]) or any(one["mode_changes"])
                    if one["disturbed"]:
                        print(
                            f"WARNING: errors or mode changes: {one['errors']} "
                            f"{one['mode_changes']} (machine overloaded?)",
                            flush=True,
                        )
                    r["modes"].setdefault(mode, []).append(one)
                    print(
                        f"run {run + 1} {shape:12} {mode:12} billed {one['billed']:>7,} "
                        f"bound {b['bound']:>7,} ratio {one['ratio']:.3f} {one['server']}",
                        flush=True,
                    )
    rows = []
    for shape, r in results.items():
        bound = [b["bound"] for b in r["bound"]]
        aside = r["modes"].get("cache-aside")
        for mode, ones in r["modes"].items():
            billed = [o["billed"] for o in ones]
            pub = [o["server"].get("publish", 0) for o in ones]
            row = [shape, mode, _mr(billed), _mr(bound), _mr([o["ratio"] for o in ones], "{:.2f}")]
            row.append(_mr(pub))
            if aside:
                row.append(
                    _mr([o["billed"] / a["billed"] for o, a in zip(ones, aside, strict=True)],
                        "{:.2f}")
                )  # fmt: skip
            rows.append(row)
    print()
    print(
        f"{runs} run(s); {timing.processes} processes x {timing.rate:.0f} ops/s, "
        f"{timing.measured:.0f} s measured after {timing.warmup:.0f} s; ttl {timing.ttl} s, "
        f"max_staleness {timing.max_staleness} s (time compressed 20x)"
    )
    headers = ["shape", "mode", "billed (Upstash)", "lower bound", "ratio", "PUBLISH"]
    print(table(headers + (["/ cache-aside"] if "cache-aside" in modes else []), rows))
    print()
    detail = []
    for shape, r in results.items():
        for protocol in ("notify", "renew"):
            n = r["bound"][0][protocol]
            extra = f", +{n['renewals']} renewals" if "renewals" in n else ""
            what = f"bound ({protocol}{extra}), run 1"
            detail.append([shape, what, n["get"], n["set"], n["del"], n["notify"]])
        for mode, ones in r["modes"].items():
            cmds = [o["server"] for o in ones]
            med = [
                statistics.median(c.get("get", 0) + c.get("mget", 0) for c in cmds),
                *(statistics.median(c.get(k, 0) for c in cmds) for k in ("set", "del")),
                statistics.median(c.get("publish", 0) for c in cmds),
            ]
            detail.append([shape, mode, *(f"{v:,.0f}" for v in med)])
    print(table(["shape", "median of runs", "GET+MGET", "SET", "DEL", "PUBLISH"], detail))
    path = write(
        args.out,
        {
            "command": "python -m benchmarks.cache_shapes" + (" --quick" if args.quick else ""),
            "timing": timing.to_dict(),
            "runs": runs,
            "results": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
