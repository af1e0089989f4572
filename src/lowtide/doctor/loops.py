"""Finding loops in a command stream: pollers, keepalives and health probes.

A loop shows as events at a flat rate whatever the traffic. One loop iteration may send several
commands in a burst (a health probe writes then reads: ``SET health:web-1 ok EX 30`` then
``GET health:web-1`` every 0.2 s), so the gaps between single commands alternate ~0 and the
period. Where the gaps fall in two groups, the short ones at least :data:`MIN_STEP` times
shorter than the long ones, the short ones are bursts: their commands are merged into one event
first, and the bursts' starts are tested for regularity (a coefficient of variation of their
gaps under :data:`MAX_CV`). Random traffic has no such step (or only among its very shortest
gaps) and stays irregular; a strictly periodic stream is left as it is.

A family probed by several machines at once (``health:web-1``, ``health:web-2``... all
``health:*``) interleaves their loops; each connection's own stream is tested as well, and the
family is a loop when the regular connections send most of its commands.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["Loop", "find_loop", "loop_rate"]

#: fewest bursts, and gaps between them, that can show a flat rate
MIN_BURSTS = 8
MIN_GAPS = 6
#: largest coefficient of variation of the gaps between bursts that still reads as flat
MAX_CV = 0.35
#: a burst's inner gaps are at least this many times shorter than the gaps between bursts
MIN_STEP = 4.0
#: MONITOR's clock resolution (seconds): equal timestamps are this close
RESOLUTION = 1e-6
#: share of a family's commands the regular connections must send for the family to be a loop
MIN_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Loop:
    """A family's loop: iterations per second (summed over ``connections``), and commands per
    iteration."""

    rate: float
    per_burst: float
    connections: int


def _bursts(times: Sequence[float]) -> list[float]:
    """Start times of the bursts in ``times`` (sorted): see module docs."""
    gaps = sorted(b - a for a, b in pairwise(times))
    # the widest step between the gaps (sorted): a loop's bursts put one between the gaps
    # inside a burst and those between bursts; without a clear step nothing is merged
    merge_upto = -1.0
    best = MIN_STEP
    edge = max(1, len(gaps) // 10)  # a step with under 10 % of the gaps on one side is noise
    for i in range(edge - 1, len(gaps) - edge):
        step = gaps[i + 1] / max(gaps[i], RESOLUTION)
        if step >= best:
            best, merge_upto = step, gaps[i]
    starts = list(times[:1])
    for a, b in pairwise(times):
        if b - a > merge_upto:
            starts.append(b)
    return starts


def loop_rate(times: Sequence[float]) -> tuple[float, int] | None:
    """``(bursts per second, bursts)`` when ``times`` (sorted) arrive at a flat rate, else None."""
    starts = _bursts(times)
    if len(starts) < MIN_BURSTS:
        return None
    gaps = [b - a for a, b in pairwise(starts)]
    if len(gaps) < MIN_GAPS:
        return None
    mean = statistics.fmean(gaps)
    if mean <= 0 or statistics.pstdev(gaps) / mean >= MAX_CV:
        return None
    return 1 / mean, len(starts)


def _split(arrivals: Sequence[tuple[float, str, str]], by_client: bool) -> list[list[float]]:
    groups: dict[str, list[float]] = {}
    for ts, command, client in arrivals:
        groups.setdefault(client if by_client else command, []).append(ts)
    return list(groups.values())


def _share(streams: list[list[float]], total: int) -> Loop | None:
    """The loop made of the regular ones among ``streams``, if they hold most commands."""
    rate = 0.0
    bursts = commands = regular = 0
    for times in streams:
        found = loop_rate(times)
        if found is not None:
            rate += found[0]
            bursts += found[1]
            commands += len(times)
            regular += 1
    if regular == 0 or commands < MIN_SHARE * total:
        return None
    return Loop(rate, commands / bursts, regular)


def find_loop(arrivals: Sequence[tuple[float, str, str]]) -> Loop | None:
    """The loop in one family's ``(time, command, connection)`` arrivals (sorted by time), or
    None: the whole stream (bursts merged), else each connection's own stream, else each
    command's (a write-then-read probe whose two commands are too far apart to merge)."""
    times = [a[0] for a in arrivals]
    whole = loop_rate(times)
    if whole is not None:
        return Loop(whole[0], len(times) / whole[1], 1)
    by_client = _share(_split(arrivals, by_client=True), len(times))
    if by_client is not None:
        return by_client
    by_command = _share(_split(arrivals, by_client=False), len(times))
    if by_command is None:
        return None
    # every command of the probe arrives once per iteration: the loop runs at one's rate
    n = by_command.connections
    return Loop(by_command.rate / n, by_command.per_burst * n, 1)
