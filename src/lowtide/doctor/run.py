"""Collecting the traffic ``lowtide doctor`` analyses: a saved MONITOR log or a live sample."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lowtide.context import Attribution
from lowtide.doctor.analyze import Report, analyse, report_from_commandstats
from lowtide.doctor.monitor import parse_lines
from lowtide.errors import RedisCommandError
from lowtide.hub import Lowtide
from lowtide.redis.info import parse_commandstats
from lowtide.redis.monitor import sample_monitor

__all__ = ["diagnose_live", "diagnose_log"]

_DOCTOR = Attribution("doctor", "-", None)


def diagnose_log(path: Path, *, provider: str = "upstash") -> Report:
    """Analyse a saved MONITOR log (``redis-cli monitor > file``)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        cmds = list(parse_lines(f))
    seconds = (cmds[-1].ts - cmds[0].ts) if len(cmds) > 1 else 1.0
    return analyse(cmds, seconds, provider=provider, source=f"monitor log {path.name}")


async def diagnose_live(url: str, seconds: float, *, provider: str = "upstash") -> Report:
    """Sample a live server for ``seconds``: MONITOR, or INFO commandstats where refused."""
    async with Lowtide(url, instance="lowtide-doctor") as hub:
        if not hub.distributed:
            raise ConnectionError(f"cannot reach {hub.settings.redacted_url}")
        try:
            t0 = time.time()
            lines = await sample_monitor(hub.settings, seconds)
            cmds = list(parse_lines(lines))
            return analyse(cmds, time.time() - t0, provider=provider, source="monitor")
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
