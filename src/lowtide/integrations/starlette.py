"""Starlette / FastAPI integration: lifespan, ``/health``, ``/metrics`` and a tenant middleware.

```python
from starlette.applications import Starlette
from lowtide import Lowtide
from lowtide.integrations.starlette import TenantMiddleware, lifespan, routes

lt = Lowtide.from_env()
app = Starlette(lifespan=lifespan(lt), routes=routes(lt))   # GET /health, GET /metrics
app.add_middleware(TenantMiddleware, header="x-tenant-id")
```

``/health`` answers in the shape the incident team's app used,
``{"status": "ok", "services": {"redis": "ok"}}``, plus lowtide's detail under ``"lowtide"``
(no secrets). The app keeps working when Redis is away, so the endpoint answers 200 unless
``fail_when_degraded=True``. FastAPI helpers (``Depends``, exception handlers) are in
:mod:`lowtide.integrations.fastapi`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lowtide.context import tenant_scope
from lowtide.keys import MAX_TENANT_LENGTH

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from lowtide.hub import Lowtide

__all__ = [
    "TenantMiddleware",
    "health_body",
    "health_route",
    "lifespan",
    "metrics_route",
    "routes",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TenantOf = Callable[[Scope], "str | Awaitable[str | None] | None"]
#: what Starlette and FastAPI accept as ``lifespan=``: ``app -> async context manager``
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]

_REDIS_STATE = {
    "distributed": "ok",
    "degraded": "unreachable",
    "suspended": "suspended",
    "local": "disabled",
}


def _collectors(hub: Lowtide) -> list[Any]:
    """The hub's Prometheus collectors (none without prometheus-client)."""
    try:
        from lowtide.integrations.prometheus import collectors
    except ImportError:
        return []
    return list(collectors(hub))


def lifespan(hub: Lowtide, app_lifespan: Lifespan | None = None) -> Lifespan:
    """A lifespan that starts ``hub`` with the app and closes it on shutdown.

    ``app_lifespan``, the app's own lifespan, runs inside: the hub is started (and
    ``app.state.lowtide`` set) before it starts, and closed after it finished, so its start-up
    and shutdown code can use lowtide. Lifespan state it yields (a dict) is passed on, with
    ``"lowtide": hub`` added. The hub's Prometheus collectors are started with it
    (multiprocess sync) and closed after it (a last write of this worker's values).
    """

    @asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            for collector in _collectors(hub):
                stack.push_async_callback(collector.aclose)  # after the hub closed
            await stack.enter_async_context(hub)
            app.state.lowtide = hub
            for collector in _collectors(hub):
                collector.start()
            state: dict[str, Any] = {}
            if app_lifespan is not None:
                inner = await stack.enter_async_context(app_lifespan(app))
                if isinstance(inner, dict):
                    state.update(inner)
            state["lowtide"] = hub
            yield state

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


def metrics_route(
    hub: Lowtide,
    path: str = "/metrics",
    *,
    registry: CollectorRegistry | None = None,
    top_tenants: int = 20,
) -> Route:
    """``GET /metrics`` in Prometheus text format, or OpenMetrics when the scraper asks
    (needs ``lowtide[prometheus]``).

    Serves ``registry`` (default: prometheus-client's default registry, so the app's own
    metrics are there too); when ``hub`` has no :class:`LowtideCollector` yet, one is created
    and registered in it (closed by :func:`lifespan`). With ``PROMETHEUS_MULTIPROC_DIR`` set it
    serves the sum over every worker process instead (see
    :mod:`lowtide.integrations.prometheus`).
    """
    from prometheus_client import REGISTRY

    from lowtide.integrations.prometheus import LowtideCollector, collectors, exposition

    served = REGISTRY if registry is None else registry
    if not collectors(hub):
        LowtideCollector(hub, top_tenants=top_tenants).register(served)

    async def metrics(request: Request) -> Response:
        body, content_type = exposition(hub, served, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return Route(path, metrics, methods=["GET"])


def routes(hub: Lowtide, *, registry: CollectorRegistry | None = None) -> list[Route]:
    """``/health`` and ``/metrics``."""
    return [health_route(hub), metrics_route(hub, registry=registry)]


class TenantMiddleware:
    """Sets :func:`lowtide.tenant_scope` for each HTTP request.

    The tenant comes from ``tenant_of(scope)`` (sync or async) if given, else from the request
    header ``header``. A tenant id that is empty after stripping counts as none; one longer
    than 256 characters is answered with 400. With ``require=True`` a request without a tenant
    is answered with 400 too, except on the paths in ``exempt`` (e.g. ``/health``,
    ``/metrics``: a path equal to one of them or under it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "x-tenant-id",
        tenant_of: TenantOf | None = None,
        require: bool = False,
        exempt: Collection[str] = ("/health", "/metrics"),
    ) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.tenant_of = tenant_of
        self.require = require
        self.exempt = tuple(p.rstrip("/") for p in exempt)

    async def _tenant(self, scope: Scope) -> str | None:
        if self.tenant_of is not None:
            answer = self.tenant_of(scope)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer.strip() if isinstance(answer, str) else None
        for name, value in scope.get("headers", ()):
            if name == self.header:
                return bytes(value).decode("latin-1").strip()
        return None

    def _exempt(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        tenant = await self._tenant(scope)
        if not tenant:
            if self.require and not self._exempt(str(scope.get("path", ""))):
                response = JSONResponse(
                    {"error": "tenant required", "header": self.header.decode("latin-1")},
                    status_code=400,
                )
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if len(tenant) > MAX_TENANT_LENGTH:
            response = JSONResponse({"error": "tenant id too long"}, status_code=400)
            await response(scope, receive, send)
            return
        with tenant_scope(tenant):
            await self.app(scope, receive, send)
