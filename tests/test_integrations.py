"""Starlette/FastAPI integration over real HTTP (uvicorn) with a real server, and the collector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lowtide import Lowtide, LowtideError, Mode, current_tenant
from lowtide.integrations.fastapi import add_exception_handlers
from lowtide.integrations.starlette import TenantMiddleware, lifespan, routes
from lowtide.testing import ValkeyServer, free_port, ledger_commands
from tests.helpers import eventually
from tests.integrations.helpers import serving


@pytest.fixture
async def app_url() -> AsyncIterator[tuple[str, Lowtide]]:
    with ValkeyServer(password="s3cret-pw") as server:
        lt = Lowtide(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0", instance="web-1")
        profiles = lt.cache("profiles")
        loads = {"n": 0}

        async def profile(request: Request) -> JSONResponse:
            key = request.path_params["key"]

            async def load() -> dict[str, str]:
                loads["n"] += 1
                return {"key": key}

            value = await profiles.get_or_load(key, load)  # tenant from the middleware
            return JSONResponse({"value": value, "loads": loads["n"]})

        app = Starlette(
            routes=[Route("/profile/{key}", profile), *routes(lt)], lifespan=lifespan(lt)
        )
        app.add_middleware(TenantMiddleware, header="X-Tenant-ID")
        port = free_port()
        server_ = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        task = asyncio.create_task(server_.serve())
        await eventually(lambda: server_.started)
        try:
            assert await lt.invalidations.wait_healthy(5)
            yield f"http://127.0.0.1:{port}", lt
        finally:
            server_.should_exit = True
            await task


async def test_health_metrics_and_tenant_scope_over_http(app_url: tuple[str, Lowtide]) -> None:
    url, lt = app_url
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t1"})
        assert r.json() == {"value": {"key": "a"}, "loads": 1}
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t1"})
        assert r.json()["loads"] == 1  # served from the cache (L2, then L1)
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t1"})
        assert r.json()["loads"] == 1
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t2"})
        assert r.json()["loads"] == 2  # another tenant: its own value
        assert (await http.get("/profile/a")).status_code == 500  # no tenant: TenantRequired
        too_long = await http.get("/profile/a", headers={"X-Tenant-ID": "t" * 300})
        assert too_long.status_code == 400

        health = await http.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok"
        assert body["services"] == {"redis": "ok"}
        assert body["lowtide"]["invalidation"]["mode"] == "tracking"
        assert "s3cret-pw" not in health.text

        metrics = (await http.get("/metrics")).text
        assert "lowtide_redis_commands_total{" in metrics
        assert 'tenant="t1"' in metrics
        assert 'lowtide_redis_commands_saved_total{component="cache"}' in metrics
        assert 'lowtide_mode{mode="distributed"} 1.0' in metrics
        assert "web-1" not in metrics  # the hub's instance name is no label
        assert "s3cret-pw" not in metrics

        lt.suspend()
        body = (await http.get("/health")).json()
        assert body["status"] == "ok"  # the app keeps working on local state
        assert body["services"]["redis"] == "suspended"
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t1"})
        assert r.status_code == 200
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5)


async def test_lifespan_composes_with_the_apps_own(lowtide_url: str) -> None:
    """The hub starts before the app's lifespan and closes after it; the app's lifespan state
    reaches requests, with the hub added."""
    lt = Lowtide(lowtide_url)
    seen: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        seen.append(f"start:{lt.mode.value}")
        await lt.cache("boot", per_tenant=False).set("k", 1)  # lowtide usable at start-up
        yield {"answer": 42}
        await lt.cache("boot", per_tenant=False).set("k", 2)  # and at shutdown
        seen.append(f"stop:{lt.mode.value}")

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"answer": request.state.answer, "hub": request.state.lowtide is lt})

    app = Starlette(routes=[Route("/state", state)], lifespan=lifespan(lt, app_lifespan))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/state")).json() == {"answer": 42, "hub": True}
        assert app.state.lowtide is lt
    assert seen == ["start:distributed", "stop:distributed"]
    assert ledger_commands(lt, family="lt:c:boot:*") == {"set": 2}
    assert lt.mode is Mode.DISTRIBUTED  # (the mode of a closed hub is its last)
    with pytest.raises(LowtideError):
        await lt.start()  # closed by the lifespan


async def test_tenant_middleware_can_require_a_tenant() -> None:
    async def who(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current_tenant()})

    async def from_host(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-org", b"").decode() or None

    app = Starlette(routes=[Route("/who", who), Route("/health", who), Route("/metrics/x", who)])
    app.add_middleware(TenantMiddleware, require=True)
    other = Starlette(routes=[Route("/who", who)])
    other.add_middleware(TenantMiddleware, tenant_of=from_host, require=True, exempt=())
    async with serving(app) as url, serving(other) as url2, httpx.AsyncClient() as http:
        r = await http.get(f"{url}/who")
        assert (r.status_code, r.json()) == (
            400,
            {"error": "tenant required", "header": "x-tenant-id"},
        )
        assert (await http.get(f"{url}/who", headers={"x-tenant-id": ""})).status_code == 400
        r = await http.get(f"{url}/who", headers={"x-tenant-id": "t1"})
        assert r.json() == {"tenant": "t1"}
        assert (await http.get(f"{url}/health")).json() == {"tenant": None}  # exempt
        assert (await http.get(f"{url}/metrics/x")).json() == {"tenant": None}  # under /metrics
        assert (await http.get(f"{url2}/who")).status_code == 400
        r = await http.get(f"{url2}/who", headers={"x-org": "acme"})
        assert r.json() == {"tenant": "acme"}  # from an async tenant_of


async def test_the_exception_handlers_on_a_starlette_app(lowtide_url: str) -> None:
    """``add_exception_handlers`` on plain Starlette: ``limiter.hold()`` in the app's own code
    gets 429 with Retry-After (no RateLimit headers: no policy known), TenantRequired 400."""
    lt = Lowtide(lowtide_url)
    once = lt.rate_limiter("once", 1, 3600)
    profiles = lt.cache("profiles")

    async def hold(request: Request) -> JSONResponse:
        async with once.hold("t1"):
            return JSONResponse({"ok": True})

    async def no_tenant(request: Request) -> JSONResponse:
        return JSONResponse({"value": await profiles.get("k")})  # per tenant, none given

    app = Starlette(
        routes=[Route("/hold", hold), Route("/no-tenant", no_tenant)], lifespan=lifespan(lt)
    )
    add_exception_handlers(app)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/hold")).json() == {"ok": True}
        r = await http.get("/hold")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 3600
        assert "ratelimit" not in r.headers
        r = await http.get("/no-tenant")
        assert r.status_code == 400
        assert "per tenant" in r.json()["detail"]
