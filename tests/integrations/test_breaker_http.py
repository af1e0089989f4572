"""The breaker's ``failure_when`` with real ``httpx.HTTPStatusError`` from a real HTTP
dependency, inside a FastAPI app under uvicorn driven over HTTP, against a real server: an
upstream 404 is the caller's mistake (the breaker stays closed), a 502 is the dependency's (it
opens, and the upstream is no longer called); /metrics shows trips, rejections, the half-open
tenant, the probe and the forced tenants as the HTTP answers and the breaker's state say."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from lowtide import CircuitBreaker, Lowtide
from lowtide.integrations import fastapi as lt_fastapi
from tests.helpers import eventually
from tests.integrations.helpers import Samples, parse, serving, total

OPEN_FOR = 1.0  # seconds: the test waits for it once


def server_error(exc: BaseException) -> bool:
    """docs/breaker.md's predicate: a 5xx is the dependency's fault, a 4xx ours."""
    return not isinstance(exc, httpx.HTTPStatusError) or exc.response.status_code >= 500


def upstream_app(calls: Counter[int]) -> Starlette:
    """The dependency: ``GET /status/{code}`` answers ``code`` (and counts it)."""

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        calls[code] += 1
        return Response(f"upstream {code}", status_code=code)

    return Starlette(routes=[Route("/status/{code}", status)])


def app_of(lt: Lowtide, crm: CircuitBreaker, upstream: httpx.AsyncClient) -> FastAPI:
    """The app under test: ``GET /crm/{code}`` calls the upstream under the breaker, for the
    request's tenant, and relays a 4xx, answers 502 for a 5xx (503 when the breaker is open)."""
    app = FastAPI(lifespan=lt_fastapi.lifespan(lt))
    lt_fastapi.add_exception_handlers(app)
    app.add_middleware(lt_fastapi.TenantMiddleware, header="x-tenant-id", require=True)
    app.router.routes.extend(lt_fastapi.routes(lt, registry=CollectorRegistry()))

    @app.exception_handler(httpx.HTTPStatusError)
    async def upstream_error(request: Request, exc: httpx.HTTPStatusError) -> JSONResponse:
        code = exc.response.status_code
        return JSONResponse({"upstream": code}, status_code=code if code < 500 else 502)

    @app.get("/crm/{code}")
    async def call_crm(code: int) -> dict[str, Any]:
        async with crm.guard():  # the tenant from TenantMiddleware
            r = await upstream.get(f"/status/{code}")
            r.raise_for_status()  # a real httpx.HTTPStatusError for 4xx and 5xx
        return {"upstream": r.status_code}

    return app


@dataclass
class Running:
    http: httpx.AsyncClient
    crm: CircuitBreaker
    upstream_calls: Counter[int]

    async def call(self, tenant: str, code: int) -> httpx.Response:
        return await self.http.get(f"/crm/{code}", headers={"x-tenant-id": tenant})

    async def scrape(self) -> Samples:
        return parse((await self.http.get("/metrics")).text)


@pytest.fixture
async def running(lowtide_url: str) -> AsyncIterator[Running]:
    calls: Counter[int] = Counter()
    lt = Lowtide(lowtide_url)
    crm = lt.circuit_breaker(
        "crm", min_calls=5, failure_rate=0.5, open_for=OPEN_FOR, failure_when=server_error
    )
    async with (
        serving(upstream_app(calls)) as upstream_url,
        httpx.AsyncClient(base_url=upstream_url) as upstream,
        serving(app_of(lt, crm, upstream)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert await lt.ready(10)
        yield Running(http, crm, calls)


def breaker_series(m: Samples) -> dict[str, float]:
    names = ("calls", "failures", "trips", "rejections", "probes")
    out = {n: total(m, f"lowtide_breaker_{n}_total", breaker="crm") for n in names}
    for state in ("open", "half_open", "forced"):
        out[state] = total(m, f"lowtide_breaker_{state}_tenants", breaker="crm")
    return out


async def test_upstream_404s_leave_it_closed_502s_open_it(running: Running) -> None:
    run = running
    # 20 upstream 404s: relayed, and not failures
    for _ in range(20):
        r = await run.call("acme", 404)
        assert (r.status_code, r.json()) == (404, {"upstream": 404})
    assert run.crm.state("acme") == "closed"
    assert run.crm.stats["failures"] == 0
    # 3 upstream 502s among 23 calls: failures, under the rate
    for _ in range(3):
        assert (await run.call("acme", 502)).status_code == 502
    assert run.crm.state("acme") == "closed"
    # another tenant whose 5 calls all get a 502: it opens at min_calls
    for _ in range(5):
        assert (await run.call("globex", 502)).status_code == 502
    assert run.crm.state("globex") == "open"
    assert run.upstream_calls == {404: 20, 502: 8}
    r = await run.call("globex", 200)  # refused: the upstream is not called
    assert r.status_code == 503
    assert 1 <= int(r.headers["retry-after"]) <= OPEN_FOR + 1
    assert run.upstream_calls[200] == 0
    assert (await run.call("acme", 200)).json() == {"upstream": 200}  # acme is served
    assert breaker_series(await run.scrape()) == {
        "calls": 29,
        "failures": 8,
        "trips": 1,
        "rejections": 1,
        "probes": 0,
        "open": 1,
        "half_open": 0,
        "forced": 0,
    }

    # the open period ends: globex is half-open, and its next call probes the upstream
    await eventually(lambda: run.crm.state("globex") == "half_open", within=OPEN_FOR + 5)
    m = breaker_series(await run.scrape())
    assert (m["open"], m["half_open"], m["probes"]) == (1, 1, 0)
    assert (await run.call("globex", 200)).json() == {"upstream": 200}
    assert run.crm.state("globex") == "closed"
    m = breaker_series(await run.scrape())
    assert (m["open"], m["half_open"], m["probes"], m["calls"]) == (0, 0, 1, 30)

    # forced states: open for one tenant (refused without calling), closed for another
    assert await run.crm.open("initech")
    assert await run.crm.close("acme", seconds=600)
    assert (await run.call("initech", 200)).status_code == 503
    assert run.upstream_calls[200] == 2
    m = breaker_series(await run.scrape())
    assert (m["forced"], m["open"], m["half_open"], m["rejections"]) == (2, 1, 0, 2)
    for _ in range(10):  # forced closed: 502s run and never open it
        assert (await run.call("acme", 502)).status_code == 502
    assert run.crm.state("acme") == "closed"
    assert await run.crm.automatic("initech")
    assert await run.crm.automatic("acme")
    m = breaker_series(await run.scrape())
    assert (m["forced"], m["open"], m["trips"], m["calls"]) == (0, 0, 1, 40)
