"""Collecting the traffic ``lowtide doctor`` analyses: a saved MONITOR log or a live sample."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lowtide.context import Attribution
from lowtide.doctor.analyze import Report, analyse, report_from_commandstats
from lowtide.doctor.monitor import Command, ParseStats, parse_lines
from lowtide.errors import RedisCommandError
from lowtide.hub import Lowtide
from lowtide.redis.info import parse_commandstats
from lowtide.redis.monitor import sample_monitor

__all__ = ["diagnose_live", "diagnose_log"]

_DOCTOR = Attribution("doctor", "-", None)


def _span(cmds: list[Command]) -> float:
    """Seconds from the first to the last command (lines may be out of order)."""
    if len(cmds) < 2:
        return 1.0
    times = [c.ts for c in cmds]
    return max(times) - min(times)


def diagnose_log(path: Path, *, provider: str = "upstash") -> Report:
    """Analyse a saved MONITOR log (``redis-cli monitor > file``); bad lines are counted."""
    stats = ParseStats()
    with path.open(encoding="utf-8", errors="replace") as f:
        cmds = list(parse_lines(f, stats))
    report = analyse(cmds, _span(cmds), provider=provider, source=f"monitor log {path.name}")
    report.skipped_lines = stats.skipped
    return report


async def diagnose_live(url: str, seconds: float, *, provider: str = "upstash") -> Report:
    """Sample a live server for ``seconds``: MONITOR, or INFO commandstats where refused."""
    async with Lowtide(url, instance="lowtide-doctor") as hub:
        if not hub.distributed:
            raise ConnectionError(f"cannot reach {hub.settings.redacted_url}")
        try:
            t0 = time.time()
            lines = await sample_monitor(hub.settings, seconds)
            stats = ParseStats()
            cmds = list(parse_lines(lines, stats))
            report = analyse(cmds, time.time() - t0, provider=provider, source="monitor")
            report.skipped_lines = stats.skipped
            return report
        except RedisCommandError:
            pass  # MONITOR refused (Upstash, ACL): fall back to the server's counters
        before = parse_commandstats(await hub.gateway.call(_DOCTOR, "INFO", "commandstats"))
        t0 = time.time()
        await asyncio.sleep(seconds)
        after = parse_commandstats(await hub.gateway.call(_DOCTOR, "INFO", "commandstats"))
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        delta["info"] = delta.get("info", 0) - 1
        delta = {k: v for k, v in delta.items() if v > 0}
        return report_from_commandstats(delta, time.time() - t0, provider=provider)
