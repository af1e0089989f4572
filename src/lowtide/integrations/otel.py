"""OpenTelemetry: lowtide's attributes on Redis spans, spans of lowtide's own, and the ledger
and components as OTel metrics (``pip install 'lowtide[otel]'``).

* :class:`AttributionSpanProcessor` adds ``lowtide.component``, ``lowtide.family`` and
  ``lowtide.tenant`` to every span started while lowtide sends a command: the spans of
  ``opentelemetry-instrumentation-redis`` (``RedisInstrumentor().instrument()``), or any other
  instrumentation of redis-py. :func:`redis_request_hook` does the same as that
  instrumentation's ``request_hook``. The cache's writes under CLIENT TRACKING go on a
  connection of lowtide's own, which that instrumentation does not see:
  ``trace_sends(hub, dedicated_only=True)`` adds spans for those alone.
* :func:`trace_sends` makes a span of lowtide's own for every round trip to Redis (no redis-py
  instrumentation needed), a child of the span current at the call (the request's, say).
* :func:`register_metrics` exports what the Prometheus collector exports, as observable
  counters and gauges (``lowtide.redis.commands``, ...) and a round-trip histogram
  (``lowtide.redis.command.duration``), tenant label bounded the same way.

Family names never contain ids; tenant ids do, so ``tenant=False`` keeps them off spans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from lowtide import __version__
from lowtide.breaker import CircuitBreaker
from lowtide.cache.observe import CacheRead, observe_cache_reads
from lowtide.context import UNATTRIBUTED, Attribution, current_attribution
from lowtide.integrations.readout import Family, Reader, TenantSeries, readers
from lowtide.limiter import RateLimiter
from lowtide.redis.gateway import Sent, observe_sends

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = [
    "AttributionSpanProcessor",
    "LowtideMetrics",
    "attributes",
    "redis_request_hook",
    "register_metrics",
    "trace_sends",
]

_AREAS = ("redis", "cache", "limiter", "breaker", "invalidation")
_UNITS = {"seconds": "s", "bytes": "By"}


def attributes(attribution: Attribution, *, tenant: bool = True) -> dict[str, str]:
    """The span attributes of one lowtide command."""
    out = {"lowtide.component": attribution.component, "lowtide.family": attribution.family}
    if tenant and attribution.tenant is not None:
        out["lowtide.tenant"] = attribution.tenant
    return out


def _current() -> Attribution | None:
    att = current_attribution()
    return None if att is UNATTRIBUTED else att


class AttributionSpanProcessor(SpanProcessor):
    """Adds lowtide's attributes to spans started while lowtide sends a command (see module
    docs): ``tracer_provider.add_span_processor(AttributionSpanProcessor())``."""

    def __init__(self, *, tenant: bool = True) -> None:
        self.tenant = tenant

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Called by the SDK as each span starts, in the context that starts it."""
        att = _current()
        if att is not None and span.is_recording():
            span.set_attributes(attributes(att, tenant=self.tenant))


def redis_request_hook(span: trace.Span, instance: Any, args: Any, kwargs: Any) -> None:
    """``RedisInstrumentor().instrument(request_hook=redis_request_hook)``: lowtide's
    attributes on the instrumentation's spans of lowtide's commands."""
    att = _current()
    if att is not None and span.is_recording():
        span.set_attributes(attributes(att))


def _span_name(command: str) -> str:
    return command.replace("|", " ").upper()


def trace_sends(
    hub: Lowtide,
    tracer_provider: TracerProvider | None = None,
    *,
    tenant: bool = True,
    dedicated_only: bool = False,
) -> Callable[[], None]:
    """A CLIENT span for every round trip ``hub`` makes to Redis (a pipeline or script is
    one), named after the command (``GET``, ``PIPELINE``, ``EVALSHA``), with lowtide's
    attributes, ``db.system.name=redis`` and ``db.operation.name``; an error sets the span's
    status. Returns a function that stops it.

    ``dedicated_only``: only the round trips redis-py's instrumentation cannot see, those on
    lowtide's own writer connection (the cache's writes under CLIENT TRACKING): with
    ``RedisInstrumentor`` and :class:`AttributionSpanProcessor`, this completes the picture
    without a second span for anything."""
    tracer = trace.get_tracer("lowtide", __version__, tracer_provider=tracer_provider)
    ledger = hub.ledger

    def on_send(sent: Sent) -> None:
        if sent.ledger is not ledger or (dedicated_only and not sent.dedicated):
            return
        name = _span_name(sent.command)
        span = tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            start_time=sent.start_ns,
            attributes={
                "db.system.name": "redis",
                "db.system": "redis",
                "db.operation.name": name,
                **attributes(sent.attribution, tenant=tenant),
            },
        )
        if sent.error is not None:
            span.record_exception(sent.error)
            span.set_status(Status(StatusCode.ERROR, type(sent.error).__name__))
        span.end(end_time=sent.start_ns + int(sent.seconds * 1e9))

    return observe_sends(on_send)


def _otel_name(name: str) -> str:
    area, _, rest = name.partition("_")
    return f"lowtide.{area}.{rest}" if area in _AREAS and rest else f"lowtide.{name}"


class LowtideMetrics:
    """What :func:`register_metrics` registered; :meth:`close` stops it."""

    def __init__(
        self,
        hub: Lowtide,
        meter: Meter,
        *,
        limiters: Sequence[RateLimiter],
        breakers: Sequence[CircuitBreaker],
        top_tenants: int,
    ) -> None:
        self._closed = False
        tenants = TenantSeries(hub, top_tenants)
        for read in readers(hub, tenants, list(limiters), list(breakers)):
            for fam in read():
                self._instrument(meter, read, fam)
        duration = meter.create_histogram(
            "lowtide.redis.command.duration",
            unit="s",
            description="Redis round trips (a pipeline or script is one)",
        )
        ledger = hub.ledger

        def on_send(sent: Sent) -> None:
            if sent.ledger is ledger:
                duration.record(
                    sent.seconds,
                    {
                        "lowtide.component": sent.attribution.component,
                        "db.operation.name": _span_name(sent.command),
                    },
                )

        reads = meter.create_histogram(
            "lowtide.cache.read.duration",
            unit="s",
            description="Cache reads past process memory (l2: an L2 read; load: a loader call)",
        )

        def on_read(read: CacheRead) -> None:
            if read.ledger is ledger:
                reads.record(
                    read.seconds,
                    {
                        "lowtide.component": read.component,
                        "lowtide.cache": read.cache,
                        "lowtide.source": read.source,
                    },
                )

        unsubscribe, unobserve = observe_sends(on_send), observe_cache_reads(on_read)

        def stop() -> None:
            unsubscribe()
            unobserve()

        self._unsubscribe = stop

    def _instrument(self, meter: Meter, read: Reader, fam: Family) -> None:
        name = fam.name

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return []
            for f in read():
                if f.name == name:
                    return [
                        Observation(value, dict(zip(f.labels, labels, strict=True)))
                        for labels, value in f.samples
                    ]
            return []

        unit = _UNITS.get(fam.unit, "")
        if fam.kind == "counter":
            meter.create_observable_counter(
                _otel_name(name), [observe], unit=unit, description=fam.help
            )
        else:
            meter.create_observable_gauge(
                _otel_name(name), [observe], unit=unit, description=fam.help
            )

    def close(self) -> None:
        """Stop observing: instruments report nothing more, round trips are not recorded."""
        self._closed = True
        self._unsubscribe()


def register_metrics(
    hub: Lowtide,
    meter_provider: MeterProvider | None = None,
    *,
    limiters: Iterable[RateLimiter] = (),
    breakers: Iterable[CircuitBreaker] = (),
    top_tenants: int = 20,
) -> LowtideMetrics:
    """Export ``hub``'s metrics through OpenTelemetry (the global meter provider by default):
    the ledger as observable counters (read at each collection, no Redis command), the caches,
    limiters and breakers given, and a round-trip histogram."""
    meter = metrics.get_meter("lowtide", __version__, meter_provider=meter_provider)
    return LowtideMetrics(
        hub, meter, limiters=list(limiters), breakers=list(breakers), top_tenants=top_tenants
    )
