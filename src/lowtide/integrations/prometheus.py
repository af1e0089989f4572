"""A Prometheus collector for the ledger, the mode, the caches and the commands saved.

Label cardinality is bounded: components, commands and key families come from code (key
families never contain ids), and tenants are exported for at most ``top_tenants`` tenants; the
rest are summed under ``tenant="other"``. Membership is stable: the heaviest tenants join while
there is room and then stay, and a member's series starts from its count at joining (what it
had before stays in ``other``), so every exported series only ever grows: no false counter
resets for ``rate()``.

Scraping costs no Redis command: everything comes from the process's own ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["LowtideCollector"]

OTHER = "other"
_Row = tuple[str, str, str, str]  # component, command, family, tenant label


class LowtideCollector(Collector):
    """Register with ``prometheus_client.REGISTRY.register(LowtideCollector(lt))``."""

    def __init__(self, hub: Lowtide, *, top_tenants: int = 20) -> None:
        self._hub = hub
        self.top_tenants = top_tenants
        #: (component, command, family, tenant) -> count when the tenant joined the export
        self._base: dict[_Row, int] = {}
        self._members: set[str] = set()

    def _admit(self, rows: dict[tuple[str, str, str, str | None], int]) -> None:
        room = self.top_tenants - len(self._members)
        if room <= 0:
            return
        per_tenant: dict[str, int] = {}
        for (_, _, _, t), n in rows.items():
            if t is not None and t not in self._members:
                per_tenant[t] = per_tenant.get(t, 0) + n
        for _, t in sorted(((n, t) for t, n in per_tenant.items()), reverse=True)[:room]:
            self._members.add(t)
            for (c, cmd, fam, tt), n in rows.items():
                if tt == t:
                    self._base[(c, cmd, fam, t)] = n

    def _command_series(self) -> dict[_Row, int]:
        rows: dict[tuple[str, str, str, str | None], int] = {}
        for r in self._hub.ledger.snapshot().rows:
            key = (r.component, r.command, r.family, r.tenant)
            rows[key] = rows.get(key, 0) + r.count
        self._admit(rows)
        out: dict[_Row, int] = {}
        for (c, cmd, fam, t), n in rows.items():
            if t is None:
                out[(c, cmd, fam, "-")] = out.get((c, cmd, fam, "-"), 0) + n
                continue
            base = self._base.get((c, cmd, fam, t), 0) if t in self._members else n
            if t in self._members:
                out[(c, cmd, fam, t)] = n - base
            other = (c, cmd, fam, OTHER)
            out[other] = out.get(other, 0) + base
        return out

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on every scrape."""
        hub = self._hub
        snap = hub.ledger.snapshot()
        inst = snap.instance
        commands = CounterMetricFamily(
            "lowtide_redis_commands",
            "Redis commands this process sent, by component, command, key family and tenant",
            labels=["instance", "component", "command", "family", "tenant"],
        )
        for (c, cmd, fam, t), n in sorted(self._command_series().items()):
            commands.add_metric([inst, c, cmd, fam, t], n)
        yield commands
        billed = CounterMetricFamily(
            "lowtide_redis_billed",
            "Billed units under the configured provider profile, by component",
            labels=["instance", "component", "provider"],
        )
        by_component: dict[str, int] = {}
        for row in snap.rows:
            by_component[row.component] = by_component.get(row.component, 0) + row.billed
        for component, n in sorted(by_component.items()):
            billed.add_metric([inst, component, snap.provider], n)
        yield billed
        saved = CounterMetricFamily(
            "lowtide_redis_commands_saved",
            "Commands a per-operation design would have sent (L1 hits, lease-covered decisions)",
            labels=["instance", "component"],
        )
        for component, n in sorted(hub.saved().items()):
            saved.add_metric([inst, component], n)
        yield saved
        per_day = GaugeMetricFamily(
            "lowtide_redis_commands_per_day",
            "Projected commands per day at the rate of the last 10 minutes",
            labels=["instance"],
        )
        per_day.add_metric([inst], snap.per_day)
        yield per_day
        usd = GaugeMetricFamily(
            "lowtide_redis_usd_per_month",
            "Projected cost per month under the provider profile",
            labels=["instance", "provider"],
        )
        usd.add_metric([inst, snap.provider], snap.usd_per_month)
        yield usd
        mode = GaugeMetricFamily(
            "lowtide_mode", "1 for the hub's current mode", labels=["instance", "mode"]
        )
        for m in ("distributed", "degraded", "suspended", "local"):
            mode.add_metric([inst, m], 1.0 if hub.mode.value == m else 0.0)
        yield mode
        entries = GaugeMetricFamily(
            "lowtide_cache_entries", "L1 entries per cache", labels=["instance", "cache"]
        )
        hits = CounterMetricFamily(
            "lowtide_cache_hits", "L1 hits per cache", labels=["instance", "cache"]
        )
        misses = CounterMetricFamily(
            "lowtide_cache_misses", "L1 misses per cache", labels=["instance", "cache"]
        )
        for info in hub.caches.info():
            label = f"{info['component']}:{info['name']}"
            entries.add_metric([inst, label], info["entries"])
            hits.add_metric([inst, label], info["hits"])
            misses.add_metric([inst, label], info["misses"])
        yield entries
        yield hits
        yield misses
