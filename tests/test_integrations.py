"""Starlette/FastAPI integration over real HTTP (uvicorn) with a real server, and the collector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lowtide import Lowtide, Mode
from lowtide.integrations.starlette import TenantMiddleware, lifespan, routes
from lowtide.testing import ValkeyServer, free_port
from tests.helpers import eventually


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
        assert 'lowtide_redis_commands_saved_total{component="cache",instance="web-1"}' in (metrics)
        assert 'lowtide_mode{instance="web-1",mode="distributed"} 1.0' in metrics
        assert "s3cret-pw" not in metrics

        lt.suspend()
        body = (await http.get("/health")).json()
        assert body["status"] == "ok"  # the app keeps working on local state
        assert body["services"]["redis"] == "suspended"
        r = await http.get("/profile/a", headers={"X-Tenant-ID": "t1"})
        assert r.status_code == 200
        lt.resume()
        assert await lt.wait_for(Mode.DISTRIBUTED, 5)
