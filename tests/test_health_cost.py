"""Health and a Prometheus scrape at 50,000 ledger rows: right values, bounded work.

Nothing here is timed (timings are in ``python -m benchmarks.health_cost``): the bound is
asserted by its structure. Once the ledger holds 50,000 rows, its row table and its tenant
table are swapped for dicts that fail on any walk; ``lt.health()``, GET /health's body and a
steady-state scrape must still answer, with the values a full snapshot gives, and the collector
exports at most ``top_tenants`` tenant series however many tenants there are.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from prometheus_client import CollectorRegistry

from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.integrations.prometheus import LowtideCollector
from lowtide.integrations.readout import NO_TENANT, OTHER
from lowtide.integrations.starlette import health_body
from lowtide.ledger import Ledger
from lowtide.testing import ValkeyServer

ROWS = 50_000
TOP = 7


class NoWalk(dict[Any, Any]):
    """A dict that may be read by key but never walked."""

    def _walk(self, *_: object) -> NoReturn:
        raise AssertionError("walked every row")

    __iter__ = keys = values = items = copy = _walk


def forbid_walks(ledger: Ledger) -> None:
    ledger._rows = NoWalk(ledger._rows)  # type: ignore[assignment]
    ledger._tenants = NoWalk(ledger._tenants)  # type: ignore[assignment]


def fill(ledger: Ledger, rows: int) -> None:
    """``rows`` synthetic (tenant, family) rows with uneven counts."""
    entries = []
    for i in range(rows // 2):
        for fam in ("lt:c:profiles:*", "lt:t:slack:*"):
            entries += [("get", Attribution("cache", fam, f"tenant-{i:05d}"))] * (i % 13 + 1)
    if rows % 2:  # an odd number of rows (the hub's own rows depend on its connections)
        entries.append(("get", Attribution("cache", "lt:c:odd:*", "tenant-odd")))
    ledger.record(entries)


def command_series(registry: CollectorRegistry) -> dict[tuple[str, str, str, str], float]:
    out = {}
    for family in registry.collect():
        if family.name == "lowtide_redis_commands":
            for s in family.samples:
                if s.name.endswith("_total"):
                    lb = s.labels
                    out[(lb["component"], lb["command"], lb["family"], lb["tenant"])] = s.value
    return out


async def test_health_and_scrape_at_50k_rows_never_walk_the_rows(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    async with Lowtide(lowtide_fresh_server.url, instance="big") as lt:
        assert await lt.ready()
        # real traffic for 300 tenants, then synthetic rows up to the ledger's bound
        await asyncio.gather(
            *(
                lt.gateway.call(Attribution("cache", "lt:c:real:*", f"real-{i}"), "GET", f"k{i}")
                for i in range(300)
            )
        )
        fill(lt.ledger, ROWS - len(lt.ledger.snapshot().rows))
        registry = CollectorRegistry()
        collector = LowtideCollector(lt, top_tenants=TOP)
        registry.register(collector)
        command_series(registry)  # the first scrape chooses the members: it reads every tenant

        snap = lt.ledger.snapshot()  # no await from here on: nothing is counted meanwhile
        assert len(snap.rows) == ROWS
        assert len(snap.by_tenant) > ROWS // 2
        forbid_walks(lt.ledger)

        # per_day and the rest are projections over the time since the ledger started: with no
        # command counted meanwhile they only go down, so health lies between the snapshot
        # taken before it and the totals read after it
        health = lt.health()["ledger"]
        body = health_body(lt)["lowtide"]["ledger"]
        after = lt.ledger.totals()
        for h in (health, body):
            assert (h["commands"], h["billed"]) == (snap.total, snap.billed)
            assert (after.total, after.billed) == (snap.total, snap.billed)
            for field, digits in (("per_day", 1), ("billed_per_day", 1), ("usd_per_month", 4)):
                if getattr(snap, field) is None:  # under a minute of counting: no projection
                    assert h[field] is None
                    continue
                low, high = (round(getattr(x, field), digits) for x in (after, snap))
                assert low <= h[field] <= high

        series = command_series(registry)
        tenants = {t for (_, _, _, t) in series}
        assert len(tenants - {OTHER, NO_TENANT}) == TOP  # whatever the number of tenants
        assert sum(series.values()) == snap.total
        billed: dict[str, int] = {}
        for r in snap.rows:
            if r.tenant is not None:
                billed[r.tenant] = billed.get(r.tenant, 0) + r.billed
        heaviest = {t for _, t in sorted(((n, t) for t, n in billed.items()), reverse=True)[:TOP]}
        assert tenants - {OTHER, NO_TENANT} == heaviest
        assert all(series[k] == 0 for k in series if k[3] in heaviest)  # members start at 0
        for r in snap.rows:  # no tenant: the NO_TENANT series holds the exact total
            if r.tenant is None:
                assert series[(r.component, r.command, r.family, NO_TENANT)] == r.count

        # more traffic for a member and a non-member: both show, nothing is walked
        member = sorted(heaviest)[0]
        lt.ledger.record([("get", Attribution("cache", "lt:c:profiles:*", member))] * 4)
        lt.ledger.record([("get", Attribution("cache", "lt:c:profiles:*", "tenant-00000"))] * 3)
        after = command_series(registry)
        assert after[("cache", "get", "lt:c:profiles:*", member)] == 4
        other = ("cache", "get", "lt:c:profiles:*", OTHER)
        assert after[other] == series[other] + 3
        assert sum(after.values()) == lt.ledger.total
