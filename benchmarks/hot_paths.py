"""The hot paths (issue 14, goal 6), each as a ratio to its floor, side by side in one run.

* guard: ``async with breaker.guard("t1"): pass`` on a healthy breaker; floor: ``async with``
  a hand-written empty async context manager;
* L1 hit: ``await cache.get("k", tenant="t1")`` answered from L1; floor: ``await`` an
  ``async def`` that returns ``dict.get((tenant, k))``;
* ledger: one command through the counting connection's hook (noted at pack time, then
  ``Ledger.record``), with redis-py's own packing stubbed out; floor: calling a no-op function
  with the same arguments (also with 10 commands per send, as a pipeline records them, and
  ``Ledger.record([(name, attribution)])`` alone, the list built per call as a send builds it:
  the rest is the connection's packing hook in ``lowtide/redis/connection.py``). The ledgers
  are made inside the running loop with the system clock, as a hub's is (no clock read per
  send); what a view does later (folding each row counted since the last view into the group
  and tenant totals, once per row, not per command) is not in the loop;
* acquire: ``await limiter.acquire("t1")`` with the lease in hand; floor: ``await`` an
  ``async def`` that returns a constant.

Every number is the time per iteration of a loop (loop overhead included on both sides). One
*round* times every path and its floor alternately, in five slices of 4,000 iterations each
(after a warm-up), and keeps each one's fastest slice, so a slice another process interrupted
does not count; the table shows the median and min-max over ``--rounds`` rounds (default 9) of
the time per call and of the ratio (each round's path / the same round's floor).

The hub runs against a real embedded Valkey, in distributed mode, with the fleet state and the
cached value in L1: the guard and L1 loops send no command; the limiter reserves a new lease
(1 INCRBY) at most once per 100,000 decisions. The commands the server counted during the timed
loops are printed.

The machine these run on may be shared: time per call moves by tens of percent between runs;
ratios taken within one round move less. Goals (issue 14): guard <= 1.5 us, L1 hit <= 2x its
floor, ledger <= 0.5 us per command, acquire <= 0.5 us.

Run: ``python -m benchmarks.hot_paths [--rounds N]``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import Connection

from benchmarks._common import table, write
from lowtide import Lowtide
from lowtide.context import Attribution, _attribution
from lowtide.ledger import Ledger
from lowtide.redis.connection import _CountingMixin
from lowtide.testing import ValkeyServer, commandstats_delta

N = 20_000
SLICES = 5
GOALS = {
    "guard": ("us", 1.5),
    "l1_hit": ("ratio", 2.0),
    "ledger": ("us", 0.5),
    "acquire": ("us", 0.5),
}
ATT = Attribution("cache", "lt:c:bench:*", "t1")
KEY = "lt:c:bench:t1:key"


class _Empty:
    """The floor of ``async with``: a hand-written async context manager that does nothing."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Bare(Connection):
    """A connection whose packing does nothing: isolates what counting adds per command."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return []


class _CountingBare(_CountingMixin, _Bare):
    """lowtide's counting hook (the real mixin) over the stubbed packing."""


def _noop(*args: object) -> None:
    return None


def _per_call(t0: int, n: int) -> float:
    return (time.perf_counter_ns() - t0) / n / 1000


# -- the timed loops ---------------------------------------------------------------------
async def time_guard(breaker: Any, n: int) -> float:
    guard = breaker.guard
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with guard("t1"):
            pass
    return _per_call(t0, n)


async def time_empty_cm(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with _Empty():
            pass
    return _per_call(t0, n)


async def time_l1_hit(cache: Any, n: int) -> float:
    get = cache.get
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await get("k", tenant="t1")
    return _per_call(t0, n)


async def time_dict_lookup(n: int) -> float:
    d = {("t1", "k"): "value"}

    async def lookup(key: str, *, tenant: str) -> Any:
        return d.get((tenant, key))

    t0 = time.perf_counter_ns()
    for _ in range(n):
        await lookup("k", tenant="t1")
    return _per_call(t0, n)


def time_ledger(n: int, batch: int = 1) -> float:
    """Per command: ``batch`` commands packed, then recorded as one send records them."""
    ledger = Ledger()
    conn = _CountingBare(lowtide_ledger=ledger)
    pack = conn.pack_command
    record = ledger.record
    token = _attribution.set(ATT)
    try:
        t0 = time.perf_counter_ns()
        if batch == 1:  # no inner loop: its overhead would be counted as the ledger's
            for _ in range(n):
                pack("GET", KEY)
                entries, conn._lt_pending = conn._lt_pending, []
                record(entries)
            return _per_call(t0, n)
        for _ in range(n // batch):
            for _ in range(batch):
                pack("GET", KEY)
            entries, conn._lt_pending = conn._lt_pending, []
            record(entries)
        return _per_call(t0, n // batch * batch)
    finally:
        _attribution.reset(token)


def time_record(n: int) -> float:
    """``Ledger.record`` alone, one command per send (the ledger's part of the hook)."""
    ledger = Ledger()
    record = ledger.record
    t0 = time.perf_counter_ns()
    for _ in range(n):
        record([("get", ATT)])
    return _per_call(t0, n)


def time_noop(n: int) -> float:
    f = _noop
    t0 = time.perf_counter_ns()
    for _ in range(n):
        f("GET", KEY)
    return _per_call(t0, n)


async def time_acquire(limiter: Any, n: int) -> float:
    acquire = limiter.acquire
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await acquire("t1")
    return _per_call(t0, n)


async def time_awaited_constant(n: int) -> float:
    async def constant(tenant: str) -> bool:
        return True

    t0 = time.perf_counter_ns()
    for _ in range(n):
        await constant("t1")
    return _per_call(t0, n)


# -- one run -------------------------------------------------------------------------------
def _sync(fn: Callable[[int], float]) -> Callable[[int], Awaitable[float]]:
    async def run(n: int) -> float:
        return fn(n)

    return run


async def measure(url: str, rounds: int, server: ValkeyServer) -> dict[str, Any]:
    async with Lowtide(url, instance="hot") as lt:
        assert await lt.invalidations.wait_healthy(5)
        breaker = lt.circuit_breaker("hot")
        cache = lt.cache("hot")
        await cache.set("k", {"plan": "pro", "seats": 12}, tenant="t1")
        limiter = lt.rate_limiter("hot", 10**9, 60, max_lease=100_000)
        # warm up: fleet state and value in L1, lease in hand, every code path compiled
        for _ in range(3):
            await time_guard(breaker, 2000)
            await time_l1_hit(cache, 2000)
            await time_acquire(limiter, 5000)
            time_ledger(2000)
        paths: dict[str, tuple[Callable[[int], Awaitable[float]], ...]] = {
            "guard": (lambda n: time_guard(breaker, n), time_empty_cm),
            "l1_hit": (lambda n: time_l1_hit(cache, n), time_dict_lookup),
            "ledger": (_sync(time_ledger), _sync(time_noop)),
            "ledger_x10": (_sync(lambda n: time_ledger(n, 10)), _sync(time_noop)),
            "ledger_record": (_sync(time_record), _sync(time_noop)),
            "acquire": (lambda n: time_acquire(limiter, n), time_awaited_constant),
        }
        runs: dict[str, dict[str, list[float]]] = {
            p: {"us": [], "floor_us": [], "ratio": []} for p in paths
        }
        before = server.commandstats()
        for _ in range(rounds):
            for name, (path, floor) in paths.items():
                # the path and its floor alternate in short slices; each keeps its fastest
                # slice, so a slice another process interrupted does not count
                us = floor_us = math.inf
                for _ in range(SLICES):
                    us = min(us, await path(N // SLICES))
                    floor_us = min(floor_us, await floor(N // SLICES))
                runs[name]["us"].append(us)
                runs[name]["floor_us"].append(floor_us)
                runs[name]["ratio"].append(us / floor_us)
        delta = commandstats_delta(before, server.commandstats())
        delta.pop("info", None)  # the harness's own INFO commandstats
        return {"runs": runs, "commands_during_timed_loops": delta, "rounds": rounds}


def summary(values: list[float]) -> dict[str, float]:
    """Median and range."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Measure and report."""
    rounds = 9
    if "--rounds" in sys.argv:
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
    with ValkeyServer() as server:
        result = asyncio.run(measure(server.url, rounds, server))
    out: dict[str, Any] = {"rounds": rounds, "n": N, "paths": {}}
    rows = []
    labels = {
        "guard": "healthy guard / empty async with",
        "l1_hit": "Cache.get L1 hit / awaited dict lookup",
        "ledger": "ledger per command / no-op call",
        "ledger_x10": "ledger per command, 10 per send / no-op call",
        "ledger_record": "of which Ledger.record alone / no-op call",
        "acquire": "acquire, lease in hand / awaited constant",
    }
    for name, r in result["runs"].items():
        us, floor, ratio = summary(r["us"]), summary(r["floor_us"]), summary(r["ratio"])
        goal = GOALS.get(name)
        met = "-"
        if goal is not None:
            unit, bound = goal
            value = us["median"] if unit == "us" else ratio["median"]
            suffix = " us" if unit == "us" else "x"
            met = f"{'yes' if value <= bound else 'no'} (<= {bound:g}{suffix})"
        out["paths"][name] = {"us": us, "floor_us": floor, "ratio": ratio, "goal": goal}
        rows.append(
            [
                labels[name],
                f"{us['median']:.3f} ({us['min']:.3f}-{us['max']:.3f})",
                f"{floor['median']:.3f} ({floor['min']:.3f}-{floor['max']:.3f})",
                f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})",
                met,
            ]
        )
    print(
        f"hot paths: median (min-max) of {rounds} rounds x {N:,} calls; "
        "the machine may be shared, so absolute times are noisy"
    )
    print(table(["path / floor", "µs per call", "floor µs", "ratio", "goal met"], rows))
    print(
        "commands the server counted during the timed loops (background work such as "
        f"heartbeats included): {result['commands_during_timed_loops'] or 0}"
    )
    out["commands_during_timed_loops"] = result["commands_during_timed_loops"]
    print("wrote", write("hot_paths", out))


if __name__ == "__main__":
    main()
