"""Loop detection (:mod:`lowtide.doctor.loops`) and the report's warnings, with no server.

Seeded random streams stand in for traffic: ordinary (Poisson) traffic, bursty or not, is never
a loop; probes that write then read, probes with a slow link between their two commands,
several machines probing out of phase, and jittered pollers are.
"""

from __future__ import annotations

import random

import pytest

from lowtide.doctor import Command, analyse
from lowtide.doctor.analyze import MIN_COMMANDS, MIN_SECONDS
from lowtide.doctor.loops import find_loop, loop_rate

SEEDS = range(300)


def poisson(rng: random.Random, n: int, rate: float) -> list[float]:
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def test_random_traffic_is_not_a_loop() -> None:
    for seed in SEEDS:
        random_traffic_is_not_a_loop(random.Random(seed))


def random_traffic_is_not_a_loop(rng: random.Random) -> None:
    times = poisson(rng, rng.randint(8, 400), rng.uniform(0.1, 500))
    assert loop_rate(times) is None
    bursty = sorted(
        t + k * 0.001
        for t in poisson(rng, rng.randint(8, 100), 5)
        for k in range(rng.randint(1, 5))
    )
    assert loop_rate(bursty) is None


def arrivals(
    times: list[float], commands: list[str], client: str = "c"
) -> list[tuple[float, str, str]]:
    return [(t, commands[i % len(commands)], client) for i, t in enumerate(times)]


def test_probes_and_pollers_are_loops() -> None:
    for seed in SEEDS:
        probes_and_pollers_are_loops(random.Random(seed))


def probes_and_pollers_are_loops(rng: random.Random) -> None:
    # SET then GET on a fast link, every 0.2 s: gaps alternate ~0 and ~0.2 s
    fast = [x for i in range(15) for t in [i * 0.2 + rng.uniform(0, 0.02)] for x in (t, t + 0.0005)]
    loop = find_loop(arrivals(fast, ["set", "get"]))
    assert loop is not None
    assert loop.rate == pytest.approx(5.0, rel=0.1)
    assert loop.per_burst == 2
    # the same over a slow link (20-40 ms between the two): found per command
    slow = [
        x
        for i in range(15)
        for t in [i * 0.2 + rng.uniform(0, 0.02)]
        for x in (t, t + rng.uniform(0.02, 0.04))
    ]
    loop = find_loop(arrivals(slow, ["set", "get"]))
    assert loop is not None
    assert loop.rate == pytest.approx(5.0, rel=0.1)
    assert loop.per_burst == 2
    # three machines out of phase, one connection each
    machines = []
    for m in range(3):
        phase = rng.uniform(0, 0.2)
        times = [x for i in range(15) for t in [phase + i * 0.2] for x in (t, t + 0.0008)]
        machines += arrivals(times, ["set", "get"], f"10.0.0.{m}:5000")
    loop = find_loop(sorted(machines))
    assert loop is not None
    assert loop.rate * loop.per_burst == pytest.approx(30.0, rel=0.1)  # 3 x (SET + GET) x 5/s
    # a poller with 10 % jitter
    assert loop_rate(sorted(i * 0.5 + rng.uniform(-0.05, 0.05) for i in range(12))) is not None


def commands(
    n: int, seconds: float, key: str = "app:{i}", name: str = "get", *args: str
) -> list[Command]:
    return [
        Command(i * seconds / n, 0, "127.0.0.1:5000", name, (key.format(i=i), *args))
        for i in range(n)
    ]


def test_a_short_sample_is_said_to_be_one() -> None:
    short = analyse(commands(5, 0.04), 0.04)
    assert short.per_day > 10_000_000  # 5 commands in 0.04 s, projected
    (warning,) = short.warnings
    assert "5 commands in 0.0s" in warning
    assert "at least 30s and 100 commands" in warning
    few = analyse(commands(20, 60), 60)
    assert len(few.warnings) == 1
    enough = analyse(commands(MIN_COMMANDS, MIN_SECONDS), MIN_SECONDS)
    assert enough.warnings == []


def test_counts_in_findings_agree_with_their_nouns() -> None:
    one = analyse(commands(1, 1, "upload:tenant-1:a", "set", "v"), 1)
    (finding,) = [f for f in one.findings if f.kind == "no_ttl"]
    assert finding.detail == (
        "1 key written without an expiry, kept (and stored) until something deletes it: "
        "give it a TTL."
    )
    two = analyse(commands(2, 1, "upload:tenant-{i}:a", "set", "v"), 1)
    (finding,) = [f for f in two.findings if f.kind == "no_ttl"]
    assert finding.detail == (
        "2 keys written without an expiry, kept (and stored) until something deletes them: "
        "give them a TTL."
    )
    static = analyse(commands(40, 10, "config:flags"), 10)
    (finding,) = [f for f in static.findings if f.kind == "static_reads"]
    assert "40 reads of only 1 key and" in finding.detail


def test_static_reads_under_lowtides_namespace_get_no_drop_in_advice() -> None:
    from lowtide.doctor.analyze import analyse
    from lowtide.doctor.monitor import Command

    cmds = [Command(i * 0.01, 0, "c1", "get", ("lt:c:profiles:t1:k",)) for i in range(50)]
    cmds += [Command(i * 0.01, 0, "c1", "get", ("discovery:slack:T024BE7LD",)) for i in range(50)]
    cmds += [Command(i * 0.01, 0, "c1", "get", ("discovery:slack:T99XK2L4Q",)) for i in range(50)]
    report = analyse(cmds, 1.0)
    kinds = {(f.kind, f.family) for f in report.findings}
    assert ("dropin", "discovery:slack:") in kinds
    assert not any(f.kind == "dropin" and "lt:" in f.family for f in report.findings)
