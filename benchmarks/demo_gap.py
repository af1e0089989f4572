"""What the demo's trace costs under simple cache and limiter protocols: where the gap between
lowtide and the lower bound comes from.

Pure replay of ``lowtide demo``'s default trace (no server, a few seconds): the same events and
measured window as the demo and its bound (``lowtide.demo.bound``), counted per day of trace.

Cache, per key, protocols that all honour the cache TTL (a copy stored in Redis expires ``ttl``
after it was stored; a copy in memory is never served past that, nor after another machine's
write):

* ``bound``: the demo's lower bound (writes + fetches, ``lowtide.demo.bound``);
* ``fill: GET then SET`` / ``fill: SET only``: a read with no live copy in Redis costs a GET
  that finds nothing plus the SET of what was loaded, or only the SET (the process knows the
  copy is gone);
* ``read-back``: after its own write or fill a machine reads the key again (1 GET) before
  serving it, or keeps it (an echo it can tell apart).

Limiter (fixed windows, the demo's limit per connector and tenant, 4 machines): the
(machine, cell, window)s with asks, with admissions (the bound), with two or more admitted
calls (a second reservation when the fair share is one token), and the cell-windows in which a
machine other than the one that took the last token asks afterwards (it must ask or be told).

Run: ``python -m benchmarks.demo_gap`` (prints a table, writes ``demo_gap.json``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from benchmarks._common import table, write
from lowtide.demo import DemoConfig
from lowtide.demo.bound import lower_bound
from lowtide.demo.trace import Event, generate

Timeline = list[tuple[float, int, str]]


def cache_cost(
    timeline: Timeline, ttl: float, start: float, end: float, *, skip_get: bool, read_back: bool
) -> dict[str, int]:
    """Commands one key costs in ``[start, end)`` under the protocol described in the module
    docs (``skip_get``: fills send no GET; ``read_back``: the writer reads its write again)."""
    out: dict[str, int] = defaultdict(int)
    expires = -math.inf  # when the copy in Redis expires
    version = 0
    held: dict[int, int] = {}  # machine -> version it holds in memory
    shared = True  # the current version was read by a machine that did not store it
    storer = -1
    for t, m, kind in timeline:
        counted = start <= t < end
        if kind == "write" or t >= expires:
            if kind == "read":  # no live copy: load and store it (a fill)
                out["fill_get"] += counted and not skip_get
                out["fills"] += counted
                out["unshared_fills"] += counted and not shared
            else:
                out["writes"] += counted
            version += 1
            expires = t + ttl
            held = {} if read_back else {m: version}
            shared, storer = kind == "write", m
            continue
        if held.get(m) == version:
            continue
        out["gets"] += counted
        held[m] = version
        if m != storer:
            shared = True
    out["total"] = out["writes"] + out["fills"] + out["fill_get"] + out["gets"]
    return out


def limiter_parts(calls: list[Event], cfg: DemoConfig, start: float, end: float) -> dict[str, int]:
    """The limiter counts of the module docs, over ``[start, end)``."""
    taken: dict[tuple[str, str, int], int] = defaultdict(int)
    last_taker: dict[tuple[str, str, int], int] = {}
    asked: set[tuple[int, str, str, int]] = set()
    admitted: dict[tuple[int, str, str, int], int] = defaultdict(int)
    told: set[tuple[str, str, int]] = set()
    for ev in sorted(calls, key=lambda e: e.t):
        if not start <= ev.t < end or cfg.failing(ev.key, ev.t):
            continue
        cell = (ev.tenant, ev.key, math.floor(ev.t / cfg.per))
        asked.add((ev.machine, *cell))
        if taken[cell] < cfg.limit:
            taken[cell] += 1
            admitted[(ev.machine, *cell)] += 1
            if taken[cell] == cfg.limit:
                last_taker[cell] = ev.machine
        elif last_taker.get(cell) != ev.machine:
            told.add(cell)
    return {
        "asking": len(asked),
        "admitting (the bound)": len(admitted),
        "admitting twice or more": sum(1 for n in admitted.values() if n >= 2),
        "spent, then asked elsewhere": len(told),
    }


def main() -> None:
    cfg = DemoConfig()
    trace = generate(cfg)
    start, end = cfg.warmup, cfg.warmup + cfg.seconds
    per_day = 86_400 / cfg.seconds
    keys: dict[str, Timeline] = defaultdict(list)
    calls: list[Event] = []
    for ev in trace.events:
        if ev.kind in ("read", "write"):
            keys[f"{ev.tenant}/{ev.key}"].append((ev.t, ev.machine, ev.kind))
        elif ev.kind != "webhook":
            calls.append(ev)
    for timeline in keys.values():
        timeline.sort(key=lambda e: e[0])
    bound = lower_bound(trace.events, cfg, "tracking")
    cache_bound = (bound.writes + bound.cache_fetches) * per_day
    rows: list[list[object]] = [["cache: bound (writes + fetches)", f"{cache_bound:,.0f}"]]
    data: dict[str, Any] = {"cache": {"bound": cache_bound}}
    for skip in (False, True):
        for back in (True, False):
            parts: dict[str, int] = defaultdict(int)
            for timeline in keys.values():
                for k, v in cache_cost(
                    timeline, cfg.cache_ttl, start, end, skip_get=skip, read_back=back
                ).items():
                    parts[k] += v
            name = (
                f"cache: fill {'SET only' if skip else 'GET then SET'}, "
                f"{'with' if back else 'no'} read-back"
            )
            rows.append([name, f"{parts['total'] * per_day:,.0f}"])
            data["cache"][name] = {k: v * per_day for k, v in parts.items()}
    for name, n in limiter_parts(calls, cfg, start, end).items():
        rows.append([f"limiter: (machine, cell, window)s {name}", f"{n * per_day:,.0f}"])
        data.setdefault("limiter", {})[name] = n * per_day
    rows.append(["limiter: bound", f"{bound.limiter * per_day:,.0f}"])
    print(table(["what (demo default trace, tracking)", "per day"], rows))
    print(f"wrote {write('demo_gap', data)}")


if __name__ == "__main__":
    main()
