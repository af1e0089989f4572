"""Fuzzing the decoders of control state read back from Redis (issue 19): breaker states,
limiter replies and configurations, the kill switch, heartbeat counts, fleet snapshots. Whatever
the value, a decoder answers a checked value or "not one"; it never raises anything else."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowtide._untrusted import CLOCK_SLACK
from lowtide.breaker.state import MAX_GEN, MAX_OPENS, FleetState, parse_state
from lowtide.control import MAX_REASON, MAX_SWITCH_BYTES, parse_switch
from lowtide.fleet import MAX_FLEET_SIZE, heartbeat_count
from lowtide.fleetview import parse_snapshot
from lowtide.limiter.agreement import LimitConfig
from lowtide.limiter.rates import parse_state as parse_rate_state
from lowtide.limiter.state import (
    BadState,
    check_rate_reply,
    check_window_reply,
    found_counter,
)
from tests.unit.untrusted_strategies import FUZZ, json_like

# -- breaker state -------------------------------------------------------------------------------
state_fields = st.fixed_dictionaries(
    {},
    optional={
        "until": json_like | st.floats(min_value=-1e20, max_value=1e20),
        "gen": json_like | st.integers(min_value=-1, max_value=2**64),
        "opens": json_like | st.integers(min_value=-1, max_value=2000),
    },
)


@FUZZ
@given(state_fields | json_like, st.floats(min_value=0, max_value=4e9), st.floats(1, 1e5))
def test_breaker_state_parser_accepts_only_well_formed_states(
    value: object, now: float, max_open: float
) -> None:
    state = parse_state(value, now=now, max_open=max_open)
    if state is None:
        return
    assert isinstance(value, dict)
    assert math.isfinite(state.until)
    assert 0 <= state.until <= now + max_open + CLOCK_SLACK
    assert 0 <= state.gen <= MAX_GEN
    assert 0 <= state.opens <= MAX_OPENS
    assert parse_state(state.to_dict(), now=now, max_open=max_open) == state


def test_breaker_state_parser_examples() -> None:
    now = 1_700_000_000.0
    ok = {"until": now + 30, "gen": 1_700_000_000_000, "opens": 2}
    assert parse_state(ok, now=now, max_open=300) == FleetState(now + 30, 1_700_000_000_000, 2)
    assert parse_state({"until": now}, now=now, max_open=300) == FleetState(now, 0, 0)
    many = {"until": now, "opens": 10**6}  # a dependency down for weeks: counted at most 1000
    assert parse_state(many, now=now, max_open=300) == FleetState(now, 0, MAX_OPENS)
    for bad in (
        {"until": "soon"},
        [1],
        None,
        {"until": float("nan")},
        {"until": float("inf")},
        {"until": now + 1e9},
        {"until": True},
        {"until": now, "gen": 1.5},
        {"until": now, "gen": True},
        {"until": now, "opens": -1},
        {"until": now, "opens": 1.0},
    ):
        assert parse_state(bad, now=now, max_open=300) is None, bad


# -- limiter state -------------------------------------------------------------------------------
reply_part = json_like | st.binary(max_size=30) | st.integers(min_value=-(2**70), max_value=2**70)


@FUZZ
@given(reply_part, st.integers(min_value=1, max_value=1000))
def test_window_counter_replies_are_checked(counter: object, charged: int) -> None:
    try:
        value = check_window_reply(counter, charged)
    except BadState:
        return
    assert type(value) is int
    assert value >= charged


@FUZZ
@given(reply_part, st.integers(min_value=1, max_value=1000))
def test_a_counter_found_by_set_nx_get_is_one_incrby_could_add_to(
    found: object, charged: int
) -> None:
    value = found_counter(found, charged)
    if value is not None:
        assert type(value) is int
        assert 0 <= value <= 2**63 - 1 - charged


def test_found_counter_examples() -> None:
    assert found_counter(b"7", 1) == 7
    assert found_counter(b"0", 1) == 0
    assert found_counter(b"9223372036854775806", 1) == 2**63 - 2
    # planted counters: unusable, so the reservation's INCRBY meets (and counts) them
    for bad in (b"9223372036854775807", b"-1", b"1e3", b"abc", b"", b"\xd9\x9b", 7, None):
        assert found_counter(bad, 1) is None, bad


@FUZZ
@given(st.lists(reply_part, min_size=0, max_size=9) | reply_part, st.integers(0, 100))
def test_token_bucket_replies_are_checked(reply: object, want: int) -> None:
    kw = {"now": 1000.0, "fair_rate": 5.0, "cap": 50.0, "lease_for": 60.0}
    try:
        g = check_rate_reply(reply, want=want, **kw)
    except BadState:
        return
    assert 0 <= g.rate <= 5.0 * (1 + 1e-6) + 1e-9
    assert 0 <= g.burst <= 50
    assert 999.0 <= g.until <= 1061.0
    assert -1 <= g.fill <= g.burst
    assert 0 <= g.added <= g.burst
    assert 0 <= g.granted <= want
    assert 0 <= g.retry <= 60.001
    assert 0 <= g.left <= 50


def test_token_bucket_replies_as_the_script_sends_them() -> None:
    kw = {"now": 1000.0, "want": 3, "fair_rate": 5.0, "cap": 50.0, "lease_for": 60.0}
    g = check_rate_reply([b"2.5", 4, b"1060.000000", -1, 2, 3, b"0.000000", 7], **kw)
    assert (g.rate, g.burst, g.until, g.fill, g.added, g.granted, g.retry, g.left) == (
        2.5,
        4,
        1060.0,
        -1,
        2,
        3,
        0.0,
        7,
    )
    for bad in (
        [b"6", 4, b"1060", -1, 0, 3, b"0", 7],  # more than the fair rate
        [b"2.5", 4, b"1e300", -1, 0, 3, b"0", 7],  # a lease for ever
        [b"2.5", 4, b"1060", 5, 0, 3, b"0", 7],  # a fill above the burst
        [b"2.5", 4, b"1060", -1, 5, 3, b"0", 7],  # an addition above the burst
        [b"2.5", 4, b"1060", -1, 0, 4, b"0", 7],  # more than wanted
        [b"2.5", 4, b"1060", -1, 0, 3, b"nan", 7],
        [b"2.5", 4, b"1060", -1, 0, 3, b"0"],
        None,
        b"x",
    ):
        with pytest.raises(BadState):
            check_rate_reply(bad, **kw)


@FUZZ
@given(st.text(max_size=300) | st.builds(";".join, st.lists(st.text(max_size=40), max_size=8)))
def test_stored_token_bucket_states_are_parsed_defensively(raw: str) -> None:
    state = parse_rate_state(raw, 1000.0, cap=50.0, rate=5.0, lease_for=60.0)
    assert 0 <= state.tokens <= 50.0
    assert state.at <= 1000.0
    for lease in state.leases.values():
        assert 0 < lease.rate <= 5.0
        assert 0 <= lease.burst <= 50
        assert lease.until <= 1120.0


@FUZZ
@given(
    st.text(max_size=120)
    | st.builds(
        "/".join,
        st.tuples(
            st.sampled_from(["fixed_window", "token_bucket", "x"]),
            st.text(max_size=25),
            st.text(max_size=25),
        ),
    )
    | json_like
)
def test_stored_limiter_configurations_are_parsed_defensively(value: object) -> None:
    config = LimitConfig.parse(value)
    if config is None:
        return
    assert config.algorithm in ("fixed_window", "token_bucket")
    assert 1 <= config.limit < 10**18
    assert math.isfinite(config.per)
    assert config.per > 0
    assert LimitConfig.parse(config.text()) == config


# -- the kill switch -------------------------------------------------------------------------------
@FUZZ
@given(
    st.binary(max_size=200)
    | json_like.map(lambda v: json.dumps(v, default=repr).encode())
    | st.fixed_dictionaries(
        {"state": st.sampled_from(["suspended", "active"]) | json_like},
        optional={"reason": json_like | st.text(max_size=400), "at": json_like},
    ).map(lambda v: json.dumps(v, default=repr).encode())
)
def test_only_a_well_formed_suspension_suspends(raw: bytes) -> None:
    state = parse_switch(raw)
    if state is None:
        return
    assert set(state) == {"state", "reason", "at"}
    assert state["state"] == "suspended"
    assert isinstance(state["reason"], str)
    assert state["reason"].isprintable()
    assert 0 < len(state["reason"]) <= MAX_REASON
    assert state["at"] is None or math.isfinite(state["at"])


def test_switch_examples() -> None:
    ok = parse_switch(b'{"state": "suspended", "reason": "incident 42", "at": 1.5}')
    assert ok == {"state": "suspended", "reason": "incident 42", "at": 1.5}
    assert parse_switch(b'{"state": "suspended"}') == {
        "state": "suspended",
        "reason": "fleet switch",
        "at": None,
    }
    for bad in (b"garbage", b"[1]", b"null", b'"suspended"', b"{}", b"[" * 5000, None, 42):
        assert parse_switch(bad) is None
    big = b'{"state": "suspended", "x": "' + b"y" * MAX_SWITCH_BYTES + b'"}'
    assert parse_switch(big) is None


# -- heartbeats and fleet snapshots ----------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=25) | json_like | st.integers())
def test_heartbeat_counts_are_bounded(value: object) -> None:
    n = heartbeat_count(value)
    if n is not None:
        assert type(n) is int
        assert 0 <= n <= MAX_FLEET_SIZE


def test_heartbeat_count_examples() -> None:
    assert heartbeat_count(None) == 0
    assert heartbeat_count(b"42") == 42
    assert heartbeat_count(7) == 7
    for bad in (b"text", b"1000000000000", b"-5", b" 7", b"1_0", b"\xd9\xa1", 10**12, True, -1):
        assert heartbeat_count(bad) is None


snapshot_like = st.fixed_dictionaries(
    {"instance": st.text(max_size=10) | json_like},
    optional={
        "mode": st.text(max_size=10) | json_like,
        "billed_per_day": st.floats(allow_nan=False, allow_infinity=False) | json_like,
        "commands": st.integers(min_value=-5, max_value=10**6) | json_like,
        "by_family": st.dictionaries(st.text(max_size=10), st.integers(-5, 100) | json_like),
        "saved": json_like,
    },
)


@FUZZ
@given(
    st.binary(max_size=200)
    | json_like.map(lambda v: json.dumps(v, default=repr).encode())
    | snapshot_like.map(lambda v: json.dumps(v, default=repr).encode())
)
def test_fleet_snapshots_are_checked_before_use(raw: bytes) -> None:
    snap = parse_snapshot(raw)
    if snap is None:
        return
    for name in ("instance", "provider", "mode"):
        assert isinstance(snap[name], str)
    for name in ("at", "elapsed_s", "commands", "billed", "per_day", "billed_per_day"):
        if snap[name] is None:  # a projection not made yet
            assert name in ("per_day", "billed_per_day")
            continue
        assert math.isfinite(snap[name])
        assert snap[name] >= 0
    for name in ("by_component", "by_command", "by_family", "by_tenant", "saved"):
        assert isinstance(snap[name], dict)
        assert all(isinstance(k, str) for k in snap[name])
        assert all(math.isfinite(v) and v >= 0 for v in snap[name].values())
    # what lowtide top computes from it
    float(snap["billed_per_day"] or 0.0)
    sum(snap["saved"].values())


def test_a_published_snapshot_reads_back_unchanged() -> None:
    snap = {
        "instance": "web-1",
        "provider": "upstash",
        "mode": "distributed",
        "at": 1_700_000_000.5,
        "elapsed_s": 61.0,
        "commands": 120,
        "billed": 118,
        "per_day": 170_000.0,
        "billed_per_day": 168_000.0,
        "usd_per_month": 10.08,
        "by_component": {"cache": 100, "limiter": 20},
        "by_command": {"get": 100},
        "by_family": {"lt:c:profiles:*": 100},
        "by_tenant": {"t1": 100},
        "saved": {"cache": 900},
    }
    assert parse_snapshot(json.dumps(snap).encode()) == snap
