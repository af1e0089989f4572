"""Cost growth: billed commands/day of each strategy at 1x, 10x and 100x the incident's traffic.

Each scale runs ``lowtide demo``'s three strategies (4 machines as real processes, one embedded
Valkey, commands counted by the server); the warm-up history is scaled so that every run replays
the same number of warm-up events. Writes a table, JSON and a PNG (log-log) chart.

Run: ``python -m benchmarks.growth [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, table, write
from lowtide.demo import DemoConfig, run_demo
from lowtide.testing import ValkeyServer

SCALES = (1.0, 10.0, 100.0)


async def run(seconds: float, read_mostly: bool, dense: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scales": list(SCALES),
        "profile": "dense" if dense else "read-mostly" if read_mostly else "incident",
        "billed_per_day": {},
        "gets_per_day": {},
        "lower_bound_per_day": [],
    }
    # read-mostly: 0.2 % writes and limits of 100 calls per 10 s per (tenant, connector)
    extra: dict[str, Any] = {"write_fraction": 0.002, "limit": 100} if read_mostly else {}
    if dense:  # few tenants, generous limits: every (tenant, connector) cell sees many calls
        extra = {"write_fraction": 0.002, "limit": 10_000, "tenants": 3}
    with ValkeyServer() as server:
        for scale in SCALES:
            cfg = DemoConfig(
                seconds=seconds,
                scale=scale,
                warmup=600.0 / scale,
                invalidation=("tracking",),
                **extra,
            )
            result = await run_demo(cfg, server.url)
            out["lower_bound_per_day"].append(round(result.bounds["tracking"].per_day))
            for name, r in result.strategies.items():
                out["billed_per_day"].setdefault(name, []).append(round(r.billed_per_day))
                out["gets_per_day"].setdefault(name, []).append(round(r.gets_per_day))
            print(
                f"x{scale:g}: "
                + ", ".join(
                    f"{n} {r.billed_per_day:,.0f}/day" for n, r in result.strategies.items()
                ),
                flush=True,
            )
    return out


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = {"naive": "#d62728", "ttl-fix": "#ff7f0e", "lowtide/tracking": "#1f77b4"}
    for name, values in data["billed_per_day"].items():
        ax.plot(data["scales"], values, marker="o", label=name, color=colours.get(name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traffic (x the incident's workload)")
    ax.set_ylabel("billed commands per day (server-counted)")
    ax.set_title("Cost growth with traffic")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--read-mostly", action="store_true", help="0.2 %% writes, larger limits")
    parser.add_argument("--dense", action="store_true", help="3 tenants, 0.2 %% writes, big limits")
    args = parser.parse_args()
    data = asyncio.run(run(args.seconds, args.read_mostly, args.dense))
    rows = []
    for name, values in data["billed_per_day"].items():
        growth10 = values[1] / values[0] if values[0] else float("nan")
        growth100 = values[2] / values[1] if values[1] else float("nan")
        rows.append([name, *(f"{v:,}" for v in values), f"{growth10:.2f}x", f"{growth100:.2f}x"])
        data.setdefault("growth_10x", {})[name] = round(growth10, 2)
        data.setdefault("growth_100x_vs_10x", {})[name] = round(growth100, 2)
    print(table(["strategy", "1x", "10x", "100x", "10x / 1x", "100x / 10x"], rows))
    lb = data["lower_bound_per_day"]
    print(f"lower bound: {', '.join(f'{v:,}' for v in lb)}")
    RESULTS.mkdir(exist_ok=True)
    name = "growth-dense" if args.dense else "growth-read-mostly" if args.read_mostly else "growth"
    png = RESULTS / f"{name}.png"
    chart(data, png)
    print(f"wrote {write(name, data)} and {png}")


if __name__ == "__main__":
    main()
