"""Which map should hold L1? dict vs OrderedDict vs cachebox vs lru-dict, side by side.

Each candidate does what an L1 hit must do: find the entry for a ``(tenant, key)`` tuple,
check that it is fresh (epoch and deadline) and note the use for eviction. Misses and
inserts-with-eviction are measured too, because per-tenant caps need our own bookkeeping on
insert whatever the map is.

Run: ``python -m benchmarks.l1_maps``. cachebox and lru-dict are optional (skipped if absent).
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from benchmarks._common import per_call_us, table, write

N_KEYS = 10_000
N_LOOKUPS = 200_000


class Entry:
    __slots__ = ("epoch", "fresh_until", "ref", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.fresh_until = time.monotonic() + 3600
        self.epoch = 0
        self.ref = False


def keys() -> list[tuple[str, str]]:
    return [(f"tenant-{i % 100}", f"user:{i}") for i in range(N_KEYS)]


def lookups(ks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    rnd = random.Random(7)
    return [ks[int(rnd.paretovariate(1.2)) % N_KEYS] for _ in range(N_LOOKUPS)]


def hit_dict_clock(ks: list[tuple[str, str]], seq: list[tuple[str, str]]) -> Callable[[], None]:
    """dict + second-chance (CLOCK) bit: a hit sets one attribute."""
    d = {k: Entry(k) for k in ks}
    now = time.monotonic

    def run() -> None:
        get = d.get
        for k in seq:
            e = get(k)
            if e is not None and e.epoch == 0 and e.fresh_until > now():
                e.ref = True

    return run


def hit_ordered_lru(ks: list[tuple[str, str]], seq: list[tuple[str, str]]) -> Callable[[], None]:
    """OrderedDict with move_to_end on every hit (exact LRU)."""
    d: OrderedDict[tuple[str, str], Entry] = OrderedDict((k, Entry(k)) for k in ks)
    now = time.monotonic

    def run() -> None:
        get = d.get
        move = d.move_to_end
        for k in seq:
            e = get(k)
            if e is not None and e.epoch == 0 and e.fresh_until > now():
                move(k)

    return run


def hit_cachebox(ks: list[tuple[str, str]], seq: list[tuple[str, str]]) -> Callable[[], None]:
    import cachebox

    c = cachebox.LRUCache(N_KEYS * 2)
    for k in ks:
        c[k] = Entry(k)
    now = time.monotonic

    def run() -> None:
        get = c.get
        for k in seq:
            e = get(k)
            if e is not None and e.epoch == 0 and e.fresh_until > now():
                pass

    return run


def hit_lru_dict(ks: list[tuple[str, str]], seq: list[tuple[str, str]]) -> Callable[[], None]:
    import lru

    c = lru.LRU(N_KEYS * 2)
    for k in ks:
        c[k] = Entry(k)
    now = time.monotonic

    def run() -> None:
        get = c.get
        for k in seq:
            e = get(k)
            if e is not None and e.epoch == 0 and e.fresh_until > now():
                pass

    return run


def insert_evict_dict(ks: list[tuple[str, str]]) -> Callable[[], None]:
    """Insert into a full dict, evicting the oldest (what the store does at capacity)."""
    d = {k: Entry(k) for k in ks}
    fresh = [(f"x{i % 100}", f"new:{i}") for i in range(N_LOOKUPS)]

    def run() -> None:
        for k in fresh:
            if len(d) >= N_KEYS:
                del d[next(iter(d))]
            d[k] = Entry(k)

    return run


def insert_evict_ordered(ks: list[tuple[str, str]]) -> Callable[[], None]:
    d: OrderedDict[tuple[str, str], Entry] = OrderedDict((k, Entry(k)) for k in ks)
    fresh = [(f"x{i % 100}", f"new:{i}") for i in range(N_LOOKUPS)]

    def run() -> None:
        for k in fresh:
            if len(d) >= N_KEYS:
                d.popitem(last=False)
            d[k] = Entry(k)

    return run


def main() -> None:
    ks = keys()
    seq = lookups(ks)
    candidates: dict[str, Callable[[], None]] = {
        "dict + CLOCK bit": hit_dict_clock(ks, seq),
        "OrderedDict + move_to_end (LRU)": hit_ordered_lru(ks, seq),
    }
    for name, make in (("cachebox LRUCache", hit_cachebox), ("lru-dict LRU", hit_lru_dict)):
        try:
            candidates[name] = make(ks, seq)
        except ImportError:
            print(f"({name} not installed: skipped)")
    rows = []
    results: dict[str, Any] = {"hit_ns": {}, "insert_evict_ns": {}}
    for name, fn in candidates.items():
        ns = per_call_us(fn, 1, repeat=7) / N_LOOKUPS * 1000
        results["hit_ns"][name] = round(ns, 1)
        rows.append([name, "hit", f"{ns:.0f}"])
    for name, fn in (
        ("dict (pop first key)", insert_evict_dict(ks)),
        ("OrderedDict popitem(last=False)", insert_evict_ordered(ks)),
    ):
        ns = per_call_us(fn, 1, repeat=3) / N_LOOKUPS * 1000
        results["insert_evict_ns"][name] = round(ns, 1)
        rows.append([name, "insert + evict", f"{ns:.0f}"])
    print(table(["map", "operation", "ns/op"], rows))
    print(f"wrote {write('l1_maps', results)}")


if __name__ == "__main__":
    main()
