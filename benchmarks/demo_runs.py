"""Repeated ``lowtide demo`` runs: median and min-max per run (strategy and invalidation mode).

Each repetition is the default demo (an embedded Valkey per repetition, 4 machines as real
processes, time compressed as ``lowtide demo`` does by default). Prints a table and writes
``benchmarks/results/demo_runs.json``: per run, median and min-max of billed commands/day,
GETs/day, $/month, the lower bound and lowtide / bound, reads served in process and overshoot.

``--long`` also measures the same trace in real time (``--speedup 1``, 600 s of warm-up, 2,000 s
measured; each run in its own process with its own server, all in parallel: ~45 minutes) and
reports how far each run's default median is from it (the steady-state check).
``--default-from F`` takes the default repetitions from an earlier run's JSON ``F`` (same
configuration) instead of running them again, so ``--long`` can be made on its own.

``--dropin`` adds the run of the naive code with only its client swapped for ``lt.redis()``
(``lowtide demo --dropin``). Every invalidation mode is measured (``lowtide demo --invalidation
all``: tracking, keyspace, pub/sub); ``--invalidation both`` measures the demo's default two.

Run: ``python -m benchmarks.demo_runs [--repeat 3] [--long] [--dropin]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import table, write
from lowtide.demo import DemoConfig, run_demo
from lowtide.demo.analysis import StrategyResult
from lowtide.demo.trace import ALL_INVALIDATION_RUNS, INVALIDATION_RUNS
from lowtide.testing import ValkeyServer

METRICS = ("billed_per_day", "gets_per_day", "usd_per_month", "bound_per_day", "bound_ratio")
#: the real-time comparison: two spans of the limiter's counter hashes measured, as the default
#: measures one (see ``DemoConfig.seconds``)
LONG_SECONDS, LONG_WARMUP = 2000.0, 600.0


def metrics(r: StrategyResult) -> dict[str, Any]:
    """What the benchmark keeps of one run."""
    lb = r.lower_bound or {}
    return {
        "billed_per_day": round(r.billed_per_day),
        "gets_per_day": round(r.gets_per_day),
        "usd_per_month": round(r.usd_per_month, 2),
        "bound_per_day": round(float(lb["per_day"])) if lb else None,
        "bound_ratio": round(r.bound_ratio, 3) if r.bound_ratio is not None else None,
        "local_hit_ratio": round(r.local_hit_ratio, 4),
        "overshoot": r.overshoot,
        "admitted": r.admitted,
        "stale_beyond_bound": r.stale_beyond_bound,
        "lag_p99_ms": round(r.lag_p99_ms, 1),
        # lowtide's own ledger, per day of trace (where its commands go: docs/demo.md)
        "attribution_per_day": {k: round(v * 86_400 / r.seconds) for k, v in r.attribution.items()},
    }


async def one(config: DemoConfig, runs: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One demo on its own embedded server: ``{run: metrics}`` plus its notes."""
    with ValkeyServer() as server:
        result = await run_demo(config, server.url, runs=runs)
    out: dict[str, Any] = {name: metrics(r) for name, r in result.strategies.items()}
    out["_notes"] = result.notes
    return out


def summarise(reps: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, min and max of each metric of each run over the repetitions."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in (k for k in reps[0] if not k.startswith("_")):
        out[name] = {}
        for metric in (*METRICS, "local_hit_ratio", "overshoot"):
            values = [rep[name][metric] for rep in reps if rep[name][metric] is not None]
            if values:
                out[name][metric] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
    return out


def _spread(s: dict[str, float]) -> str:
    half = (s["max"] - s["min"]) / 2 / s["median"] if s["median"] else 0.0
    return f"±{half:.1%}"


def long_runs(config: DemoConfig, seconds: float, warmup: float) -> dict[str, Any]:
    """Every run of ``config`` in real time (``seconds`` measured after ``warmup``), each in
    its own process with its own server, in parallel."""
    procs = []
    with tempfile.TemporaryDirectory(prefix="lowtide-demo-long-") as tmp:
        for name in config.runs:
            out = Path(tmp) / f"{name.replace('/', '-')}.json"
            cmd = [sys.executable, "-m", "benchmarks.demo_runs", "--single", name, str(out)]
            cmd += ["--long-seconds", str(seconds), "--long-warmup", str(warmup)]
            procs.append((name, out, subprocess.Popen(cmd)))
        results: dict[str, Any] = {}
        for name, out, proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"the real-time run of {name} failed")
            results.update(json.loads(out.read_text()))
    return results


def single(name: str, out: Path, seconds: float, warmup: float) -> None:
    """One run of the real-time comparison (a subprocess of :func:`long_runs`)."""
    cfg = DemoConfig(seconds=seconds, warmup=warmup, speedup=1.0, dropin=name == "dropin")
    out.write_text(json.dumps(asyncio.run(one(cfg, (name,)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long", action="store_true", help="also a real-time run (~45 minutes)")
    parser.add_argument("--seconds", type=float, default=DemoConfig().seconds)
    parser.add_argument("--warmup", type=float, default=DemoConfig().warmup)
    parser.add_argument("--long-seconds", type=float, default=LONG_SECONDS)
    parser.add_argument("--long-warmup", type=float, default=LONG_WARMUP)
    parser.add_argument(
        "--dropin", action="store_true", help="also the naive code on lowtide's drop-in client"
    )
    parser.add_argument(
        "--default-from", type=Path, help="the default repetitions from an earlier run's JSON"
    )
    parser.add_argument("--invalidation", choices=("all", "both"), default="all")
    parser.add_argument("--single", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        single(args.single[0], Path(args.single[1]), args.long_seconds, args.long_warmup)
        return
    modes = ALL_INVALIDATION_RUNS if args.invalidation == "all" else INVALIDATION_RUNS
    config = DemoConfig(
        seconds=args.seconds, warmup=args.warmup, dropin=args.dropin, invalidation=modes
    )
    reps = []
    if args.default_from:
        earlier = json.loads(args.default_from.read_text())
        if earlier["config"]["seconds"] != config.seconds or earlier["config"]["warmup"] != (
            config.warmup
        ):
            parser.error(f"{args.default_from} was measured with another configuration")
        reps = earlier["repetitions"]
        args.repeat = 0
    for i in range(args.repeat):
        reps.append(asyncio.run(one(config)))
        print(
            f"repetition {i + 1}: "
            + ", ".join(f"{k} {v['billed_per_day']:,}" for k, v in reps[-1].items() if k[0] != "_"),
            flush=True,
        )
    summary = summarise(reps)
    data: dict[str, Any] = {
        "config": {
            "seconds": config.seconds,
            "warmup": config.warmup,
            "speedup": config.time_scale,
            "machines": config.machines,
            "seed": config.seed,
            "dropin": config.dropin,
            "invalidation": list(config.invalidation),
        },
        "repeat": len(reps),
        "repetitions": reps,
        "summary": summary,
    }
    rows: list[list[object]] = []
    for name, s in summary.items():
        b, ratio = s["billed_per_day"], s.get("bound_ratio")
        rows.append(
            [
                name,
                f"{b['median']:,.0f}",
                f"{b['min']:,.0f}-{b['max']:,.0f}",
                _spread(b),
                f"${s['usd_per_month']['median']:,.2f}",
                f"{s['bound_per_day']['median']:,.0f}" if "bound_per_day" in s else "-",
                f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "-",
                f"{s['local_hit_ratio']['median']:.1%}",
            ]
        )
    headers = ["run", "billed/day", "min-max", "spread", "$/month", "bound/day", "/ bound"]
    print(table([*headers, "in process"], rows))
    if args.long:
        long = long_runs(config, args.long_seconds, args.long_warmup)
        long.pop("_notes", None)
        data["long"] = {
            "seconds": args.long_seconds,
            "warmup": args.long_warmup,
            "speedup": 1.0,
            **long,
        }
        compare: list[list[object]] = []
        for name, s in summary.items():
            ref = long[name]["billed_per_day"]
            diff = s["billed_per_day"]["median"] / ref - 1 if ref else float("nan")
            data.setdefault("default_vs_long", {})[name] = round(diff, 4)
            bound = long[name]["bound_ratio"]
            compare.append(
                [
                    name,
                    f"{ref:,}",
                    f"{s['billed_per_day']['median']:,.0f}",
                    f"{diff:+.1%}",
                    f"{bound:.2f}x" if bound is not None else "-",
                ]
            )
        print(f"\n{args.long_seconds:g} s measured in real time vs the default's median:")
        print(table(["run", "real time", "default median", "difference", "/ bound"], compare))
    print(f"wrote {write('demo_runs', data)}")


if __name__ == "__main__":
    main()
