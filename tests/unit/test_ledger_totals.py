"""The ledger's running totals (what health and metrics read) always equal a full snapshot's."""

from __future__ import annotations

import sys
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide import ManualClock
from lowtide.context import Attribution
from lowtide.ledger import Ledger, billing_profile
from lowtide.ledger.ledger import _MAX_LISTED

COMMANDS = st.sampled_from(["get", "set", "ping", "info", "evalsha", "client|tracking"])
ATTRIBUTIONS = st.builds(
    Attribution,
    st.sampled_from(["cache", "limiter", "hub"]),
    st.sampled_from(["lt:c:a:*", "lt:r:b:*", "-"]),
    st.one_of(st.none(), st.sampled_from([f"t{i}" for i in range(12)])),
)
OPS = st.lists(
    st.one_of(
        st.lists(st.tuples(COMMANDS, ATTRIBUTIONS), max_size=6).map(lambda e: ("record", e)),
        st.integers(0, 200).map(lambda s: ("advance", s)),
        st.sampled_from([("profile", "upstash"), ("profile", "redis"), ("reset", None)]),
    ),
    max_size=40,
)


def check(ledger: Ledger) -> None:
    snap = ledger.snapshot()
    totals = ledger.totals()
    assert ledger.total == totals.total == snap.total
    assert totals.billed == snap.billed
    assert totals.by_command == snap.by_command
    assert (totals.per_day, totals.billed_per_day) == (snap.per_day, snap.billed_per_day)
    assert totals.usd_per_month == snap.usd_per_month
    assert totals.per_minute == snap.per_minute
    groups: dict[tuple[str, str, str, bool], int] = {}
    billed: dict[str, int] = {}
    per_tenant: dict[str, dict[tuple[str, str, str], int]] = {}
    for r in snap.rows:
        g = (r.component, r.command, r.family, r.tenant is not None)
        groups[g] = groups.get(g, 0) + r.count
        if r.tenant is not None:
            if r.billed:
                billed[r.tenant] = billed.get(r.tenant, 0) + r.billed
            rows = per_tenant.setdefault(r.tenant, {})
            rows[(r.component, r.command, r.family)] = r.count
    assert ledger.groups() == groups
    assert ledger.billed_by_tenant() == billed
    for tenant, rows in per_tenant.items():
        assert ledger.tenant_rows(tenant) == rows
    heaviest = sorted(((n, t) for t, n in billed.items()), reverse=True)[:3]
    assert ledger.top_tenants(3) == [(t, n) for n, t in heaviest]


@settings(max_examples=200, deadline=None)
@given(OPS, st.integers(3, 40))
def test_running_totals_equal_the_snapshot(ops: list[tuple[str, object]], max_rows: int) -> None:
    clock = ManualClock()
    ledger = Ledger(billing_profile("upstash", read_regions=1), clock=clock, max_rows=max_rows)
    for op, arg in ops:
        if op == "record":
            ledger.record(arg)  # type: ignore[arg-type]
        elif op == "advance":
            clock.advance(float(arg))  # type: ignore[arg-type]
        elif op == "profile":
            ledger.profile = billing_profile(str(arg))
        else:
            ledger.reset()
        check(ledger)


def test_a_view_folds_a_bounded_number_of_rows() -> None:
    """However many rows a workload touches between two views, the view folds at most
    ``_MAX_LISTED`` of them: records fold the rest as they go, and the totals stay exact."""
    ledger = Ledger(billing_profile("upstash"), clock=ManualClock())
    for i in range(5 * _MAX_LISTED):
        ledger.record([("get", Attribution("cache", "f", f"t{i}"))] * (i % 3 + 1))
        assert len(ledger._dirty) < _MAX_LISTED
    check(ledger)


def test_top_tenants_excludes_and_skips_unbilled_tenants() -> None:
    ledger = Ledger(billing_profile("upstash"), clock=ManualClock())
    for i, n in enumerate([5, 1, 9, 3]):
        ledger.record([("get", Attribution("cache", "f", f"t{i}"))] * n)
    ledger.record([("ping", Attribution("cache", "f", "free-only"))] * 50)  # billed 0 on Upstash
    assert ledger.top_tenants(2) == [("t2", 9), ("t0", 5)]
    assert ledger.top_tenants(2, exclude={"t2"}) == [("t0", 5), ("t3", 3)]
    assert ledger.top_tenants(10)[-1] == ("t1", 1)
    assert "free-only" not in dict(ledger.top_tenants(10))
    assert ledger.top_tenants(0) == []


def test_reset_bumps_the_generation() -> None:
    ledger = Ledger(clock=ManualClock())
    ledger.record([("get", Attribution("cache", "f", "t"))])
    assert ledger.generation == 0
    ledger.reset()
    assert ledger.generation == 1
    assert ledger.totals().total == 0
    assert ledger.groups() == {}
    assert ledger.tenant_rows("t") == {}


def test_views_read_from_another_thread_while_counting_end_exact() -> None:
    """Metrics read the ledger from their own threads while the event loop counts: each read
    folds the rows counted since the last one into the running totals, one fold at a time.
    Reads never go back, and once counting stops the totals equal a full snapshot (nothing
    lost or counted twice)."""
    ledger = Ledger(billing_profile("upstash", read_regions=1), clock=ManualClock())
    atts = [Attribution("cache", "f", f"t{i}") for i in range(40)] + [Attribution("hub", "-")]
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        last = 0
        while not stop.is_set():
            total = ledger.total
            ledger.groups()
            ledger.billed_by_tenant()
            ledger.top_tenants(3)
            if total < last:
                problems.append(f"total went back from {last} to {total}")
            last = total
            reads += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    threads = [threading.Thread(target=reader) for _ in range(2)]  # two readers fold at once
    for thread in threads:
        thread.start()
    try:
        for i in range(30_000):
            ledger.record([("get", atts[i % 41]), ("set", atts[i * 7 % 41])])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert not problems
    assert reads > 20
    assert ledger.total == 60_000
    check(ledger)
