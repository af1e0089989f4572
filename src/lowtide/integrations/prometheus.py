"""Prometheus: a collector for the ledger, the link, caches, limiters and breakers, a Redis
round-trip histogram and build info (``pip install 'lowtide[prometheus]'``).

```python
from prometheus_client import REGISTRY
from lowtide.integrations.prometheus import LowtideCollector

LowtideCollector(lt).register(REGISTRY)  # every limiter and breaker of lt included
```

Names follow the Prometheus conventions (``lowtide_`` prefix, ``_total`` counters, base units),
with no ``instance`` or pid label (the scrape target identifies the process) and a bounded
``tenant`` label (see :class:`~lowtide.integrations.readout.TenantSeries`). Projections (per
day, dollars) are left to PromQL (docs/observability.md). A scrape sends no Redis command.

**Several worker processes** (uvicorn ``--workers``, gunicorn): set
``PROMETHEUS_MULTIPROC_DIR`` before Python starts, as prometheus-client's multiprocess mode
requires. Each worker's collector then writes its values into that directory (every
``sync_interval`` seconds while :meth:`LowtideCollector.start` runs, and at
:meth:`~LowtideCollector.aclose`), and :func:`exposition` serves the sum over workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from lowtide.breaker import CircuitBreaker
from lowtide.cache.observe import CacheRead, observe_cache_reads
from lowtide.errors import ConfigError
from lowtide.integrations.readout import Family, TenantSeries, read_families
from lowtide.limiter import RateLimiter
from lowtide.redis.gateway import Sent, observe_sends

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = [
    "LATENCY_BUCKETS",
    "LowtideCollector",
    "collectors",
    "exposition",
    "multiprocess_dir",
]

log = logging.getLogger("lowtide")

#: round-trip histogram buckets (seconds): a LAN round trip is ~0.1-1 ms, a remote one 1-50 ms
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

_by_hub: weakref.WeakKeyDictionary[Any, weakref.WeakSet[LowtideCollector]] = (
    weakref.WeakKeyDictionary()
)
_open_in_multiprocess = 0


def multiprocess_dir() -> str | None:
    """The prometheus-client multiprocess directory, or None in single-process mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def collectors(hub: Lowtide) -> list[LowtideCollector]:
    """The collectors created for ``hub`` and not closed."""
    return list(_by_hub.get(hub, ()))


def _prometheus(fam: Family) -> Metric:
    name = f"lowtide_{fam.name}"
    out: Metric
    if fam.kind == "counter":
        out = CounterMetricFamily(name, fam.help, labels=fam.labels, unit=fam.unit)
    else:
        out = GaugeMetricFamily(name, fam.help, labels=fam.labels, unit=fam.unit)
    for labels, value in fam.samples:
        out.add_metric(list(labels), value)
    return out


class _Mirror:
    """Multiprocess mode: readings pushed into prometheus-client metric objects, whose values
    live in the multiprocess directory (counters by their increase since the last push)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        # a scrape thread and the event loop's sync may push at once: one at a time, or an
        # increase would be added twice
        self._lock = threading.Lock()

    def _metric(self, fam: Family) -> Counter | Gauge:
        metric = self._metrics.get(fam.name)
        if metric is None:
            name = f"lowtide_{fam.name}"
            if fam.kind == "counter":
                metric = Counter(name, fam.help, fam.labels, unit=fam.unit, registry=None)
            else:
                metric = Gauge(
                    name,
                    fam.help,
                    fam.labels,
                    unit=fam.unit,
                    registry=None,
                    multiprocess_mode=fam.merge,
                )
            self._metrics[fam.name] = metric
        return metric

    def push(self, families: Iterable[Family]) -> None:
        with self._lock:
            self._push(families)

    def _push(self, families: Iterable[Family]) -> None:
        for fam in families:
            metric = self._metric(fam)
            for labels, value in fam.samples:
                child = metric.labels(*labels) if labels else metric
                if isinstance(child, Gauge):
                    child.set(value)
                    continue
                key = (fam.name, labels)
                grew = value - self._last.get(key, 0.0)
                if grew > 0:
                    child.inc(grew)
                self._last[key] = value  # a reset (smaller value) counts again from there


class LowtideCollector(Collector):
    """lowtide's metrics for one hub (see module docs).

    Every limiter and breaker the hub made is exported (made later too); ``limiters`` and
    ``breakers`` (or :meth:`watch`) add components of other hubs;
    ``top_tenants`` bounds the tenant label. Register it with :meth:`register` (or
    ``registry.register(collector)``): the default registry and private ones both work.
    """

    def __init__(
        self,
        hub: Lowtide,
        *,
        limiters: Iterable[RateLimiter] = (),
        breakers: Iterable[CircuitBreaker] = (),
        top_tenants: int = 20,
        sync_interval: float = 1.0,
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        self._hub = hub
        self.top_tenants = top_tenants
        self.sync_interval = sync_interval
        self._tenants = TenantSeries(hub, top_tenants)
        self._limiters: list[RateLimiter] = []
        self._breakers: list[CircuitBreaker] = []
        self.watch(*limiters, *breakers)
        self._latency = Histogram(
            "lowtide_redis_command_duration_seconds",
            "Redis round trips (a pipeline or script is one), by component and command",
            ["component", "command"],
            buckets=tuple(buckets),
            registry=None,
        )
        self._reads = Histogram(
            "lowtide_cache_read_duration_seconds",
            "Cache reads past process memory: an L2 read (l2) or a loader call (load); L1 hits "
            "are counted in lowtide_cache_hits_total, not timed",
            ["component", "cache", "source"],
            buckets=tuple(buckets),
            registry=None,
        )
        self._mirror = _Mirror() if multiprocess_dir() else None
        if self._mirror is not None and collectors(hub):
            # each would add the hub's increases to the same files: counted twice
            raise ConfigError("multiprocess mode: one LowtideCollector per hub (see collectors())")
        self._registries: list[CollectorRegistry] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        ref = weakref.ref(self)
        ledger = hub.ledger

        def on_send(sent: Sent) -> None:
            me = ref()
            if me is None:  # the collector was dropped: stop observing
                unsubscribe()
            elif sent.ledger is ledger:
                me._latency.labels(sent.attribution.component, sent.command).observe(sent.seconds)

        def on_read(read: CacheRead) -> None:
            me = ref()
            if me is not None and read.ledger is ledger:
                me._reads.labels(read.component, read.cache, read.source).observe(read.seconds)

        unsubscribe = observe_sends(on_send)
        unobserve = observe_cache_reads(on_read)

        def stop_observing() -> None:
            unsubscribe()
            unobserve()

        self._unsubscribe = stop_observing
        _by_hub.setdefault(hub, weakref.WeakSet()).add(self)
        if self._mirror is not None:
            global _open_in_multiprocess
            _open_in_multiprocess += 1

    def watch(self, *components: RateLimiter | CircuitBreaker) -> LowtideCollector:
        """Export these limiters and breakers too (each once); returns the collector."""
        for c in components:
            if isinstance(c, RateLimiter) and c not in self._limiters:
                self._limiters.append(c)
            elif isinstance(c, CircuitBreaker) and c not in self._breakers:
                self._breakers.append(c)
            elif not isinstance(c, RateLimiter | CircuitBreaker):
                raise TypeError(f"watch() takes rate limiters and circuit breakers, not {c!r}")
        return self

    def register(self, registry: CollectorRegistry = REGISTRY) -> LowtideCollector:
        """``registry.register(self)`` (the default registry by default), undone by
        :meth:`aclose`; returns the collector."""
        registry.register(self)
        self._registries.append(registry)
        return self

    def families(self) -> list[Family]:
        """Every metric, read now (the histogram aside)."""
        return read_families(self._hub, self._tenants, self._limiters, self._breakers)

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus-client on every scrape. In multiprocess mode it writes this
        worker's values to the directory instead (the multiprocess collector reads them)."""
        families = self.families()
        if self._mirror is not None:
            self._mirror.push(families)
            return
        for fam in families:
            yield _prometheus(fam)
        yield from self._latency.collect()
        yield from self._reads.collect()

    def sync(self) -> None:
        """Multiprocess mode: write this worker's values now (no-op otherwise)."""
        if self._mirror is not None:
            self._mirror.push(self.families())

    def start(self) -> None:
        """Multiprocess mode: write this worker's values every ``sync_interval`` seconds until
        :meth:`aclose` (needs a running event loop; no-op in single-process mode)."""
        if self._mirror is not None and self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                self.sync()
            except Exception:  # metrics must never take the app down
                log.exception("lowtide metrics sync failed")

    async def aclose(self) -> None:
        """Stop syncing (after a last write of this worker's values), stop observing sends,
        and unregister from the registries :meth:`register` registered it in. Idempotent.

        In multiprocess mode the last collector of the process also marks it dead
        (``multiprocess.mark_process_dead``), so its live gauges stop counting."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sync()
        self._unsubscribe()
        for registry in self._registries:
            with contextlib.suppress(KeyError):
                registry.unregister(self)
        self._registries.clear()
        holders = _by_hub.get(self._hub)
        if holders is not None:
            holders.discard(self)
        if self._mirror is not None:
            global _open_in_multiprocess
            _open_in_multiprocess -= 1
            if _open_in_multiprocess == 0:
                from prometheus_client import multiprocess

                # untyped in prometheus-client: typed here, where it is called
                mark_dead: Callable[[int], None] = multiprocess.mark_process_dead
                mark_dead(os.getpid())

    async def __aenter__(self) -> LowtideCollector:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def exposition(
    hub: Lowtide | None = None,
    registry: CollectorRegistry | None = None,
    accept: str | None = None,
) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` answer (OpenMetrics when ``accept`` asks).

    Single process: ``registry`` (default ``prometheus_client.REGISTRY``). Multiprocess mode:
    every worker's values from the directory (``hub``'s collectors write this worker's first).
    """
    if multiprocess_dir():
        from prometheus_client import multiprocess

        if hub is not None:
            for collector in collectors(hub):
                collector.sync()
        registry = CollectorRegistry()
        every_worker: Callable[[CollectorRegistry], object] = multiprocess.MultiProcessCollector
        every_worker(registry)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry or REGISTRY), content_type
