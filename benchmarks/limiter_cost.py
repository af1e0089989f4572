"""The rate limiter's cost against its own lower bound: 4 real processes, one fleet-wide limit.

Each row runs 4 worker processes (separate interpreters and event loops, each with its own
``Lowtide`` hub, or its own ``limits`` storage) against one embedded Valkey. They share one
fixed-window limit of 200 calls per 2 s for tenant ``t1`` and call it with Poisson arrivals
(seeded) whose total rate is the row's demand (1 % ... 150 % of the limit), split evenly across
the 4 processes. After 2 warm-up windows (one-off commands: TIME, the configuration GET/SET,
the penalty GET, the listener's set-up) the benchmark reads the server's ``INFO commandstats``
just before the first and after the last measured window, and bills the delta under the
Upstash profile (each ``redis.call`` in a script billed, PING/INFO free).

Columns:

* ``billed/1k``: billed commands per 1,000 decisions in the measured windows;
* ``bound``: the limiter's lower bound, the number of (process, window) pairs in which that
  process admitted at least one call: each needs at least one reservation (one command);
* ``ratio``: billed / bound (goal: <= 1.25 at 1, 10, 50 and 100 % demand);
* ``overshoot``: admissions beyond the limit, summed over every window (warm-up included),
  counted from each process's admission times on the server's window boundaries (must be 0);
* ``util``: admitted / limit per measured window (median; goal >= 90 % when saturated);
* ``admit``: admitted / asked (under the limit this should be 100 %: lower is under-use);
* ``outside``: billed commands outside the measured windows, per process: set-up (TIME, the
  configuration, the penalty, the listener), the 2 warm-up windows and closing.

The token-bucket rows (same limit as burst and rate, at 10 % and 100 % demand, measured over 60
windows: a hub's rate lease lasts a minute) report billed per 1,000 decisions (goal: <= 50 at
10 % demand) and the largest excess of admissions over ``burst + rate x elapsed`` on any
interval (must be <= 0). ``limits`` (if importable) runs the same arrivals through its
fixed window (``hit`` per call); its windows start at each key's first hit, so its overshoot
is not counted on aligned windows. Last, the hot path: ``acquire`` with a lease in hand vs the
floor of awaiting a trivial coroutine, in one process.

Run: ``python -m benchmarks.limiter_cost [--windows N] [--levels 0.01,0.1,...]``
(``--hot-path``: only the hot-path timing).
Timing on a shared machine is noisy; command counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import table, write

LIMIT, PER, PROCS = 200, 2.0, 4
WARMUP = 2  # windows before the measured ones
EPS = 0.02  # readings this long before a window boundary (the quietest moment)
LEVELS = (0.01, 0.10, 0.50, 0.80, 1.00, 1.50)
BUCKET_LEVELS = (0.10, 1.00)
ROOT = Path(__file__).parent.parent


# -- the worker (one process of the fleet) ---------------------------------------------------
async def _arrivals(rate: float, start: float, end: float, seed: int, now: Any) -> Any:
    """Poisson arrival times in [start, end), as an async generator that sleeps until each."""
    rng = random.Random(seed)
    t = start + rng.expovariate(rate)
    while t < end:
        delay = t - now()
        if delay > 0:
            await asyncio.sleep(delay)
        yield t
        t += rng.expovariate(rate)


async def _lowtide_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from lowtide import Lowtide
    from lowtide.testing import ledger_commands

    async with Lowtide(cfg["url"], instance=f"w{cfg['index']}") as lt:
        limiter = lt.rate_limiter(
            cfg["name"],
            LIMIT,
            PER,
            algorithm=cfg["algorithm"],
            fleet_size=PROCS,  # declared: heartbeats would count 1..4 for their first minute
        )
        await limiter.prefetch("t1")  # the server clock, the configuration, the penalty
        decisions: list[tuple[float, bool]] = []
        async for _ in _arrivals(
            cfg["rate"], cfg["start"], cfg["end"], cfg["seed"], lt.server_time
        ):
            d = await limiter.acquire("t1")
            decisions.append((lt.server_time(), d.allowed))
        return {
            "decisions": decisions,
            "ledger": ledger_commands(lt),
            "info": {k: v for k, v in limiter.info().items() if isinstance(v, int | float)},
        }


async def _limits_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from limits import RateLimitItemPerSecond
    from limits.aio import strategies
    from limits.aio.storage import RedisStorage

    storage = RedisStorage(
        cfg["url"].replace("redis://", "async+redis://"), implementation="redispy"
    )
    limiter = strategies.FixedWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(LIMIT, int(PER))
    decisions: list[tuple[float, bool]] = []
    async for _ in _arrivals(cfg["rate"], cfg["start"], cfg["end"], cfg["seed"], time.time):
        allowed = await limiter.hit(item, cfg["name"], "t1")
        decisions.append((time.time(), bool(allowed)))
    return {"decisions": decisions, "ledger": {}, "info": {}}


def worker_main(cfg_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    run = _limits_worker if cfg["kind"] == "limits" else _lowtide_worker
    result = asyncio.run(run(cfg))
    Path(cfg["out"]).write_text(json.dumps(result))


# -- the parent: one row -------------------------------------------------------------------
def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def run_row(
    server: Any, kind: str, algorithm: str, demand: float, windows: int, tag: str
) -> dict[str, Any]:
    from lowtide.ledger import billing_profile
    from lowtide.testing import commandstats_delta

    upstash = billing_profile("upstash")
    rate = demand * LIMIT / PER / PROCS  # calls per second per process
    # start on a window boundary, far enough ahead for 4 interpreters to start
    t0 = (math.floor(time.time() / PER) + math.ceil(4.0 / PER) + 1) * PER
    measured_from = t0 + WARMUP * PER
    end = measured_from + windows * PER
    name = f"cost-{tag}-{kind}-{algorithm}-{demand:g}"
    tmp = Path(tempfile.mkdtemp(prefix="limiter_cost"))
    stats0 = server.commandstats()
    procs = []
    for i in range(PROCS):
        cfg = {
            "kind": kind,
            "algorithm": algorithm,
            "url": server.url,
            "name": name,
            "index": i,
            "rate": rate,
            "start": t0,
            "end": end,
            "seed": 1000 * i + round(demand * 1000),  # the same arrivals in every run
            "out": str(tmp / f"out{i}.json"),
        }
        path = tmp / f"cfg{i}.json"
        path.write_text(json.dumps(cfg))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.limiter_cost", "--worker", str(path)], cwd=ROOT
            )
        )
    _sleep_until(measured_from - EPS)
    stats1 = server.commandstats()
    _sleep_until(end - EPS)
    stats2 = server.commandstats()
    for p in procs:
        if p.wait(timeout=120) != 0:
            raise RuntimeError(f"worker failed: {kind} {algorithm} {demand}")
    stats3 = server.commandstats()
    results = [json.loads((tmp / f"out{i}.json").read_text()) for i in range(PROCS)]

    steady = commandstats_delta(stats1, stats2)
    steady["info"] = steady.get("info", 0) - 1
    total = commandstats_delta(stats0, stats3)
    total["info"] = total.get("info", 0) - 3
    one_off = {k: total.get(k, 0) - steady.get(k, 0) for k in total}
    first_w = round(measured_from / PER)
    last_w = first_w + windows  # exclusive
    asked = admitted = 0
    per_window: Counter[int] = Counter()
    pairs: set[tuple[int, int]] = set()
    all_admissions: list[float] = []
    for i, r in enumerate(results):
        for t, ok in r["decisions"]:
            w = math.floor(t / PER)
            if ok:
                per_window[w] += 1
                all_admissions.append(t)
            if first_w <= w < last_w:
                asked += 1
                if ok:
                    admitted += 1
                    pairs.add((i, w))
    billed = upstash.billed({k: v for k, v in steady.items() if v})
    row: dict[str, Any] = {
        "kind": kind,
        "algorithm": algorithm,
        "demand": demand,
        "windows": windows,
        "decisions": asked,
        "admitted": admitted,
        "billed": billed,
        "billed_per_1000": round(billed * 1000 / asked, 1) if asked else None,
        "commands": {k: v for k, v in steady.items() if v},
        "one_off_per_process": round(
            upstash.billed({k: v for k, v in one_off.items() if v}) / PROCS, 1
        ),
        "one_off_commands": {k: v for k, v in one_off.items() if v},
        "admit_fraction": round(admitted / asked, 4) if asked else None,
    }
    if algorithm == "fixed_window":
        bound = len(pairs)
        util = [per_window.get(w, 0) / LIMIT for w in range(first_w, last_w)]
        row |= {
            "bound": bound,
            "ratio": round(billed / bound, 3) if bound else None,
            "utilisation_median": round(statistics.median(util), 3),
            "utilisation_min": round(min(util), 3),
        }
        if kind == "lowtide":
            row["overshoot"] = sum(max(0, n - LIMIT) for n in per_window.values())
            row["max_per_window"] = max(per_window.values(), default=0)
    else:
        row["worst_excess"] = round(_bucket_excess(sorted(all_admissions)), 3)
    if kind == "lowtide":
        infos = [r["info"] for r in results]
        row["reservations"] = sum(int(i.get("reservations", 0)) for i in infos)
    return row


def _bucket_excess(times: list[float]) -> float:
    """Largest (admissions in [t_i, t_j]) - burst - rate * (t_j - t_i) over all i <= j."""
    rate, burst = LIMIT / PER, float(LIMIT)
    best_start = -math.inf
    worst = -math.inf
    for j, t in enumerate(times):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, (j + 1) - rate * t + best_start - burst)
    return worst if times else 0.0


# -- the hot path ----------------------------------------------------------------------------
async def hot_path(url: str, n: int = 20_000, repeat: int = 7) -> dict[str, float]:
    """Median µs of ``acquire`` with a lease in hand, and of the floor: ``await`` of a trivial
    coroutine, measured alternately in one loop."""
    from lowtide import Lowtide

    async def trivial() -> None:
        return None

    async with Lowtide(url, instance="hot") as lt:
        limiter = lt.rate_limiter("hot-path", 10**9, 3600, max_lease=10**6, fleet_size=1)
        for _ in range(1_200_000):  # grows the lease to max_lease (it doubles while used up fast)
            await limiter.acquire("t1")
        acquire_runs, floor_runs = [], []
        for _ in range(repeat):
            r0 = limiter.stats["reservations"]
            t0 = time.perf_counter()
            for _ in range(n):
                await limiter.acquire("t1")
            acquire_runs.append((time.perf_counter() - t0) / n * 1e6)
            if limiter.stats["reservations"] != r0:  # a reservation inside: not a lease in hand
                acquire_runs.pop()
            t0 = time.perf_counter()
            for _ in range(n):
                await trivial()
            floor_runs.append((time.perf_counter() - t0) / n * 1e6)
    acquire_us = statistics.median(acquire_runs)
    floor_us = statistics.median(floor_runs)
    return {
        "acquire_us": round(acquire_us, 3),
        "floor_us": round(floor_us, 3),
        "ratio": round(acquire_us / floor_us, 2),
        "runs": len(acquire_runs),
    }


def limits_available() -> bool:
    try:
        import limits  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=20, help="measured windows per row")
    parser.add_argument("--levels", default=",".join(f"{x:g}" for x in LEVELS))
    parser.add_argument(
        "--bucket-windows", type=int, default=60, help="measured windows per token-bucket row"
    )
    parser.add_argument("--no-limits", action="store_true", help="skip the limits rows")
    parser.add_argument("--tag", default=str(int(time.time())), help="limiter name suffix")
    parser.add_argument("--hot-path", action="store_true", help="only the hot-path timing")
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    from lowtide.testing import ValkeyServer

    if args.hot_path:
        with ValkeyServer() as server:
            hot = asyncio.run(hot_path(server.url))
        print(
            f"acquire with a lease in hand: {hot['acquire_us']} µs; floor (await of a trivial "
            f"coroutine): {hot['floor_us']} µs; ratio {hot['ratio']} (median of {hot['runs']} "
            "x 20,000)"
        )
        return

    levels = [float(x) for x in args.levels.split(",")]
    with_limits = not args.no_limits and limits_available()
    if not with_limits:
        print("(limits rows skipped: limits is not importable or --no-limits)")
    rows: list[dict[str, Any]] = []
    with ValkeyServer() as server:
        for demand in levels:
            rows.append(run_row(server, "lowtide", "fixed_window", demand, args.windows, args.tag))
            print(_fmt(rows[-1]), flush=True)
            if with_limits:
                rows.append(
                    run_row(server, "limits", "fixed_window", demand, args.windows, args.tag)
                )
                print(_fmt(rows[-1]), flush=True)
        for demand in BUCKET_LEVELS:  # longer: a rate lease lasts a minute
            rows.append(
                run_row(server, "lowtide", "token_bucket", demand, args.bucket_windows, args.tag)
            )
            print(_fmt(rows[-1]), flush=True)
        hot = asyncio.run(hot_path(server.url))
    print()
    print(
        table(
            [
                "library",
                "demand",
                "decisions",
                "billed/1k",
                "bound",
                "ratio",
                "overshoot",
                "util (median, min)",
                "admit",
                "outside/process",
                "commands",
            ],
            [_cells(r) for r in rows],
        )
    )
    print(
        f"\nacquire with a lease in hand: {hot['acquire_us']} µs; floor (await of a trivial "
        f"coroutine): {hot['floor_us']} µs; ratio {hot['ratio']} (median of {hot['runs']} x 20,000)"
    )
    out = {
        "limit": LIMIT,
        "per": PER,
        "processes": PROCS,
        "warmup_windows": WARMUP,
        "windows": args.windows,
        "rows": rows,
        "hot_path": hot,
    }
    print(f"wrote {write('limiter_cost', out)}")


def _cells(r: dict[str, Any]) -> list[object]:
    label = f"{r['kind']} {r['algorithm']}"
    if r["algorithm"] == "fixed_window":
        util = f"{r['utilisation_median']:.0%}, {r['utilisation_min']:.0%}"
        over = r.get("overshoot", "-")
        bound, ratio = r["bound"], r["ratio"]
    else:
        util = "-"
        over = f"excess {r['worst_excess']}"
        bound, ratio = "-", "-"
    return [
        label,
        f"{r['demand']:.0%}",
        r["decisions"],
        r["billed_per_1000"],
        bound,
        ratio,
        over,
        util,
        f"{r['admit_fraction']:.1%}" if r["admit_fraction"] is not None else "-",
        r["one_off_per_process"],
        ", ".join(f"{k}={v}" for k, v in sorted(r["commands"].items())),
    ]


def _fmt(r: dict[str, Any]) -> str:
    return " | ".join(str(c) for c in _cells(r))


if __name__ == "__main__":
    main()
