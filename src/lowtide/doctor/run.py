"""Collecting the traffic ``lowtide doctor`` analyses: a saved MONITOR log or a live sample.

A live sample counts only what other clients send. The doctor opens one connection and sends
nothing on it but ``MONITOR`` (its handshake, AUTH or SELECT when the URL needs them, comes
before MONITOR and is not shown); no hub, listener or self-test runs beside it. Where MONITOR is
refused (Upstash, ACLs) it reads ``INFO commandstats`` twice on one connection: the server
counts the first INFO after producing its reply, so the difference holds exactly one command of
the doctor's own (that INFO), which is taken off.
"""

from __future__ import annotations

from pathlib import Path

from lowtide.doctor.analyze import Report, analyse, check_provider, report_from_commandstats
from lowtide.doctor.monitor import Command, ParseStats, parse_lines
from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.redis.monitor import sample_commandstats, sample_monitor
from lowtide.settings import Settings

__all__ = ["diagnose_live", "diagnose_log"]


def _span(cmds: list[Command]) -> float:
    """Seconds from the first to the last command (lines may be out of order)."""
    if len(cmds) < 2:
        return 1.0
    times = [c.ts for c in cmds]
    return max(times) - min(times)


def diagnose_log(path: Path, *, provider: str = "upstash") -> Report:
    """Analyse a saved MONITOR log (``redis-cli monitor > file``); bad lines are counted."""
    check_provider(provider)
    stats = ParseStats()
    with path.open(encoding="utf-8", errors="replace") as f:
        cmds = list(parse_lines(f, stats))
    report = analyse(cmds, _span(cmds), provider=provider, source=f"monitor log {path.name}")
    report.skipped_lines = stats.skipped
    return report


async def diagnose_live(
    url: str, seconds: float, *, provider: str = "upstash", settings: Settings | None = None
) -> Report:
    """Sample a live server for ``seconds``: MONITOR, or INFO commandstats where refused.

    ``settings`` (timeouts, TLS options) default to lowtide's for ``url``. Raises
    ConnectionError when the server cannot be reached.
    """
    check_provider(provider)
    settings = Settings(url=url) if settings is None else settings.with_(url=url)
    where = settings.redacted_url
    try:
        try:
            lines, elapsed = await sample_monitor(settings, seconds)
        except RedisCommandError:  # MONITOR refused: fall back to the server's counters
            delta, elapsed = await sample_commandstats(settings, seconds)
            return report_from_commandstats(delta, elapsed, provider=provider)
    except (RedisUnavailable, OSError) as exc:
        raise ConnectionError(f"cannot reach {where}: {exc}") from None
    stats = ParseStats()
    cmds = list(parse_lines(lines, stats))
    report = analyse(cmds, elapsed, provider=provider, source="monitor")
    report.skipped_lines = stats.skipped
    return report
