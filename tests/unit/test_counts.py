"""The command-count helpers of ``lowtide.testing.counts``, on a ledger with no server."""

from __future__ import annotations

from lowtide import ManualClock
from lowtide.context import Attribution
from lowtide.ledger import Ledger
from lowtide.testing import changes, ledger_commands, ledger_total


def ledger() -> Ledger:
    out = Ledger(clock=ManualClock())
    out.record(
        [
            ("get", Attribution("cache", "lt:c:p:*", "t1")),
            ("get", Attribution("cache", "lt:c:p:*", "t2")),
            ("set", Attribution("cache", "lt:c:q:*", "t1")),
            ("get", Attribution("tenants", "lt:t:slack:*", None)),
            ("incrby", Attribution("limiter", "lt:r:api:*", "t1")),
            ("ping", Attribution("hub", "-", None)),
        ]
    )
    return out


def test_every_filter_narrows_the_rows_and_counts_by_command() -> None:
    source = ledger()
    assert ledger_commands(source) == source.snapshot().by_command
    assert ledger_commands(source, component="cache") == {"get": 2, "set": 1}
    assert ledger_commands(source, component=("cache", "tenants")) == {"get": 3, "set": 1}
    assert ledger_commands(source, family="lt:c:p:*") == {"get": 2}
    assert ledger_commands(source, tenant="t1") == {"get": 1, "set": 1, "incrby": 1}
    assert ledger_commands(source, tenant=None) == {"get": 1, "ping": 1}  # no tenant
    assert ledger_commands(source, component="cache", command="get", tenant="t2") == {"get": 1}
    assert ledger_total(source.snapshot(), component="cache") == 3  # a snapshot works too
    assert ledger_total(source, component="breaker") == 0


def test_changes_leave_out_what_did_not_change_and_subtract_known_traffic() -> None:
    before = {"get": 3, "set": 1, "info": 7}
    after = {"get": 5, "set": 1, "info": 8, "mget": 1}
    assert changes(before, after) == {"get": 2, "info": 1, "mget": 1}
    assert changes(before, after, minus={"info": 1}) == {"get": 2, "mget": 1}
    assert changes(after, after) == {}
    assert changes(before, before, minus={"auth": 1}) == {"auth": -1}  # shows up, not hidden
