"""Ledger bookkeeping that needs no server: projection, cost, bounds, naming."""

from __future__ import annotations

import json
import math
import time

import pytest

from lowtide import ManualClock, SystemClock
from lowtide.context import Attribution
from lowtide.ledger import MIN_PROJECTION_S, Ledger, billing_profile, command_name
from tests.helpers import eventually

A = Attribution("cache", "lt:c:p:*", "t1")


def test_command_naming_matches_server_naming() -> None:
    assert command_name(("GET", "k")) == "get"
    assert command_name((b"SET", b"k", b"v")) == "set"
    assert command_name(("CLIENT", "TRACKING", "on")) == "client|tracking"
    assert command_name(("CLIENT TRACKING", "on")) == "client|tracking"
    assert command_name(("script", "load", "x")) == "script|load"
    assert command_name(("PING",)) == "ping"


def test_per_day_projection_and_cost_use_the_injected_clock() -> None:
    clock = ManualClock()
    ledger = Ledger(billing_profile("upstash"), clock=clock)
    for _ in range(60):  # 60 GETs per minute for 10 minutes = 86,400/day * 60/60
        for _ in range(60):
            ledger.record([("get", A)])
        clock.advance(60)
    snap = ledger.snapshot()
    assert snap.total == 3600
    assert snap.per_day == pytest.approx(86_400, rel=0.02)
    assert snap.billed_per_day == pytest.approx(86_400, rel=0.02)
    assert snap.usd_per_month == pytest.approx(86_400 * 30 * 0.20 / 100_000, rel=0.02)
    assert len(snap.per_minute) == 60


def test_no_projection_before_a_minute_of_counting() -> None:
    """7 start-up commands 1 s after start are not 604,800 a day: per-day figures wait for
    MIN_PROJECTION_S of counting (and start over after a reset)."""
    clock = ManualClock()
    ledger = Ledger(billing_profile("upstash"), clock=clock)
    for _ in range(7):
        ledger.record([("get", A)])
    now = 0.0
    for elapsed in (0.0, 1.0, MIN_PROJECTION_S - 0.5):
        clock.advance(elapsed - now)
        now = elapsed
        for view in (ledger.totals(), ledger.snapshot()):
            assert view.projection_s == pytest.approx(elapsed)
            assert (view.per_day, view.billed_per_day, view.usd_per_month) == (None, None, None)
            assert view.total == 7  # the counts themselves are there from the start
    clock.advance(0.5)  # a minute of counting: the rate over that minute
    snap = ledger.snapshot()
    assert snap.projection_s == pytest.approx(MIN_PROJECTION_S)
    assert snap.per_day == pytest.approx(7 / 60 * 86_400)
    assert snap.usd_per_month == pytest.approx(7 / 60 * 86_400 * 30 * 0.20 / 100_000)
    assert json.loads(json.dumps(snap.to_dict()))["per_day"] == snap.per_day
    ledger.reset()
    ledger.record([("get", A)])
    clock.advance(5)
    assert ledger.totals().per_day is None
    assert json.loads(json.dumps(ledger.snapshot().to_dict()))["per_day"] is None


def test_free_commands_are_not_billed_on_upstash() -> None:
    ledger = Ledger(billing_profile("upstash"), clock=ManualClock())
    ledger.record([("ping", A), ("info", A), ("config|get", A), ("get", A), ("client|tracking", A)])
    snap = ledger.snapshot()
    assert snap.total == 5
    assert snap.billed == 2


def test_rows_are_bounded_and_totals_stay_exact() -> None:
    ledger = Ledger(clock=ManualClock(), max_rows=10)
    for i in range(100):
        ledger.record([("get", Attribution("cache", "f", f"t{i}"))])
    snap = ledger.snapshot()
    assert snap.total == 100
    assert len(snap.rows) <= 11
    assert snap.by_tenant["~other"] == 90


def test_snapshot_is_json_ready_and_frozen() -> None:
    ledger = Ledger(clock=ManualClock())
    ledger.record([("get", A), ("get", Attribution("hub", "-", None))])
    snap = ledger.snapshot()
    d = json.loads(json.dumps(snap.to_dict()))
    assert d["by_command"] == {"get": 2}
    assert {r["tenant"] for r in d["rows"]} == {"t1", "-"}
    with pytest.raises(AttributeError):
        snap.total = 3  # type: ignore[misc]


class _NextMinuteSoon(SystemClock):
    """The system clock shifted so that a new minute starts ``lead`` seconds after creation,
    counting its reads."""

    def __init__(self, lead: float) -> None:
        now = time.monotonic()
        self.boundary = (math.floor(now / 60) + 2) * 60.0  # >= 60 s ahead: room for ``lead``
        self._offset = self.boundary - lead - now
        self.reads = 0

    def monotonic(self) -> float:  # type: ignore[override]
        self.reads += 1
        return time.monotonic() + self._offset


async def test_a_loop_timer_stands_in_for_the_clock_until_the_next_minute() -> None:
    """With the system clock and a running loop, records do not read the clock: a timer of the
    loop says when the next minute starts, and the first record after it marks the minute."""
    clock = _NextMinuteSoon(lead=0.3)
    ledger = Ledger(clock=clock)
    ledger.record([("get", A)])
    reads = clock.reads
    for _ in range(100):
        ledger.record([("get", A)])
    assert clock.reads == reads  # no clock read per record within the minute
    assert [b.commands for b in ledger.totals().per_minute] == [101]
    await eventually(lambda: ledger._look)  # the loop's timer fires as the new minute starts
    assert clock.monotonic() >= clock.boundary
    ledger.record([("get", A)] * 2)  # the first record of the new minute marks it
    assert [b.commands for b in ledger.totals().per_minute] == [101, 2]
    ledger.reset()  # counting starts over: the next record marks its minute at once
    ledger.record([("get", A)])
    assert [b.commands for b in ledger.totals().per_minute] == [1]


def test_without_a_running_loop_every_record_reads_the_clock() -> None:
    clock = _NextMinuteSoon(lead=30)
    ledger = Ledger(clock=clock)
    reads = clock.reads
    for _ in range(3):
        ledger.record([("get", A)])
    assert clock.reads == reads + 3
    assert [b.commands for b in ledger.totals().per_minute] == [3]


def test_reset_forgets_counts() -> None:
    ledger = Ledger(clock=ManualClock())
    ledger.record([("get", A)])
    ledger.reset()
    assert ledger.snapshot().total == 0


def test_provider_data_is_consistent() -> None:
    up = billing_profile("upstash", read_regions=2)
    assert up.units("set") == 3
    assert up.units("get") == 1
    assert up.units("hello") == 0
    assert billing_profile("redis").units("set") == 1
