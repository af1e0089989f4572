"""A Prometheus collector for the ledger, the mode, the caches and the commands saved.

Label cardinality is bounded: components, commands and key families come from code (key
families never contain ids), and tenants are exported for at most ``top_tenants`` tenants (the
heaviest by billed units under the hub's provider profile); the rest are summed under
``tenant="other"`` and commands sent for no tenant under ``tenant="-"``. Membership is stable:
the heaviest tenants join while there is room and then stay, and a member's series starts from
its count at joining (what it had before stays in ``other``), so every exported series only ever
grows: no false counter resets for ``rate()``.

The cost of a scrape is bounded whatever the number of tenants: it reads the ledger's running
totals per (component, command, family) and the rows of the ``top_tenants`` members, never every
row (:meth:`~lowtide.ledger.Ledger.groups`, :meth:`~lowtide.ledger.Ledger.tenant_rows`); only
choosing new members while there is room looks at every tenant, through a per-tenant total the
ledger keeps (one ``heapq.nlargest``, no sort).

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
NO_TENANT = "-"
_Row = tuple[str, str, str, str]  # component, command, family, tenant label


class LowtideCollector(Collector):
    """Register with ``prometheus_client.REGISTRY.register(LowtideCollector(lt))``.

    ``top_tenants`` (default 20) bounds the tenant label: at most that many tenant series per
    (component, command, family), plus ``other`` and ``-``.
    """

    def __init__(self, hub: Lowtide, *, top_tenants: int = 20) -> None:
        self._hub = hub
        self.top_tenants = top_tenants
        #: (component, command, family, tenant) -> count when the tenant joined the export
        self._base: dict[_Row, int] = {}
        self._members: set[str] = set()
        #: what each series last exported (it never goes down, see _command_series)
        self._last: dict[_Row, int] = {}
        self._generation = hub.ledger.generation

    def _admit(self) -> None:
        room = self.top_tenants - len(self._members)
        if room <= 0:
            return
        ledger = self._hub.ledger
        for tenant, _ in ledger.top_tenants(room, exclude=self._members):
            self._members.add(tenant)
            for (c, cmd, fam), n in ledger.tenant_rows(tenant).items():
                self._base[(c, cmd, fam, tenant)] = n

    def _command_series(self) -> dict[_Row, int]:
        ledger = self._hub.ledger
        if ledger.generation != self._generation:  # the ledger was reset: start over
            self._generation = ledger.generation
            self._base.clear()
            self._members.clear()
            self._last.clear()
        self._admit()
        out: dict[_Row, int] = {}
        for (c, cmd, fam, has_tenant), n in ledger.groups().items():
            out[(c, cmd, fam, OTHER if has_tenant else NO_TENANT)] = n
        for t in self._members:
            for (c, cmd, fam), n in ledger.tenant_rows(t).items():
                since = n - self._base.get((c, cmd, fam, t), 0)
                out[(c, cmd, fam, t)] = since
                other = (c, cmd, fam, OTHER)
                out[other] = out.get(other, 0) - since
        # the event loop may count commands while prometheus_client's thread scrapes: a series
        # read a moment apart from its group total can lag by a few commands, never go down
        last = self._last
        for key, n in out.items():
            prev = last.get(key, 0)
            if n < prev:
                out[key] = prev
            else:
                last[key] = n
        return out

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on every scrape."""
        hub = self._hub
        ledger = hub.ledger
        totals = ledger.totals()
        inst = totals.instance
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
        units = ledger.profile.units
        for (component, cmd, _, _), n in ledger.groups().items():
            by_component[component] = by_component.get(component, 0) + units(cmd) * n
        for component, n in sorted(by_component.items()):
            billed.add_metric([inst, component, totals.provider], n)
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
        per_day.add_metric([inst], totals.per_day)
        yield per_day
        usd = GaugeMetricFamily(
            "lowtide_redis_usd_per_month",
            "Projected cost per month under the provider profile",
            labels=["instance", "provider"],
        )
        usd.add_metric([inst, totals.provider], totals.usd_per_month)
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
