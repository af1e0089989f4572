"""OpenTelemetry in a FastAPI app under uvicorn, driven over real HTTP against a real server:
the request's server span (opentelemetry-instrumentation-fastapi) is the parent of lowtide's
Redis spans, which carry lowtide's attributes (component, family, the request's tenant), with
opentelemetry-instrumentation-redis plus ``AttributionSpanProcessor`` or with lowtide's own
``trace_sends``. The SDK's in-memory exporter runs in the server's process (uvicorn in the
test's event loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lowtide import Cache, Lowtide
from lowtide.integrations import fastapi as lt_fastapi
from lowtide.integrations.otel import AttributionSpanProcessor, trace_sends
from tests.integrations.helpers import serving

PROFILES = {"lowtide.component": "cache", "lowtide.family": "lt:c:profiles:*"}


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def app_of(lt: Lowtide) -> tuple[FastAPI, Cache]:
    profiles = lt.cache("profiles", ttl=300)
    app = FastAPI(lifespan=lt_fastapi.lifespan(lt))
    app.add_middleware(lt_fastapi.TenantMiddleware, header="x-tenant-id", require=True)

    async def load(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    @app.get("/profiles/{user_id}")
    async def profile(user_id: str) -> dict[str, str]:
        return await profiles.get_or_load(user_id, lambda: load(user_id))

    return app, profiles


def tracing(how: str, lt: Lowtide, provider: TracerProvider) -> Callable[[], None]:
    """Trace lowtide's Redis commands one way; returns what stops it."""
    if how == "redis_instrumentation":
        provider.add_span_processor(AttributionSpanProcessor())
        RedisInstrumentor().instrument(tracer_provider=provider)
        # the cache's writes on lowtide's writer connection, which that instrumentation misses
        stop_writer = trace_sends(lt, provider, dedicated_only=True)

        def stop() -> None:
            stop_writer()
            RedisInstrumentor().uninstrument()

        return stop
    return trace_sends(lt, provider)


def lowtide_attributes(span: ReadableSpan) -> dict[str, Any]:
    return {k: v for k, v in (span.attributes or {}).items() if k.startswith("lowtide.")}


@pytest.mark.parametrize("how", ["redis_instrumentation", "trace_sends"])
async def test_redis_spans_are_children_of_the_request_span(
    lowtide_url: str, traced: tuple[TracerProvider, InMemorySpanExporter], how: str
) -> None:
    provider, exporter = traced
    lt = Lowtide(lowtide_url)
    app, profiles = app_of(lt)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    stop = tracing(how, lt, provider)
    try:
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
            assert await lt.ready(10)
            exporter.clear()

            async def read() -> None:
                r = await http.get("/profiles/u1", headers={"x-tenant-id": "acme"})
                assert r.json() == {"id": "u1"}

            await read()  # a miss: GET, the loader, SET
            for _ in range(5):  # until memory holds it (a read-back of the load's own write
                if profiles.peek("u1", tenant="acme") is not None:  # may come first where the
                    break  # writer connection is off, see docs/cache.md)
                await read()
            else:
                raise AssertionError("the profile never stayed in memory")
            await read()  # from memory: no command
    finally:
        stop()
        FastAPIInstrumentor.uninstrument_app(app)
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.kind is SpanKind.SERVER]
    assert 2 <= len(requests) <= 7  # a miss, [read-backs], a hit
    for request in requests:
        assert request.name == "GET /profiles/{user_id}"
        assert request.attributes is not None
        assert request.attributes["http.route"] == "/profiles/{user_id}"

    def children(of: ReadableSpan) -> list[ReadableSpan]:
        ctx = of.get_span_context()
        return [
            s
            for s in spans
            if s.kind is SpanKind.CLIENT
            and s.parent is not None
            and s.parent.span_id == ctx.span_id
            and s.context is not None
            and s.context.trace_id == ctx.trace_id
        ]

    first, last = children(requests[0]), children(requests[-1])
    assert [s.name for s in first][:2] == ["GET", "SET"]  # the miss's L2 read, the load's write
    assert last == []  # answered from memory: no command, no Redis span
    redis = [s for r in requests for s in children(r)]
    for span in redis:
        # the request's tenant (TenantMiddleware), the cache's component and key family
        assert lowtide_attributes(span) == {**PROFILES, "lowtide.tenant": "acme"}
        assert span.attributes is not None
        assert span.attributes.get("db.system") == "redis"
    # and every span lowtide attributed to this cache is a request's child
    ours = [
        s
        for s in spans
        if lowtide_attributes(s).get("lowtide.family") == PROFILES["lowtide.family"]
    ]
    assert sorted(id(s) for s in ours) == sorted(id(s) for s in redis)
