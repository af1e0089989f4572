"""Starlette / FastAPI integration: lifespan, ``/health``, ``/metrics`` and a tenant middleware.

```python
from fastapi import FastAPI
from lowtide import Lowtide
from lowtide.integrations.starlette import TenantMiddleware, lifespan, routes

lt = Lowtide.from_env()
app = FastAPI(lifespan=lifespan(lt))
app.add_middleware(TenantMiddleware, header="x-tenant-id")
app.router.routes.extend(routes(lt))       # GET /health, GET /metrics
```

``/health`` answers in the shape the incident team's app used,
``{"status": "ok", "services": {"redis": "ok"}}``, plus lowtide's detail under ``"lowtide"``
(no secrets). The app keeps working when Redis is away, so the endpoint answers 200 unless
``fail_when_degraded=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lowtide.context import tenant_scope
from lowtide.keys import MAX_TENANT_LENGTH

if TYPE_CHECKING:
    from lowtide.hub import Lowtide

__all__ = ["TenantMiddleware", "health_route", "lifespan", "metrics_route", "routes"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TenantOf = Callable[[Scope], "str | Awaitable[str | None] | None"]

_REDIS_STATE = {
    "distributed": "ok",
    "degraded": "unreachable",
    "suspended": "suspended",
    "local": "disabled",
}


def lifespan(hub: Lowtide) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that starts ``hub`` with the app and closes it on shutdown."""

    @asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[None]:
        async with hub:
            app.state.lowtide = hub
            yield

    return _lifespan


def health_body(hub: Lowtide) -> dict[str, Any]:
    """The body of ``/health``."""
    detail = hub.health()
    redis = _REDIS_STATE[hub.mode.value]
    status = "degraded" if hub.mode.value == "degraded" else "ok"
    return {"status": status, "services": {"redis": redis}, "lowtide": detail}


def health_route(hub: Lowtide, path: str = "/health", *, fail_when_degraded: bool = False) -> Route:
    """``GET /health`` in the shape the incident team's app used (see module docs)."""

    async def health(request: Request) -> Response:
        body = health_body(hub)
        code = 503 if fail_when_degraded and body["status"] != "ok" else 200
        return JSONResponse(body, status_code=code)

    return Route(path, health, methods=["GET"])


def metrics_route(hub: Lowtide, path: str = "/metrics", *, top_tenants: int = 20) -> Route:
    """``GET /metrics`` in Prometheus text format (needs ``lowtide[prometheus]``)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from lowtide.integrations.prometheus import LowtideCollector

    registry = CollectorRegistry()
    registry.register(LowtideCollector(hub, top_tenants=top_tenants))

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route(path, metrics, methods=["GET"])


def routes(hub: Lowtide) -> list[Route]:
    """``/health`` and ``/metrics``."""
    return [health_route(hub), metrics_route(hub)]


class TenantMiddleware:
    """Sets :func:`lowtide.tenant_scope` for each HTTP request.

    The tenant comes from ``tenant_of(scope)`` (sync or async) if given, else from the request
    header ``header``. A tenant id that is empty after stripping is ignored; one longer than 256
    characters is answered with 400.
    """

    def __init__(
        self, app: ASGIApp, *, header: str = "x-tenant-id", tenant_of: TenantOf | None = None
    ) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.tenant_of = tenant_of

    async def _tenant(self, scope: Scope) -> str | None:
        if self.tenant_of is not None:
            answer = self.tenant_of(scope)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer if isinstance(answer, str) else None
        for name, value in scope.get("headers", ()):
            if name == self.header:
                return bytes(value).decode("latin-1").strip()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        tenant = await self._tenant(scope)
        if not tenant:
            await self.app(scope, receive, send)
            return
        if len(tenant) > MAX_TENANT_LENGTH:
            response = JSONResponse({"error": "tenant id too long"}, status_code=400)
            await response(scope, receive, send)
            return
        with tenant_scope(tenant):
            await self.app(scope, receive, send)
