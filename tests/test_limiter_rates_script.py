"""The token bucket's rate-lease script on a real server agrees with its pure mirror
(:mod:`lowtide.limiter.rates`, property-tested in ``tests/unit/test_limiter_rates.py``)."""

from __future__ import annotations

import math
import random

import pytest

from lowtide.limiter.rates import parse_state, take
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
        got = run(server, key, now, hub, **kw)
        assert math.isclose(float(got[0]), g.rate, rel_tol=1e-6, abs_tol=1e-9)
        assert (int(got[1]), int(got[3]), int(got[4]), int(got[5]), int(got[7])) == (
            g.burst,
            g.fill,
            g.added,
            g.granted,
            g.left,
        )
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
