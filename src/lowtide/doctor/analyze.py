"""Where a server's commands come from: families, projection, cost, and findings.

Findings (each with the key family and a plain-words detail):

* ``amplification``: a family read in lock-step with another (the same connection reads family A
  right before most reads of family B): the incident's quota GET before every cache GET.
* ``dropin``: the key prefixes of the static reads outside lowtide's namespace, merged: what to
  pass as ``lt.redis(cache_prefixes=...)`` so the same client code reads them from memory.
* ``static_reads``: the same few keys read again and again with no writes during the sample:
  an in-process cache would answer them with 0 commands.
* ``background_loop``: a family arriving at a flat, regular rate: a poller or a loop, whatever
  the traffic (one loop iteration may send several commands; see :mod:`~lowtide.doctor.loops`).
* ``health_check``: PINGs, or health/ping/status keys, at a regular rate (a probe that writes
  then reads its key included).
* ``no_ttl``: keys written without an expiry (and not given one during the sample).

Per-day figures are the sample's rate times a day: a sample shorter than :data:`MIN_SECONDS` or
with fewer than :data:`MIN_COMMANDS` commands says so in :attr:`Report.warnings`. Dollars come
from the provider's billing profile (:func:`lowtide.ledger.profile_for_provider`, the same
mapping hubs use); any provider the settings accept is accepted here.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lowtide.doctor.families import family_of
from lowtide.doctor.loops import Loop, find_loop
from lowtide.doctor.monitor import Command
from lowtide.dropin.reads import minimal_prefixes
from lowtide.errors import ConfigError
from lowtide.ledger import profile_for_provider
from lowtide.settings import PROVIDERS

__all__ = [
    "MIN_COMMANDS",
    "MIN_SECONDS",
    "Finding",
    "Report",
    "analyse",
    "check_provider",
    "report_from_commandstats",
]

_DAY = 86_400.0
#: shortest sample, and fewest commands, whose per-day projection is shown without a warning
MIN_SECONDS = 30.0
MIN_COMMANDS = 100
READS = frozenset(
    {
        "get",
        "mget",
        "hget",
        "hgetall",
        "hmget",
        "exists",
        "ttl",
        "pttl",
        "smembers",
        "sismember",
        "zrange",
        "zscore",
        "lrange",
        "lindex",
        "getex",
        "strlen",
        "type",
        "scard",
        "zcard",
    }
)
WRITES = frozenset(
    {
        "set",
        "setex",
        "psetex",
        "setnx",
        "mset",
        "hset",
        "hmset",
        "hsetnx",
        "incr",
        "incrby",
        "incrbyfloat",
        "decr",
        "decrby",
        "lpush",
        "rpush",
        "sadd",
        "zadd",
        "append",
        "getset",
        "hincrby",
        "lset",
        "linsert",
    }
)
EXPIRES = frozenset({"expire", "pexpire", "expireat", "pexpireat", "setex", "psetex", "getex"})
_HEALTH = re.compile(r"health|ping|status|heartbeat|alive", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth fixing."""

    kind: str
    family: str
    detail: str


@dataclass(slots=True)
class Report:
    """What ``lowtide doctor`` prints and writes (``--json``)."""

    source: str
    commands: int
    seconds: float
    per_day: float
    billed_per_day: float
    usd_per_month: float
    provider: str
    families: list[dict[str, Any]] = field(default_factory=list)
    by_command: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    #: MONITOR lines skipped as malformed (neither a command nor ``OK``)
    skipped_lines: int = 0
    #: False when the provider's commands have no price (self-hosted): no dollars to show
    priced: bool = True
    #: what limits the report (a sample too short to project per day)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        d = asdict(self)
        d["findings"] = [asdict(f) for f in self.findings]
        return d


def _writes_without_ttl(cmd: Command) -> bool:
    if cmd.name in ("set", "getset"):
        opts = {a.lower() for a in cmd.args[2:]}
        return not opts & {"ex", "px", "exat", "pxat", "keepttl"}
    return cmd.name in ("hset", "hmset", "sadd", "zadd", "lpush", "rpush", "mset", "setnx")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def check_provider(provider: str) -> str:
    """``provider`` if the settings accept it (``LOWTIDE_PROVIDER``), else a ConfigError."""
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    return provider


def _loop_finding(fam: str, loop: Loop) -> Finding:
    kind = "health_check" if _HEALTH.search(fam) else "background_loop"
    each = ""
    if loop.per_burst >= 1.5:
        each = f", {loop.per_burst:.1f} commands each"
    where = f" ({loop.connections} connections)" if loop.connections > 1 else ""
    per_day = loop.rate * loop.per_burst * _DAY
    return Finding(
        kind,
        fam,
        f"a flat {loop.rate:.2f}/s{each}{where} ({per_day:,.0f} commands/day) whatever the "
        "traffic: a loop or poller; slow it down, push instead of polling, or drop it.",
    )


def analyse(
    commands: Iterable[Command],
    seconds: float,
    *,
    provider: str = "upstash",
    source: str = "",
    namespace: str = "lt",
) -> Report:
    """Attribute a command stream (MONITOR) to families and find what is worth fixing; keys
    under ``namespace`` are lowtide's own and get no drop-in advice."""
    cmds = [c for c in commands if c.name not in ("monitor",)]
    seconds = max(seconds, 1e-6)
    by_command = Counter(c.name for c in cmds)
    fam_cmd: Counter[tuple[str, str]] = Counter()
    reads_by_family: Counter[str] = Counter()
    writes_by_family: Counter[str] = Counter()
    keys_by_family: dict[str, set[str]] = defaultdict(set)
    arrivals: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    no_ttl: dict[str, set[str]] = defaultdict(set)
    expired: set[str] = set()
    follows: Counter[tuple[str, str]] = Counter()
    last_read: dict[str, tuple[str, float]] = {}  # client -> (family, ts) of its last read
    pings: list[tuple[float, str, str]] = []
    for c in cmds:
        if c.name == "ping":
            pings.append((c.ts, c.name, c.client))
        key = c.key if c.name not in ("ping", "info", "auth", "select", "hello", "client") else None
        fam = family_of(key) if key is not None else "-"
        fam_cmd[(fam, c.name)] += 1
        if key is None:
            continue
        arrivals[fam].append((c.ts, c.name, c.client))
        if c.name in EXPIRES:
            expired.add(key)
        if c.name in READS:
            reads_by_family[fam] += 1
            keys_by_family[fam].add(key)
            prev = last_read.get(c.client)
            if prev is not None and prev[0] != fam and c.ts - prev[1] < 0.05:
                follows[(prev[0], fam)] += 1
            last_read[c.client] = (fam, c.ts)
        elif c.name in WRITES:
            writes_by_family[fam] += 1
            if _writes_without_ttl(c):
                no_ttl[fam].add(key)
    findings: list[Finding] = []
    for (a, b), n in follows.most_common():
        if n >= 10 and n >= 0.8 * reads_by_family[b] and reads_by_family[a] <= 1.5 * n:
            findings.append(
                Finding(
                    "amplification",
                    a,
                    f"{n} of {reads_by_family[b]} reads of {b} come right after a read of {a} "
                    f"on the same connection: every {b} read costs an extra command "
                    f"({n / seconds * _DAY:,.0f}/day). Count it locally or cache its verdict.",
                )
            )
    cacheable: list[str] = []
    for fam, reads in reads_by_family.most_common():
        distinct = len(keys_by_family[fam])
        if reads >= 20 and writes_by_family[fam] == 0 and distinct * 5 <= reads:
            prefix = fam.split("*", 1)[0]
            hint = ""
            if prefix and not prefix.startswith(f"{namespace}:"):
                cacheable.append(prefix)
                hint = (
                    f" Drop-in: lt.redis(cache_prefixes=({prefix!r},)) answers them from "
                    "memory with the same client code."
                )
            findings.append(
                Finding(
                    "static_reads",
                    fam,
                    f"{reads} reads of only {_plural(distinct, 'key')} and no writes in "
                    f"{seconds:.0f}s: an "
                    f"in-process cache with push invalidation would answer them with 0 commands "
                    f"({reads / seconds * _DAY:,.0f}/day).{hint}",
                )
            )
    if cacheable:
        prefixes = minimal_prefixes(cacheable)
        findings.append(
            Finding(
                "dropin",
                ", ".join(prefixes),
                f"prefixes worth caching in process: lt.redis(cache_prefixes={prefixes!r}) "
                "(see docs/dropin.md)",
            )
        )
    for fam, stream in arrivals.items():
        loop = find_loop(sorted(stream))
        if loop is not None:
            findings.append(_loop_finding(fam, loop))
    ping_loop = find_loop(sorted(pings))
    if ping_loop is not None:
        rate = ping_loop.rate * ping_loop.per_burst
        findings.append(
            Finding(
                "health_check",
                "PING",
                f"PING at a flat {rate:.2f}/s ({rate * _DAY:,.0f}/day): health checks or "
                "keepalives; free on Upstash, but each is a round trip.",
            )
        )
    for fam, keys in no_ttl.items():
        left = keys - expired
        if left:
            findings.append(
                Finding(
                    "no_ttl",
                    fam,
                    f"{_plural(len(left), 'key')} written without an expiry, kept (and stored) "
                    f"until something deletes {'it' if len(left) == 1 else 'them'}: give "
                    f"{'it' if len(left) == 1 else 'them'} a TTL.",
                )
            )
    families = [
        {
            "family": fam,
            "command": name,
            "count": n,
            "per_day": round(n / seconds * _DAY, 1),
        }
        for (fam, name), n in fam_cmd.most_common()
    ]
    return _report(source, dict(by_command), seconds, provider, families, findings)


def _report(
    source: str,
    by_command: dict[str, int],
    seconds: float,
    provider: str,
    families: list[dict[str, Any]],
    findings: list[Finding],
) -> Report:
    profile = profile_for_provider(check_provider(provider))
    total = sum(by_command.values())
    billed = profile.billed(by_command)
    warnings = []
    if seconds < MIN_SECONDS or total < MIN_COMMANDS:
        warnings.append(
            f"a short sample ({_plural(total, 'command')} in {seconds:.1f}s): per-day figures "
            "assume this rate all day; sample at least "
            f"{MIN_SECONDS:.0f}s and {MIN_COMMANDS} commands (--seconds) before trusting them"
        )
    return Report(
        source=source,
        commands=total,
        seconds=round(seconds, 3),
        per_day=round(total / seconds * _DAY, 1),
        billed_per_day=round(billed / seconds * _DAY, 1),
        usd_per_month=round(profile.usd(billed / seconds * _DAY * 30), 2),
        provider=provider,
        families=families,
        by_command=dict(sorted(by_command.items(), key=lambda kv: -kv[1])),
        findings=findings,
        priced=profile.usd_per_100k > 0,
        warnings=warnings,
    )


def report_from_commandstats(
    delta: dict[str, int], seconds: float, *, provider: str = "upstash"
) -> Report:
    """A report from INFO commandstats deltas alone (no families: where MONITOR is refused)."""
    seconds = max(seconds, 1e-6)
    families = [
        {"family": "?", "command": k, "count": v, "per_day": round(v / seconds * _DAY, 1)}
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
    ]
    return _report("commandstats", delta, seconds, provider, families, [])
