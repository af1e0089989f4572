"""The drop-in client's reads (``lt.redis(cache_prefixes=...)``) in /metrics, scraped over real
HTTP, and in OpenTelemetry metrics, on a real server: hits and misses counted exactly, as the
tiered caches' are (``cache="redis"``, the client's component)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lowtide import Lowtide
from lowtide.integrations.otel import register_metrics
from lowtide.integrations.starlette import lifespan, routes
from lowtide.testing import ValkeyServer
from tests.dropin.helpers import plain
from tests.integrations.helpers import parse, serving, total


@pytest.fixture
async def seeded(lowtide_fresh_server: ValkeyServer) -> str:
    p = plain(lowtide_fresh_server.url)
    await p.set("profile:1", "ada")
    await p.set("session:1", "s1")
    await p.aclose()
    return lowtide_fresh_server.url


def app_of(lt: Lowtide, registry: CollectorRegistry) -> Starlette:
    """An app reading through three drop-in clients: two of component ``app`` (one series,
    summed) and one of component ``sessions``."""
    profiles = lt.redis(["profile:"], decode_responses=True)
    more = lt.redis(["other:"], decode_responses=True)
    sessions = lt.redis(["session:"], component="sessions", decode_responses=True)

    async def profile(request: Request) -> JSONResponse:
        return JSONResponse({"name": await profiles.get(f"profile:{request.path_params['id']}")})

    async def session(request: Request) -> JSONResponse:
        sid = request.path_params["id"]
        return JSONResponse({"session": await sessions.get(f"session:{sid}")})

    async def other(request: Request) -> JSONResponse:
        # not under its prefixes: sent to Redis every time, neither a hit nor a miss
        return JSONResponse({"value": await more.get("uncached")})

    return Starlette(
        lifespan=lifespan(lt),
        routes=[
            Route("/profiles/{id}", profile),
            Route("/sessions/{id}", session),
            Route("/other", other),
            *routes(lt, registry=registry),
        ],
    )


async def drive(http: httpx.AsyncClient) -> None:
    """Profile 1: 1 miss then 4 hits; profile 2 (absent): 1 miss then 2 hits; session 1: 1 miss
    then 1 hit; /other 3 times (not cacheable)."""
    for _ in range(5):
        assert (await http.get("/profiles/1")).json() == {"name": "ada"}
    for _ in range(3):
        assert (await http.get("/profiles/2")).json() == {"name": None}
    for _ in range(2):
        assert (await http.get("/sessions/1")).json() == {"session": "s1"}
    for _ in range(3):
        assert (await http.get("/other")).json() == {"value": None}


@pytest.fixture
async def running(seeded: str) -> AsyncIterator[tuple[httpx.AsyncClient, Lowtide]]:
    lt = Lowtide(seeded)
    app = app_of(lt, CollectorRegistry())
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert await lt.ready(10)  # listener healthy: a reply read may be kept
        yield http, lt


async def test_dropin_reads_in_a_prometheus_scrape(
    running: tuple[httpx.AsyncClient, Lowtide],
) -> None:
    http, lt = running
    m = parse((await http.get("/metrics")).text)
    assert total(m, "lowtide_cache_hits_total", cache="redis") == 0
    await drive(http)
    text = (await http.get("/metrics")).text
    m = parse(text)
    app = {"component": "app", "cache": "redis"}
    assert total(m, "lowtide_cache_hits_total", **app) == 6
    assert total(m, "lowtide_cache_misses_total", **app) == 2
    assert total(m, "lowtide_cache_entries", **app) == 2  # profile:1 and profile:2 held
    assert total(m, "lowtide_cache_size_bytes", **app) > 0
    sessions = {"component": "sessions", "cache": "redis"}
    assert total(m, "lowtide_cache_hits_total", **sessions) == 1
    assert total(m, "lowtide_cache_misses_total", **sessions) == 1
    # one series per (component, cache): the two clients of component app are summed
    series = [
        (s.labels["component"], s.labels["cache"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "lowtide_cache_hits_total"
    ]
    assert len(series) == len(set(series))
    assert sorted(s for s in series if s[1] == "redis") == [("app", "redis"), ("sessions", "redis")]
    # what the server was sent for them: one GET per miss, one per uncached read
    gets = total(m, "lowtide_redis_commands_total", command="get", component="app")
    assert gets == 2 + 3
    assert total(m, "lowtide_redis_commands_saved_total", component="app") == 6
    # health reports the same numbers
    caches = lt.health()["caches"]
    assert sum(c["hits"] for c in caches if c["name"] == "redis") == 7


async def test_dropin_reads_in_opentelemetry_metrics(
    running: tuple[httpx.AsyncClient, Lowtide],
) -> None:
    http, lt = running
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    handle = register_metrics(lt, provider)
    try:
        await drive(http)
        data = reader.get_metrics_data()
        assert data is not None
        got: dict[str, dict[tuple[str, str], Any]] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        attrs = dict(p.attributes or {})
                        if attrs.get("cache") == "redis":
                            key = (str(attrs["component"]), "redis")
                            got.setdefault(metric.name, {})[key] = p.value
        assert got["lowtide.cache.hits"] == {("app", "redis"): 6, ("sessions", "redis"): 1}
        assert got["lowtide.cache.misses"] == {("app", "redis"): 2, ("sessions", "redis"): 1}
        assert got["lowtide.cache.entries"] == {("app", "redis"): 2, ("sessions", "redis"): 1}
    finally:
        handle.close()
        provider.shutdown()
