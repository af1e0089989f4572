"""OpenTelemetry with the SDK's in-memory exporter and reader, on a real server: lowtide's
attributes on opentelemetry-instrumentation-redis spans, lowtide's own spans, and the ledger
and components as metrics equal to the server's own counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from lowtide import Lowtide, RedisCommandError, tenant_scope
from lowtide.context import Attribution
from lowtide.integrations.otel import (
    AttributionSpanProcessor,
    redis_request_hook,
    register_metrics,
    trace_sends,
)
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer
from tests.integrations.serverside import ServerCounts


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def traffic(lt: Lowtide) -> None:
    """A cache miss and load, a limiter reservation, all for tenant t1."""
    profiles = lt.cache("profiles")
    search = lt.rate_limiter("search", 10, 3600)  # (no window ends mid-test)

    async def load() -> dict[str, int]:
        return {"a": 1}

    with tenant_scope("t1"):
        await profiles.get_or_load("u1", load)
        assert (await search.acquire()).allowed


def lowtide_attributes(span: ReadableSpan) -> dict[str, Any]:
    return {k: v for k, v in (span.attributes or {}).items() if k.startswith("lowtide.")}


@pytest.mark.parametrize("how", ["span_processor", "request_hook"])
async def test_redis_instrumentation_spans_carry_lowtides_attributes(
    lowtide_url: str, traced: tuple[TracerProvider, InMemorySpanExporter], how: str
) -> None:
    provider, exporter = traced
    if how == "span_processor":
        provider.add_span_processor(AttributionSpanProcessor())
        RedisInstrumentor().instrument(tracer_provider=provider)
    else:
        RedisInstrumentor().instrument(tracer_provider=provider, request_hook=redis_request_hook)
    try:
        async with Lowtide(lowtide_url) as lt:
            assert await lt.ready()
            # the cache's writes go on lowtide's writer connection, which redis-py's
            # instrumentation does not see: spans for those alone
            stop = trace_sends(lt, provider, dedicated_only=True)
            exporter.clear()
            await traffic(lt)
            stop()
            app_client = plain_client(lowtide_url)
            await app_client.get("not-lowtides")  # the app's own Redis calls: no attributes
            await app_client.aclose()
    finally:
        RedisInstrumentor().uninstrument()
    spans = exporter.get_finished_spans()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(lowtide_attributes(span))
    profile = {"lowtide.component": "cache", "lowtide.family": "lt:c:profiles:*"}
    assert {**profile, "lowtide.tenant": "t1"} in by_name["GET"]  # the cache miss
    assert {**profile, "lowtide.tenant": "t1"} in by_name["SET"]  # the load's write
    # one span for it (the writer's), not a second one
    assert [a for a in by_name["SET"] if a.get("lowtide.component") == "cache"] == [
        {**profile, "lowtide.tenant": "t1"}
    ]
    assert {} in by_name["GET"]  # the app's own GET
    limiter = [a for spans_ in by_name.values() for a in spans_ if a.get("lowtide.component")]
    assert {"lowtide.component": "limiter", "lowtide.family": "lt:r:search:*"} | {
        "lowtide.tenant": "t1"
    } in limiter


async def test_lowtides_own_spans(
    lowtide_url: str, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready()
        stop = trace_sends(lt, provider, tenant=False)
        try:
            with tracer.start_as_current_span("GET /profiles/u1") as request:
                await traffic(lt)
            with pytest.raises(RedisCommandError):
                await lt.gateway.call(Attribution("cache", "lt:c:x:*", "t1"), "LPUSH", "k")
        finally:
            stop()
        seen = len(exporter.get_finished_spans())
        await lt.gateway.call(Attribution("cache", "lt:c:x:*", "t1"), "GET", "k")
        assert len(exporter.get_finished_spans()) == seen  # stopped: no more spans
    spans = [s for s in exporter.get_finished_spans() if s.name != "GET /profiles/u1"]
    names = [s.name for s in spans]
    assert names[0] == "GET"  # the cache miss
    # the load's write (it may end after the limiter's first reads began: spans are in the
    # order they end)
    cached = [s for s in spans if (s.attributes or {}).get("lowtide.family") == "lt:c:profiles:*"]
    assert [s.name for s in cached] == ["GET", "SET"]
    assert "LPUSH" in names
    request_id = request.get_span_context().span_id
    for span in cached:
        assert span.parent is not None
        assert span.parent.span_id == request_id
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == "redis"
        assert span.attributes["lowtide.family"] == "lt:c:profiles:*"
        assert "lowtide.tenant" not in span.attributes  # tenant=False
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.end_time > span.start_time
    (failed,) = [s for s in spans if s.name == "LPUSH"]
    assert failed.status.status_code is StatusCode.ERROR


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.setdefault(metric.name, []).append((dict(p.attributes or {}), p))
    return out


async def test_metrics_equal_the_servers_counts(lowtide_fresh_server: ValkeyServer) -> None:
    counts = ServerCounts(lowtide_fresh_server)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with Lowtide(lowtide_fresh_server.url) as lt:
        search = lt.rate_limiter("search", 10, 3600)  # (no window ends mid-test)
        payments = lt.circuit_breaker("payments", min_calls=2)
        handle = register_metrics(lt, provider, limiters=[search], breakers=[payments])
        assert await lt.ready()
        await traffic(lt)
        for _ in range(12):
            await search.acquire("t2")
        for _ in range(50):  # a reading with no traffic during it (keepalive PINGs aside)
            before = counts.now()
            got = points(reader)
            if before == counts.now():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the server never stayed quiet during a reading")
        exported: dict[str, int] = {}
        for attrs, p in got["lowtide.redis.commands"]:
            exported[attrs["command"]] = exported.get(attrs["command"], 0) + p.value
        assert {k: v for k, v in exported.items() if v} == before
        decisions = {a["decision"]: p.value for a, p in got["lowtide.limiter.decisions"]}
        assert decisions == {"allowed": 11, "denied": 2}
        assert [p.value for _, p in got["lowtide.mode"] if _["mode"] == "distributed"] == [1]
        assert [p.value for _, p in got["lowtide.build_info"]] == [1]
        assert [p.value for a, p in got["lowtide.breaker.calls"]] == [0]
        tenants = {a["tenant"] for a, _ in got["lowtide.redis.commands"]}
        assert {"t1", "t2"} <= tenants
        durations = got["lowtide.redis.command.duration"]
        assert sum(p.count for _, p in durations) >= 4
        assert {a["lowtide.component"] for a, _ in durations} >= {"cache", "limiter"}
        reads = {a["lowtide.source"]: p.count for a, p in got["lowtide.cache.read.duration"]}
        assert reads["load"] == 1  # traffic(): one miss of profiles/u1, loaded once
        assert reads["l2"] >= 1
        handle.close()
        assert "lowtide.redis.commands" not in points(reader)  # closed: nothing observed
    provider.shutdown()
