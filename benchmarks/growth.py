"""Cost growth: billed commands/day of each strategy at 1x, 10x and 100x the incident's traffic.

Each scale runs ``lowtide demo``'s strategies (4 machines as real processes, one embedded Valkey
per repetition, commands counted by the server): ``naive``, ``ttl-fix`` and lowtide in both
invalidation modes it uses on real servers, ``lowtide/tracking`` (CLIENT TRACKING) and
``lowtide/keyspace`` (keyspace notifications, the Upstash mode), each lowtide run with the lower
bound of its own run. Every profile is measured ``--repeat`` times (default 3); the JSON keeps
every run, and the table and chart give the median (min-max) of the repetitions.

Windows, warm-up and time compression (trace seconds; per-day figures are per day of trace):

* 1x: 300 s of warm-up, 300 s measured (one cache TTL, so each L2 expiry is sampled once),
  replayed 20x faster than real time (``lowtide demo``'s default);
* 10x: 60 s of warm-up, 120 s measured (12 limiter windows), 10x faster (the demo's default
  would be 2x; 10x replays the same events per wall second as 100x in real time);
* 100x: 15 s of warm-up (at least one whole limiter window before the measured one, whatever
  the phase), 30 s measured, in real time (at 2x, 464 of the naive code's operations raised
  in a 60 s run).

That is ~21 minutes per profile on a 2-core machine (~7 minutes per repetition, over half of it
at 100x), and none of it is the demo's 1,000 s steady state (``python -m benchmarks.demo_runs``):
its 1,600 s of warm-up and window would take 4 x 1,600 s per repetition at 100x. A run whose
machines start events late by more than a tenth of a limiter window is reported (the demo's
note) and kept.

``--modes pubsub`` measures the pub/sub backplane instead (the last resort, for servers with
neither; written as ``growth[-profile]-pubsub.json``).

Run: ``python -m benchmarks.growth [--read-mostly | --dense] [--modes M [M]] [--repeat 3]
[--seconds S [S S]] [--warmup W [W W]]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, table, write
from lowtide.demo import DemoConfig, StrategyResult, run_demo
from lowtide.testing import ValkeyServer

SCALES = (1.0, 10.0, 100.0)
#: measured trace seconds, warm-up trace seconds and time compression, per scale (see above)
SECONDS = (300.0, 120.0, 30.0)
WARMUP = (300.0, 60.0, 15.0)
SPEEDUP = (20.0, 10.0, 1.0)
#: lowtide's invalidation modes on real servers: CLIENT TRACKING, keyspace notifications
MODES = ("tracking", "keyspace")
PROFILES: dict[str, dict[str, Any]] = {
    "incident": {},
    # 0.2 % writes and limits of 100 calls per 10 s per (tenant, connector)
    "read-mostly": {"write_fraction": 0.002, "limit": 100},
    # few tenants, generous limits: every (tenant, connector) cell sees many calls
    "dense": {"write_fraction": 0.002, "limit": 10_000, "tenants": 3},
}
#: the per-run numbers kept and summarised (lowtide runs also have the bound's)
METRICS = ("billed_per_day", "gets_per_day", "bound_per_day", "bound_ratio")


def config(
    profile: str,
    i: int,
    seconds: tuple[float, ...],
    warmup: tuple[float, ...],
    modes: tuple[str, ...] = MODES,
) -> DemoConfig:
    """The demo's configuration for scale ``SCALES[i]``."""
    return DemoConfig(
        seconds=seconds[i],
        warmup=warmup[i],
        speedup=SPEEDUP[i],
        scale=SCALES[i],
        invalidation=modes,
        **PROFILES[profile],
    )


def metrics(r: StrategyResult) -> dict[str, Any]:
    """What is kept of one run."""
    bound = float(r.lower_bound["per_day"]) if r.lower_bound else None
    return {
        "billed_per_day": round(r.billed_per_day),
        "gets_per_day": round(r.gets_per_day),
        "bound_per_day": round(bound) if bound is not None else None,
        "bound_ratio": round(r.bound_ratio, 4) if r.bound_ratio is not None else None,
        "local_hit_ratio": round(r.local_hit_ratio, 4),
        "overshoot": r.overshoot,
        "errors": sum(r.errors.values()),
        "lag_p99_ms": round(r.lag_p99_ms, 1),
        "seconds": round(r.seconds, 2),
    }


async def repetition(
    profile: str, seconds: tuple[float, ...], warmup: tuple[float, ...], modes: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Every scale once, on one embedded server: per scale ``{"runs", "notes", "wall"}``."""
    out = []
    with ValkeyServer() as server:
        for i, scale in enumerate(SCALES):
            t0 = time.perf_counter()
            result = await run_demo(config(profile, i, seconds, warmup, modes), server.url)
            runs = {name: metrics(r) for name, r in result.strategies.items()}
            wall = round(time.perf_counter() - t0, 1)
            out.append({"scale": scale, "runs": runs, "notes": result.notes, "wall": wall})
            line = ", ".join(f"{n} {m['billed_per_day']:,}" for n, m in runs.items())
            print(f"  x{scale:g} ({wall:.0f} s): {line}", flush=True)
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(reps: list[list[dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Per metric, per run (``naive``, ..., ``lowtide/<mode>``): a spread per scale, over the
    repetitions (``reps[r][scale index]``). The bound is keyed by mode."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in METRICS}
    for metric in METRICS:
        for name in reps[0][0]["runs"]:
            per_scale = [
                [rep[i]["runs"][name][metric] for rep in reps] for i in range(len(reps[0]))
            ]
            if any(v is None for values in per_scale for v in values):
                continue
            key = name.partition("/")[2] if metric == "bound_per_day" else name
            out[metric][key] = [spread(values) for values in per_scale]
    out["lower_bound_per_day"] = out.pop("bound_per_day")
    return out


def cell(s: dict[str, float], ratio: bool = False) -> str:
    """``1,234 (1,200-1,300)`` or ``1.23x (1.20-1.30)``."""
    if ratio:
        return f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def growth(values: list[dict[str, float]]) -> tuple[float, float]:
    """Growth of the median from 1x to 10x and from 10x to 100x."""
    m = [v["median"] for v in values]
    return (m[1] / m[0] if m[0] else float("nan"), m[2] / m[1] if m[1] else float("nan"))


def rows(summary: dict[str, dict[str, list[dict[str, float]]]]) -> list[list[object]]:
    """The printed table: strategies, bounds per mode, lowtide / bound per mode."""
    out: list[list[object]] = []
    lines = [(n, v, False) for n, v in summary["billed_per_day"].items()]
    lines += [(f"lower bound ({m})", v, False) for m, v in summary["lower_bound_per_day"].items()]
    lines += [(f"{n} / bound", v, True) for n, v in summary["bound_ratio"].items()]
    for name, values, ratio in lines:
        g = [f"{x:.2f}x" for x in growth(values)] if not ratio else ["", ""]
        out.append([name, *(cell(v, ratio) for v in values), *g])
    return out


COLOURS = {
    "naive": "#d62728",
    "ttl-fix": "#ff7f0e",
    "lowtide/tracking": "#1f77b4",
    "lowtide/keyspace": "#17becf",
    "lowtide/pubsub": "#2ca02c",
}


def chart(data: dict[str, Any], path: Path) -> None:
    """Log-log chart of the medians, min-max as error bars, the bound dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    summary, scales = data["summary"], data["scales"]
    series = [(n, v, "-") for n, v in summary["billed_per_day"].items()]
    series += [(f"lower bound ({m})", v, "--") for m, v in summary["lower_bound_per_day"].items()]
    for name, values, style in series:
        med = [v["median"] for v in values]
        err = [[m - v["min"] for m, v in zip(med, values, strict=True)]]
        err.append([v["max"] - m for m, v in zip(med, values, strict=True)])
        colour = COLOURS.get(name, "#7f7f7f")
        if style == "--":
            colour = "#555555" if "tracking" in name else "#aaaaaa"
        marker = "o" if style == "-" else None
        ax.errorbar(
            scales, med, yerr=err, marker=marker, ls=style, label=name, color=colour, capsize=3
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traffic (x the incident's workload)")
    ax.set_ylabel("billed commands per day of trace (server-counted)")
    ax.set_title(
        f"Cost growth with traffic ({data['profile']}; median, min-max of {data['repeat']})"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def per_scale(values: list[float], name: str, parser: argparse.ArgumentParser) -> tuple[float, ...]:
    """One value for every scale, or one per scale."""
    if len(values) == 1:
        return tuple(values * len(SCALES))
    if len(values) != len(SCALES) or min(values) < 0:
        parser.error(f"{name}: one value, or one per scale ({len(SCALES)}), each >= 0")
    return tuple(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the profile")
    parser.add_argument("--seconds", type=float, nargs="+", default=list(SECONDS))
    parser.add_argument("--warmup", type=float, nargs="+", default=list(WARMUP))
    parser.add_argument("--read-mostly", action="store_true", help="0.2 %% writes, larger limits")
    parser.add_argument("--dense", action="store_true", help="3 tenants, 0.2 %% writes, big limits")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(MODES),
        choices=["tracking", "keyspace", "pubsub"],
        help="lowtide's invalidation modes to measure (default: tracking keyspace)",
    )
    args = parser.parse_args()
    modes = tuple(dict.fromkeys(args.modes))
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    seconds = per_scale(args.seconds, "--seconds", parser)
    warmup = per_scale(args.warmup, "--warmup", parser)
    profile = "dense" if args.dense else "read-mostly" if args.read_mostly else "incident"
    cfgs = [config(profile, i, seconds, warmup, modes) for i in range(len(SCALES))]
    print(
        "trace seconds measured (warm-up) at speedup: "
        + ", ".join(f"x{c.scale:g} {c.seconds:g} ({c.warmup:g}) at {c.time_scale:g}x" for c in cfgs)
        + "; per-day figures are per day of trace time",
        flush=True,
    )
    t0 = time.perf_counter()
    reps = []
    for r in range(args.repeat):
        print(f"repetition {r + 1} of {args.repeat}", flush=True)
        reps.append(asyncio.run(repetition(profile, seconds, warmup, modes)))
    summary = summarise(reps)
    data: dict[str, Any] = {
        "profile": profile,
        "scales": list(SCALES),
        "repeat": args.repeat,
        "config": {
            "seconds": list(seconds),
            "warmup": list(warmup),
            "speedup": [c.time_scale for c in cfgs],
            "machines": cfgs[0].machines,
            "seed": cfgs[0].seed,
            "invalidation": list(modes),
            "profile": PROFILES[profile],
        },
        "repetitions": reps,
        "summary": summary,
        # worst run's lag per scale, against the demo's threshold (a tenth of a limiter window)
        "lag_p99_ms_worst": [
            max(m["lag_p99_ms"] for rep in reps for m in rep[i]["runs"].values())
            for i in range(len(SCALES))
        ],
        "lag_threshold_ms": [round(100 * c.wall(c.per), 1) for c in cfgs],
        "notes": sorted({n for rep in reps for s in rep for n in s["notes"]}),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    for name, values in summary["billed_per_day"].items():
        g10, g100 = growth(values)
        data.setdefault("growth_10x", {})[name] = round(g10, 2)
        data.setdefault("growth_100x_vs_10x", {})[name] = round(g100, 2)
    headers = ["billed/day, median (min-max)", "1x", "10x", "100x", "10x / 1x", "100x / 10x"]
    print(table(headers, rows(summary)))
    lag = ", ".join(
        f"x{s:g} {v:g} ms (note above {t:g})"
        for s, v, t in zip(SCALES, data["lag_p99_ms_worst"], data["lag_threshold_ms"], strict=True)
    )
    print(f"lag p99, worst run: {lag}; {data['wall_seconds']:.0f} s in all")
    for note in data["notes"]:
        print(f"note: {note}")
    RESULTS.mkdir(exist_ok=True)
    name = "growth" if profile == "incident" else f"growth-{profile}"
    if modes != MODES:
        name += "-" + "-".join(modes)
    png = RESULTS / f"{name}.png"
    chart(data, png)
    print(f"wrote {write(name, data)} and {png}")


if __name__ == "__main__":
    main()
