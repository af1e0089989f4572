"""The token bucket's rate leases, property-tested: a fleet of hubs spending local buckets,
renewing leases and taking shared tokens never admits more than ``burst + rate x elapsed``."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.limiter.rates import SharedState, parse_state, take

SLACK = 0.05  # a hub stops using its lease this long before it ends


class Hub:
    """What a hub does with its grants (the limiter's side, simplified)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.local = 0.0
        self.rate = 0.0
        self.burst = 0
        self.until = -math.inf
        self.at = 0.0
        self.tokens: list[float] = []  # shared tokens in hand: usable until these times

    def refill(self, now: float) -> None:
        end = min(now, self.until - SLACK)
        if end > self.at and self.rate > 0:
            self.local = min(float(self.burst), self.local + self.rate * (end - self.at))
        self.at = max(self.at, now)
        if now >= self.until - SLACK:
            self.local = 0.0  # the lease is over: its tokens go with it

    def spend(self, now: float) -> bool:
        self.refill(now)
        self.tokens = [t for t in self.tokens if t > now]
        if self.local >= 1:
            self.local -= 1
            return True
        if self.tokens:
            self.tokens.pop()
            return True
        return False


@settings(max_examples=400, deadline=None)
@given(
    limit=st.integers(1, 200),
    per=st.floats(0.5, 10),
    hubs=st.integers(1, 4),
    steps=st.lists(
        st.tuples(
            st.one_of(st.floats(0, 0.3), st.floats(0, 3)),  # time to the next step, in windows
            st.integers(0, 3),  # which hub
            st.sampled_from(["spend", "renew", "renew", "drop"]),
            st.floats(0, 2),  # wanted rate, in fair shares
            st.integers(0, 200),  # wanted burst
            st.integers(0, 20),  # wanted shared tokens, in twentieths of the limit
        ),
        min_size=1,
        max_size=200,
    ),
)
def test_rate_leases_never_exceed_burst_plus_rate(
    limit: int,
    per: float,
    hubs: int,
    steps: list[tuple[float, int, str, float, int, int]],
) -> None:
    # greedy hubs: each step, one hub renews (or drops) its lease or not, spends all it holds,
    # takes shared tokens and spends them at once (the worst case for the bound)
    rate = limit / per
    horizon = per / 10
    cap = max(1.0, limit * (1 - horizon / per))  # the burst, less what a horizon refills
    lease_for = 3 * per
    state = SharedState(cap, 0.0)
    fleet = [Hub(f"h{i}") for i in range(hubs)]
    now = 0.0
    admitted: list[float] = []
    for dt, who, action, share, want_burst, want in steps:
        now += dt * per
        hub = fleet[who % hubs]
        hub.refill(now)
        while hub.spend(now):
            admitted.append(now)
        keep = action == "spend" and hub.until - SLACK > now
        g = take(
            state,
            now,
            hub.name,
            want_rate=0.0 if action == "drop" else (hub.rate if keep else share * rate / hubs),
            want_burst=hub.burst if keep else want_burst,
            lease_for=lease_for,
            want=want * limit // 20,
            fair_rate=rate / hubs,
            rate=rate,
            cap=cap,
        )
        assert 0 <= g.granted <= want * limit // 20
        assert g.rate <= rate / hubs + 1e-9
        hub.rate, hub.burst, hub.until = g.rate, g.burst, g.until
        hub.local = min(float(g.burst), g.fill if g.fill >= 0 else hub.local + g.added)
        hub.tokens += [now + horizon] * g.granted
        while hub.spend(now):
            admitted.append(now)
        # round trip through the stored form
        state = parse_state(serialize(state), now, cap=cap, rate=rate, lease_for=lease_for)
    # every interval [t_i, t_j]: admissions <= burst (= limit) + rate * (t_j - t_i)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= limit + rate * (admitted[j] - admitted[i]) + 1e-6


def serialize(state: SharedState) -> str:
    leases = [f"{h},{x.rate!r},{x.burst},{x.until!r}" for h, x in state.leases.items()]
    return ";".join(["v1", repr(state.tokens), repr(state.at), *leases])


def test_unreadable_state_is_an_empty_bucket_and_missing_state_a_full_one() -> None:
    kw = {"cap": 10.0, "rate": 5.0, "lease_for": 6.0}
    assert parse_state(None, 100.0, **kw).tokens == 10.0
    for raw in ("garbage", "v1;x;1", "v1;nan;1", "v2;1;1", ""):
        s = parse_state(raw, 100.0, **kw)
        assert (s.tokens, s.leases) == (0.0, {})
    s = parse_state("v1;50;90;a,1.0,2,101;b,99,2,101;c,1.0,2,1e12;d,x", 100.0, **kw)
    assert s.tokens == 10.0  # capped
    assert list(s.leases) == ["a"]  # b: more than the whole rate; c: ends too far ahead


@given(
    skew=st.floats(0.001, 50),
    steps=st.lists(st.floats(0, 0.5), min_size=1, max_size=60),
)
def test_a_hub_whose_clock_is_behind_never_rewinds_the_shared_bucket(
    skew: float, steps: list[float]
) -> None:
    # two hubs take every shared token they can, one `skew` seconds behind the other: the
    # stored time never moves backwards, so the bucket refills at most rate x (real time
    # elapsed + skew) (the gap the hub ahead saw first), never the same interval twice
    rate, cap, lease_for = 10.0, 90.0, 60.0
    kw = {"want_rate": 0.0, "want_burst": 0, "lease_for": lease_for, "want": 1000}
    kw |= {"fair_rate": rate, "rate": rate, "cap": cap}
    t0 = 1_000_000.0
    state = SharedState(0.0, t0)  # drained
    granted, times, t = 0, [t0], t0
    for dt in steps:
        t += dt
        for now in (t, t - skew):
            state = parse_state(serialize(state), now, cap=cap, rate=rate, lease_for=lease_for)
            granted += take(state, now, "h", **kw).granted  # type: ignore[arg-type]
            times.append(state.at)
    assert granted <= rate * (t - t0) + 1e-6
    assert times == sorted(times)


def test_a_stored_time_far_ahead_is_not_one() -> None:
    # a planted time far ahead would stop every refill until then: not a state (empty bucket)
    kw = {"cap": 10.0, "rate": 5.0, "lease_for": 6.0}
    s = parse_state("v1;5;1000;a,1.0,2,101", 100.0, **kw)
    assert (s.tokens, s.at, s.leases) == (0.0, 100.0, {})
    s = parse_state("v1;5;105;a,1.0,2,101", 100.0, **kw)  # a hub a little ahead: kept
    assert (s.tokens, s.at, list(s.leases)) == (5.0, 105.0, ["a"])
