"""Cache workloads shaped like production cache clusters, and their lower bounds (pure: no I/O).

The shapes take their operation mix, Zipf skew and value size from the per-cluster statistics
Twitter published with its cache traces (Yang, Yue, Rashmi, "A large scale analysis of hundreds
of in-memory cache clusters at Twitter", OSDI 2020; the table ``stat/2020Mar.md`` of
github.com/twitter/cache-trace):

============  ===========  ==============================  =======  ==========
shape         cluster      operations                      Zipf a   value (B)
============  ===========  ==============================  =======  ==========
read-heavy    cluster34    get 0.94, set 0.06              1.14     322
mixed         cluster29    get 0.86, set 0.13 (+0.01 get)  1.23     799
mixed-flat    cluster19    get 0.75, set 0.25              0.735    101
write-heavy   cluster14    get 0.65, delete 0.22, set 0.13 1.30     414
set-heavy     cluster13    get 0.38, set 0.62              0.4565   4266
============  ===========  ==============================  =======  ==========

(cluster29's remaining 0.01 of operations are counted as gets.) ``set-heavy`` is a shape where
keeping copies in process does not pay (few re-reads between writes): there plain cache-aside
is the bound.

What the published numbers do not give is chosen here and said: 5,000 keys over 10 tenants
(popularity by global rank), each of 4 processes issuing Poisson arrivals at ``rate`` operations
per second, a ``get`` is ``get_or_load`` (cache-aside: a miss in Redis loads and fills), a
``set`` writes a new value, a ``delete`` removes the key (invalidate-on-update). Time is
compressed 20x, openly: the cache's ``ttl`` (300 s by default) is 15 s, ``max_staleness``
(60 s) is 3 s and the listener keepalive (15 s) 0.75 s; 250 operations/s per process then stand
for 12.5/s.

The lower bound (:func:`bounds`) replays the whole trace in order against two ideal protocols
that need no server-side tracking, and counts commands for the operations in the measured
window:

* **notify**: every process keeps copies (fresh for ``min(ttl, max_staleness)`` from the read
  or write that brought them, never past the Redis copy's expiry); a read without a live copy
  costs 1 GET (plus 1 SET filling an absent key); a write costs 1 SET or DEL plus **one
  notification only if another process holds a live copy** at that moment (oracle knowledge no
  real protocol has, which is why it is a bound); the writer keeps its own value;
* **renew**: as notify, but copies live as long as the Redis copy, renewed in batches: 1
  command per process per ``max_staleness`` of the measured window (the least a protocol that
  bounds the staleness of writes nobody announces can ask), however many copies it holds;
* **cache-aside**: no copies: 1 GET per read (plus 1 SET filling an absent key), 1 SET or DEL
  per write.

The bound is the smallest total. The per-key minimum of the three (a protocol that chose per key
with hindsight; the renewals counted once) is reported beside it as ``per_key_min``.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SHAPES", "Op", "Shape", "Timing", "bounds", "generate", "value_for"]


@dataclass(frozen=True, slots=True)
class Shape:
    """One workload shape (see module docs)."""

    name: str
    cluster: str
    get: float
    set: float
    delete: float
    alpha: float
    value_bytes: int
    keys: int = 5_000
    tenants: int = 10


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("read-heavy", "cluster34", get=0.94, set=0.06, delete=0.0, alpha=1.14,
              value_bytes=322),
        Shape("mixed", "cluster29", get=0.87, set=0.13, delete=0.0, alpha=1.23,
              value_bytes=799),
        Shape("mixed-flat", "cluster19", get=0.75, set=0.25, delete=0.0, alpha=0.735,
              value_bytes=101),
        Shape("write-heavy", "cluster14", get=0.65, set=0.13, delete=0.22, alpha=1.30,
              value_bytes=414),
        Shape("set-heavy", "cluster13", get=0.38, set=0.62, delete=0.0, alpha=0.4565,
              value_bytes=4266),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timing:
    """Time and rate of one run (seconds; see module docs for the compression)."""

    processes: int = 4
    rate: float = 250.0
    warmup: float = 5.0
    measured: float = 20.0
    ttl: float = 15.0
    max_staleness: float = 3.0
    keepalive: float = 0.75

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of one process at trace time ``t`` (seconds)."""

    t: float
    process: int
    kind: str  # "get", "set" or "delete"
    tenant: str
    key: str


def _cum_zipf(n: int, alpha: float) -> list[float]:
    total = 0.0
    out = []
    for rank in range(1, n + 1):
        total += 1.0 / rank**alpha
        out.append(total)
    return out


def generate(shape: Shape, timing: Timing, seed: int) -> list[Op]:
    """Every process's operations, in time order (deterministic for ``seed``)."""
    cum = _cum_zipf(shape.keys, shape.alpha)
    ranks = range(shape.keys)
    # which key has which popularity rank: shuffled, so tenants get a mix
    order = list(ranks)
    random.Random(seed).shuffle(order)
    end = timing.warmup + timing.measured
    ops: list[Op] = []
    kinds = ("get", "set", "delete")
    weights = (shape.get, shape.set, shape.delete)
    for p in range(timing.processes):
        rng = random.Random(seed * 1_000 + p + 1)
        t = rng.expovariate(timing.rate)
        while t < end:
            kind = rng.choices(kinds, weights)[0]
            key = order[rng.choices(ranks, cum_weights=cum)[0]]
            ops.append(Op(t, p, kind, f"t{key % shape.tenants}", f"k{key}"))
            t += rng.expovariate(timing.rate)
    ops.sort(key=lambda o: (o.t, o.process))
    return ops


def value_for(shape: Shape, key: str, version: int) -> str:
    """A value of about the shape's size (its JSON encoding adds 2 bytes)."""
    head = f"{key}:{version}:"
    return head + "x" * max(0, shape.value_bytes - 2 - len(head))


def bounds(ops: list[Op], timing: Timing) -> dict[str, Any]:
    """The lower bound of the measured window (see module docs), with its parts."""
    lo, hi = timing.warmup, timing.warmup + timing.measured
    capped = min(timing.ttl, timing.max_staleness)
    l2: dict[tuple[str, str], float] = {}  # key -> when its Redis copy expires
    #: per protocol with copies: key -> {process: live until}; "notify" copies lapse after
    #: max_staleness, "renew" copies live as long as the Redis copy (renewed in batches)
    held_by: dict[str, dict[tuple[str, str], dict[int, float]]] = {"notify": {}, "renew": {}}
    counts: dict[str, dict[str, int]] = {
        name: {"get": 0, "set": 0, "del": 0, "notify": 0} for name in held_by
    }
    aside: dict[str, int] = {"get": 0, "set": 0, "del": 0}
    per_key: dict[tuple[str, str], list[int]] = {}  # key -> [notify, renew, cache-aside]
    ops_measured = {"get": 0, "set": 0, "delete": 0}
    for op in ops:
        k = (op.tenant, op.key)
        t = op.t
        counted = lo <= t < hi
        l2_live = l2.get(k, -math.inf) > t
        cost = {"notify": 0, "renew": 0}
        a_cost = 0
        if op.kind == "get":
            a_cost += 1 + int(not l2_live)
            if counted:
                aside["get"] += 1
                aside["set"] += int(not l2_live)
            filled = False
            for name, held_of in held_by.items():
                held = held_of.setdefault(k, {})
                if held.get(op.process, -math.inf) > t:
                    continue
                cost[name] += 1 + int(not l2_live)
                if counted:
                    counts[name]["get"] += 1
                    counts[name]["set"] += int(not l2_live)
                filled = filled or not l2_live
                end = t + timing.ttl if not l2_live else l2[k]
                held[op.process] = end if name == "renew" else min(end, t + capped)
            if filled:
                l2[k] = t + timing.ttl
        else:
            name_ = "set" if op.kind == "set" else "del"
            a_cost += 1
            if counted:
                aside[name_] += 1
            for name, held_of in held_by.items():
                held = held_of.setdefault(k, {})
                others = any(q != op.process and until > t for q, until in held.items())
                cost[name] += 1 + int(others)
                if counted:
                    counts[name][name_] += 1
                    counts[name]["notify"] += int(others)
                held.clear()
                if op.kind == "set":
                    held[op.process] = t + (timing.ttl if name == "renew" else capped)
            if op.kind == "set":
                l2[k] = t + timing.ttl
            else:
                l2.pop(k, None)
        if counted:
            ops_measured[op.kind] += 1
            costs = per_key.setdefault(k, [0, 0, 0])
            costs[0] += cost["notify"]
            costs[1] += cost["renew"]
            costs[2] += a_cost
    # renewing copies in batches still asks Redis once per max_staleness per process at least
    # (a staleness bound for writers that announce nothing needs a look at Redis)
    renewals = timing.processes * math.floor(timing.measured / timing.max_staleness)
    totals = {
        "notify": sum(counts["notify"].values()),
        "renew": sum(counts["renew"].values()) + renewals,
        "cache-aside": sum(aside.values()),
    }
    best = min(totals, key=lambda name: totals[name])
    return {
        "ops": ops_measured,
        "notify": {**counts["notify"], "total": totals["notify"]},
        "renew": {**counts["renew"], "renewals": renewals, "total": totals["renew"]},
        "cache_aside": {**aside, "total": totals["cache-aside"]},
        "bound": totals[best],
        "bound_protocol": best,
        "per_key_min": sum(min(c) for c in per_key.values()) + renewals,
    }
