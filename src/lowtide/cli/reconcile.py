"""What ``lowtide selftest`` runs: a mixed workload through a hub; the ledger against the server.

The ledger's per-command counts are compared with the server's own ``INFO commandstats`` delta.
Both INFO readings go through the hub, so the comparison needs no second connection and works
on any server the hub can reach (password, TLS, db number). Exact agreement is expected when
the hub is the server's only client; with other clients the differences are theirs.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from lowtide.context import Attribution
from lowtide.errors import RedisCommandError
from lowtide.hub import Lowtide
from lowtide.keys import build_key, family
from lowtide.ledger import LedgerSnapshot
from lowtide.modes import Mode
from lowtide.redis import Script

__all__ = ["SelftestResult", "run_selftest"]

_SCRIPT = Script.from_package("selftest_counter")


@dataclass
class SelftestResult:
    """What the self-test sent and what the server counted."""

    url: str | None
    seconds: float
    ledger: dict[str, int]
    server: dict[str, int]
    snapshot: LedgerSnapshot
    upstash: LedgerSnapshot
    mismatches: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every command count agrees."""
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {
            "url": self.url,
            "seconds": round(self.seconds, 3),
            "reconciled": self.ok,
            "ledger": self.ledger,
            "server": self.server,
            "mismatches": {k: {"ledger": a, "server": b} for k, (a, b) in self.mismatches.items()},
            "billed_upstash": self.upstash.billed,
            "snapshot": self.snapshot.to_dict(),
        }


async def run_selftest(url: str, *, tenants: int = 5, operations: int = 200) -> SelftestResult:
    """Run the workload against ``url`` and compare counts (see module docs)."""
    admin = Attribution("selftest", "-", None)
    t0 = time.perf_counter()
    # no listener (fleet switch off): the check is about this workload, with nothing else running
    async with Lowtide(
        url, namespace="lowtide-selftest", instance="selftest", fleet_switch=False
    ) as lt:
        if lt.mode is not Mode.DISTRIBUTED:
            raise ConnectionError(f"cannot reach {lt.settings.redacted_url}: {lt.health()}")
        gw = lt.gateway
        ns = lt.settings.namespace
        ledger_before = dict(lt.ledger.snapshot().by_command)
        before = await gw.commandstats(admin)
        fam = family(ns, "test", "profiles")
        for i in range(operations):
            tenant = f"tenant-{i % tenants}"
            att = Attribution("selftest", fam, tenant)
            key = build_key(ns, "test", "profiles", tenant, f"user:{i % 17}")
            if i % 5 == 0:
                await gw.call(att, "SET", key, f"v{i}", "EX", 60)
            else:
                await gw.call(att, "GET", key)
        batch = Attribution("selftest", fam, "tenant-0")
        keys = [build_key(ns, "test", "profiles", "tenant-0", f"user:{j}") for j in range(5)]
        await gw.pipeline(batch, [("GET", k) for k in keys])
        counter = build_key(ns, "test", "counter", "tenant-0", "n", hashtag=True)
        await gw.pipeline(batch, [("INCR", counter), ("EXPIRE", counter, 60)], transaction=True)
        for _ in range(3):
            await gw.run_script(batch, _SCRIPT, [counter + ":s"], [1])
        with contextlib.suppress(RedisCommandError):  # WRONGTYPE when keys[0] holds a string
            await gw.call(batch, "LPUSH", keys[0], "x")
        await gw.call(admin, "DEL", *keys, counter, counter + ":s")
        after = await gw.commandstats(admin)
        snap = lt.ledger.snapshot()
        upstash = lt.ledger.snapshot("upstash")
    # the ledger from just before the first INFO; the server counted that INFO after producing
    # its reply (so it is in `after`), and the second INFO not yet
    ledger = {k: v - ledger_before.get(k, 0) for k, v in snap.by_command.items()}
    ledger["info"] = ledger.get("info", 0) - 1
    ledger = {k: v for k, v in ledger.items() if v}
    server = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    mismatches = {
        k: (ledger.get(k, 0), server.get(k, 0))
        for k in sorted(set(ledger) | set(server))
        if ledger.get(k, 0) != server.get(k, 0)
    }
    return SelftestResult(
        url=lt.settings.redacted_url,
        seconds=time.perf_counter() - t0,
        ledger=ledger,
        server=server,
        snapshot=snap,
        upstash=upstash,
        mismatches=mismatches,
    )
