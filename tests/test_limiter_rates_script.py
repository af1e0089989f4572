"""The token bucket's rate-lease script on a real server agrees with its pure mirror
(:mod:`lowtide.limiter.rates`, property-tested in ``tests/unit/test_limiter_rates.py``)."""

from __future__ import annotations

import math
import random

import pytest

from lowtide.limiter.rates import Grant, SharedState, parse_state, take
from lowtide.redis.scripts import Script
from lowtide.testing import ValkeyServer

SCRIPT = Script.from_package("rate_lease")


def run(server: ValkeyServer, key: str, now: float, hub: str, **kw: float) -> list[object]:
    reply = server.command(
        "EVAL",
        SCRIPT.body(upstash=False),
        1,
        key,
        f"{now:.6f}",
        hub,
        repr(kw["want_rate"]),
        int(kw["want_burst"]),
        repr(kw["lease_for"]),
        int(kw["want"]),
        repr(kw["fair_rate"]),
        repr(kw["rate"]),
        repr(kw["cap"]),
    )
    assert reply[1][0] == b"get"
    return list(reply[0])


def mirror(
    server: ValkeyServer, key: str, now: float, hub: str, kw: dict[str, float]
) -> tuple[SharedState, Grant]:
    """The Python mirror's decision for the state stored at ``key`` and the script's ``kw``
    (read before the script runs): the state as parsed and the grant."""
    rate, cap, lease_for = kw["rate"], kw["cap"], kw["lease_for"]
    raw = server.command("GET", key)
    state = parse_state(
        None if raw is None else raw.decode(), now, cap=cap, rate=rate, lease_for=lease_for
    )
    g = take(
        state,
        now,
        hub,
        want_rate=kw["want_rate"],
        want_burst=int(kw["want_burst"]),
        lease_for=lease_for,
        want=int(kw["want"]),
        fair_rate=kw["fair_rate"],
        rate=rate,
        cap=cap,
    )
    return state, g


def assert_same_grant(got: list[object], g: Grant) -> None:
    """The script's reply ``got`` grants what the mirror's ``g`` does (burst, fill, added,
    granted, left)."""
    assert (int(got[1]), int(got[3]), int(got[4]), int(got[5]), int(got[7])) == (
        g.burst,
        g.fill,
        g.added,
        g.granted,
        g.left,
    )


@pytest.mark.parametrize("seed", range(6))
def test_the_script_and_its_mirror_agree(lowtide_fresh_server: ValkeyServer, seed: int) -> None:
    server = lowtide_fresh_server
    rng = random.Random(seed)
    limit, per = rng.choice([(10, 1.0), (200, 2.0), (5, 60.0)])
    rate, cap, lease_for = limit / per, limit * 0.9, 60.0
    hubs = [f"h{i}" for i in range(rng.randint(1, 4))]
    key = f"lt:r:t:{seed}:rates"
    now = 1_800_000_000.0
    for _ in range(200):
        now = round(now + rng.choice([0.0, 0.001, 0.05, 0.5, 5.0, 40.0]), 6)  # as sent
        hub = rng.choice(hubs)
        kw: dict[str, float] = {
            "want_rate": rng.choice([0.0, rate / 10, rate / 2, rate]),
            "want_burst": rng.randint(0, limit),
            "lease_for": lease_for,
            "want": rng.randint(0, limit),
            "fair_rate": rate / len(hubs),
            "rate": rate,
            "cap": cap,
        }
        _, g = mirror(server, key, now, hub, kw)
        got = run(server, key, now, hub, **kw)
        assert math.isclose(float(got[0]), g.rate, rel_tol=1e-6, abs_tol=1e-9)
        assert_same_grant(got, g)
        assert math.isclose(float(got[2]), g.until, abs_tol=1e-5)
        assert math.isclose(float(got[6]), g.retry, rel_tol=1e-6, abs_tol=1e-5)
        assert server.command("PTTL", key) > 0


def test_unreadable_state_is_an_empty_bucket(lowtide_fresh_server: ValkeyServer) -> None:
    server = lowtide_fresh_server
    kw = {"want_burst": 2, "lease_for": 60.0, "fair_rate": 5.0, "rate": 5.0, "cap": 10.0}
    for planted in ("garbage", "v1;nan;1", "v1;1e999;1", "v2;5;1"):
        server.command("SET", "lt:r:t:x:rates", planted)
        got = run(server, "lt:r:t:x:rates", 100.0, "a", want_rate=1.0, want=3, **kw)
        assert (int(got[3]), int(got[5])) == (0, 0)  # no fill, nothing granted


def stored_at(server: ValkeyServer, key: str) -> float:
    """The time the stored state was last advanced to (``v1;tokens;at;...``)."""
    return float(server.command("GET", key).decode().split(";")[2])


@pytest.mark.parametrize("skew", [0.05, 2.0])
def test_a_hub_whose_clock_is_behind_does_not_rewind_the_shared_bucket(
    lowtide_fresh_server: ValkeyServer, skew: float
) -> None:
    # two hubs take shared tokens every 10 ms, one of them `skew` seconds behind the other (the
    # hub supplies `now` from its own estimate of the server's clock): over 1 s the shared
    # bucket refills at most rate x 1 s, and its stored time never moves backwards
    server = lowtide_fresh_server
    kw = {"want_rate": 0.0, "want_burst": 0, "lease_for": 60.0, "want": 1000, "fair_rate": 5.0}
    kw |= {"rate": 10.0, "cap": 90.0}
    key, t0 = "lt:r:t:skew:rates", 1_000_000.0
    run(server, key, t0, "a", **kw)  # drain the bucket (missing = full)
    times, granted = [stored_at(server, key)], 0
    for k in range(1, 101):
        for hub, now in (("a", t0 + k * 0.01), ("b", t0 + k * 0.01 - skew)):
            granted += int(run(server, key, now, hub, **kw)[5])
            times.append(stored_at(server, key))
    assert granted <= 10.0 * 1.0 + 1
    assert times == sorted(times)


@pytest.mark.parametrize("seed", range(3))
def test_the_script_and_its_mirror_agree_when_clocks_differ(
    lowtide_fresh_server: ValkeyServer, seed: int
) -> None:
    # hubs whose estimates of the server's clock differ: the stored time and every reply agree
    server = lowtide_fresh_server
    rng = random.Random(seed)
    rate, cap, lease_for = 5.0, 45.0, 60.0
    skews = {"h0": 0.0, "h1": 0.05, "h2": 2.0, "h3": 30.0}
    key = f"lt:r:t:skew{seed}:rates"
    t = 1_800_000_000.0
    for _ in range(150):
        t += rng.choice([0.0, 0.01, 0.5, 5.0])
        hub = rng.choice(list(skews))
        now = round(t - skews[hub], 6)
        kw: dict[str, float] = {
            "want_rate": rng.choice([0.0, rate / 4, rate / 2]),
            "want_burst": rng.randint(0, 10),
            "lease_for": lease_for,
            "want": rng.randint(0, 10),
            "fair_rate": rate / 2,
            "rate": rate,
            "cap": cap,
        }
        state, g = mirror(server, key, now, hub, kw)
        got = run(server, key, now, hub, **kw)
        assert_same_grant(got, g)
        assert math.isclose(float(got[6]), g.retry, rel_tol=1e-6, abs_tol=1e-5)
        assert math.isclose(stored_at(server, key), state.at, abs_tol=1e-6)
