"""docs/fastapi.md's complete app, run as written under uvicorn and driven over real HTTP
against a real server: tenants, lifespan state, the cache, the rate limit with its headers,
the breaker with its handlers, and /metrics checked against the server's own counts."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from lowtide import __version__
from lowtide.integrations.prometheus import collectors
from lowtide.testing import ValkeyServer
from tests.integrations.helpers import (
    by_label,
    docs_app_source,
    load_module,
    parse,
    serving,
    total,
)
from tests.integrations.serverside import ServerCounts, metrics_match_server

ACME = {"x-tenant-id": "acme"}


@pytest.fixture
async def docs_app(
    lowtide_fresh_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, ServerCounts]]:
    counts = ServerCounts(lowtide_fresh_server)
    monkeypatch.setenv("LOWTIDE_REDIS_URL", lowtide_fresh_server.url)
    app = load_module("docs_app", docs_app_source(), "docs/fastapi.md")
    async with serving(app.app) as url, httpx.AsyncClient(base_url=url) as http:
        assert await app.lt.ready(5)
        yield http, app, counts
    # the lifespan closed the collector: unregistered from the default registry
    assert not collectors(app.lt)
    assert "lowtide_build_info" not in REGISTRY._names_to_collectors


def ratelimit(response: httpx.Response) -> tuple[str, str]:
    return response.headers["ratelimit-policy"], response.headers["ratelimit"]


async def test_the_docs_app_over_http(
    docs_app: tuple[httpx.AsyncClient, Any, ServerCounts],
) -> None:
    http, app, counts = docs_app

    # tenants: required everywhere but /health and /metrics
    r = await http.get("/plans")
    assert (r.status_code, r.json()) == (400, {"error": "tenant required", "header": "x-tenant-id"})
    assert (await http.get("/health")).status_code == 200
    # lifespan state from the app's own lifespan, which ran with lowtide started
    assert (await http.get("/plans", headers=ACME)).json() == {"free": 1000, "pro": 100000}

    # the cache: one miss (GET + SET), then hits from memory
    for _ in range(3):
        r = await http.get("/profiles/u1", headers=ACME)
        assert r.json() == {"id": "u1", "name": "User u1"}

    # the rate limit: 100 per minute per tenant, IETF draft headers, then 429
    window = int(time.time() // 60)
    allowed = 0
    for _ in range(250):
        r = await http.get("/search", params={"q": "x"}, headers={"x-tenant-id": "t-search"})
        if r.status_code != 200:
            break
        allowed += 1
        policy, state = ratelimit(r)
        assert policy == '"search";q=100;w=60'
        assert state.startswith(f'"search";r={100 - allowed};t=')
        assert r.json() == {"q": "x", "remaining": 100 - allowed}
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert ratelimit(r)[1] == f'"search";r=0;t={r.headers["retry-after"]}'
    assert r.json()["detail"] == "rate limit reached"
    if int(time.time() // 60) == window:  # (a minute boundary in the loop allows a second 100)
        assert allowed == 100

    # the breaker: a 4xx is the client's (a success), 5xx are failures; at 5 calls with half
    # or more failed (min_calls=5, failure_rate=0.5) it opens for that tenant: 503
    assert (await http.post("/charges", params={"amount": -1}, headers=ACME)).status_code == 422
    for _ in range(4):
        r = await http.post("/charges", params={"amount": 5000}, headers=ACME)
        assert r.status_code == 502
    r = await http.post("/charges", params={"amount": 10}, headers=ACME)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert app.payments.state("acme") == "open"
    assert (await http.post("/charges", params={"amount": 10}, headers=ACME)).status_code == 503
    assert app.payments.state("other") == "closed"  # one tenant's breaker
    r = await http.post("/charges", params={"amount": 10}, headers={"x-tenant-id": "other"})
    assert r.json() == {"charge": "ch_10"}

    async def scrape() -> dict[Any, float]:
        r = await http.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        return parse(r.text)

    # every command the server received, as /metrics counts them
    server = await metrics_match_server(scrape, counts)
    assert {"get", "set"} <= set(server)  # set: cache writes, a limiter window's first reservation
    m = await scrape()
    names = {name for name, _ in m}
    # conventions: no instance or pid label (the hub's instance name carries the pid)
    ours = [dict(labels) for name, labels in m if name.startswith("lowtide_")]
    assert not any("instance" in labels or "pid" in labels for labels in ours)
    pid = str(os.getpid())
    assert not any(pid in value for labels in ours for value in labels.values())
    assert total(m, "lowtide_build_info", version=__version__) == 1
    assert "lowtide_redis_commands_per_day" not in names  # projections are PromQL's job
    # the limiter, the breaker, the cache, as the HTTP answers said
    decisions = by_label(
        {k: v for k, v in m.items() if ("limiter", "search") in k[1]},
        "lowtide_limiter_decisions_total",
        "decision",
    )
    assert decisions == {"allowed": allowed, "denied": 1}
    assert total(m, "lowtide_limiter_limit", limiter="search") == 100
    assert total(m, "lowtide_breaker_trips_total", breaker="payments") == 1
    assert total(m, "lowtide_breaker_failures_total", breaker="payments") == 4
    assert total(m, "lowtide_breaker_rejections_total", breaker="payments") == 2
    assert total(m, "lowtide_breaker_calls_total", breaker="payments") == 6
    assert total(m, "lowtide_breaker_open_tenants", breaker="payments") == 1
    # 3 reads: each is a hit or a miss; a miss went to Redis (the first one found nothing and
    # loaded; a read-back of the load's own write, if its push came first, found it)
    hits = total(m, "lowtide_cache_hits_total", cache="profiles")
    misses = total(m, "lowtide_cache_misses_total", cache="profiles")
    assert (hits + misses, hits >= 1) == (3, True)
    assert total(m, "lowtide_cache_loads_total", cache="profiles") == 1
    assert total(m, "lowtide_cache_l2_misses_total", cache="profiles") == 1
    assert misses == 1 + total(m, "lowtide_cache_l2_hits_total", cache="profiles")
    assert total(m, "lowtide_mode", mode="distributed") == 1
    assert total(m, "lowtide_invalidation_listener_up") == 1
    # round trips timed by component
    timed = by_label(m, "lowtide_redis_command_duration_seconds_count", "component")
    assert timed["cache"] >= 3  # plans GET + SET, profiles GET + SET
    assert timed["limiter"] >= 1
    assert set(timed) <= set(by_label(m, "lowtide_redis_commands_total", "component"))
