"""FastAPI: ``Depends`` helpers for rate limits and circuit breakers, one call that installs
the exception handlers, and the Starlette pieces re-exported (``pip install 'lowtide[fastapi]'``).

```python
from fastapi import Depends, FastAPI
from lowtide.integrations import fastapi as lt_fastapi

app = FastAPI(lifespan=lt_fastapi.lifespan(lt))
lt_fastapi.add_exception_handlers(app)          # 429, 503, 400 with Retry-After

@app.get("/search", dependencies=[Depends(lt_fastapi.limit(search_limit))])
async def search() -> dict[str, str]: ...
```

Rate-limit headers follow the IETF draft (draft-ietf-httpapi-ratelimit-headers):
``RateLimit-Policy: "search";q=100;w=60`` and ``RateLimit: "search";r=42;t=17`` (quota, window,
remaining, seconds to reset), on allowed responses and on the 429.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from lowtide.breaker import CircuitBreaker
from lowtide.errors import CircuitOpen, RateLimited, TenantRequired
from lowtide.integrations.starlette import TenantMiddleware, lifespan, routes
from lowtide.limiter import RateLimiter
from lowtide.limiter.core import Decision, window_end, window_index

__all__ = [
    "RateLimitExceeded",
    "TenantMiddleware",
    "add_exception_handlers",
    "guard",
    "lifespan",
    "limit",
    "ratelimit_headers",
    "routes",
]

#: ``request -> tenant id`` (sync or async); None answers "no tenant"
TenantFrom = Callable[[Request], "str | Awaitable[str | None] | None"]


class RateLimitExceeded(RateLimited):
    """:class:`RateLimited` raised by :func:`limit`, with the RateLimit headers to answer."""

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers


def _sf_string(text: str) -> str:
    """``text`` as a Structured Field String (RFC 8941): printable ASCII, quoted, escaped."""
    safe = "".join(c if " " <= c <= "~" else "_" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _now(request: Request | None) -> float:
    hub = getattr(request.app.state, "lowtide", None) if request is not None else None
    server_time = getattr(hub, "server_time", None)
    return float(server_time()) if callable(server_time) else time.time()


def ratelimit_headers(
    limiter: RateLimiter, decision: Decision, now: float | None = None
) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` for ``decision`` (IETF draft syntax).

    ``q`` is the limit the fleet enforces, ``w`` the window in seconds, ``r`` what this
    process knows to be left (tokens in hand plus the fleet's remainder at its last
    reservation) and ``t`` the seconds until the window resets (a fixed window), until the
    bucket is full again (a token bucket), or until a denied call may retry.
    """
    now = time.time() if now is None else now
    quota = int(limiter.info()["enforced_limit"])
    per = limiter.per
    remaining = max(0, min(quota, int(decision.remaining)))
    if not decision.allowed:
        reset = decision.retry_after
    elif limiter.algorithm == "fixed_window":
        reset = window_end(window_index(now, per), per) - now
    else:
        reset = (quota - remaining) * per / max(quota, 1)
    name = _sf_string(limiter.name)
    return {
        "RateLimit-Policy": f"{name};q={quota};w={math.ceil(per)}",
        "RateLimit": f"{name};r={remaining};t={max(0, math.ceil(reset))}",
    }


async def _tenant(tenant: TenantFrom | None, request: Request) -> str | None:
    if tenant is None:
        return None  # the component falls back to tenant_scope() (TenantMiddleware)
    answer = tenant(request)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def limit(
    limiter: RateLimiter,
    *,
    tenant: TenantFrom | None = None,
    wait: float = 0.0,
    headers: bool = True,
) -> Callable[..., Awaitable[Decision]]:
    """A dependency that takes one token of ``limiter`` per request:
    ``Depends(lt_fastapi.limit(limiter))``.

    The tenant is ``tenant(request)`` if given, else the request's :func:`~lowtide.tenant_scope`
    (set by :class:`TenantMiddleware`). Denied (after waiting up to ``wait`` seconds): raises
    :class:`RateLimitExceeded`, answered 429 by :func:`add_exception_handlers`. Allowed: the
    response gets the RateLimit headers (unless ``headers=False``) and the endpoint can take
    the :class:`~lowtide.limiter.core.Decision` as its value.
    """

    async def rate_limit(request: Request, response: Response) -> Decision:
        decision = await limiter.acquire(await _tenant(tenant, request), wait=wait)
        fields = ratelimit_headers(limiter, decision, _now(request)) if headers else {}
        if not decision.allowed:
            raise RateLimitExceeded(
                f"rate limit {limiter.name!r} reached; retry in {decision.retry_after:.3f}s",
                retry_after=decision.retry_after,
                headers=fields,
            )
        response.headers.update(fields)
        return decision

    return rate_limit


def _client_error(exc: BaseException) -> bool:
    """Errors the app answers with 4xx: the request's fault, not the dependency's."""
    if isinstance(exc, HTTPException):
        return exc.status_code < 500
    return isinstance(exc, RequestValidationError | RateLimited | TenantRequired)


def guard(
    breaker: CircuitBreaker,
    *,
    tenant: TenantFrom | None = None,
    client_errors_fail: bool = False,
) -> Callable[..., AsyncIterator[None]]:
    """A dependency that runs the request under ``breaker.guard()``:
    ``Depends(lt_fastapi.guard(breaker))``.

    Open: raises :class:`~lowtide.errors.CircuitOpen` before the endpoint runs (503 with
    Retry-After from :func:`add_exception_handlers`). An exception the endpoint raises counts
    as the breaker's ``failure_on``/``ignore`` say, except errors answered with 4xx
    (``HTTPException`` under 500, validation errors, :class:`RateLimited`,
    :class:`TenantRequired`): the request's fault, counted as successes unless
    ``client_errors_fail=True``. To guard one outbound call rather than the whole request, use
    ``async with breaker.guard():`` around it instead.
    """

    async def circuit(request: Request) -> AsyncIterator[None]:
        passed: BaseException | None = None
        async with breaker.guard(await _tenant(tenant, request)):
            try:
                yield
            except Exception as exc:
                if client_errors_fail or not _client_error(exc):
                    raise
                passed = exc
        if passed is not None:
            raise passed

    return circuit


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


async def _rate_limited(request: Request, exc: Exception) -> Response:
    wait = getattr(exc, "retry_after", 1.0)
    headers = {"Retry-After": _retry_after(wait)}
    headers.update(getattr(exc, "headers", None) or {})
    return JSONResponse(
        {"detail": "rate limit reached", "retry_after": round(wait, 3)},
        status_code=429,
        headers=headers,
    )


async def _circuit_open(request: Request, exc: Exception) -> Response:
    wait = getattr(exc, "retry_after", 1.0)
    return JSONResponse(
        {"detail": "service temporarily unavailable", "retry_after": round(wait, 3)},
        status_code=503,
        headers={"Retry-After": _retry_after(wait)},
    )


async def _tenant_required(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=400)


def add_exception_handlers(app: FastAPI | Any) -> None:
    """Answer lowtide's errors over HTTP (FastAPI or Starlette):

    * :class:`RateLimited` -> 429, ``Retry-After`` (whole seconds, at least 1), plus the
      RateLimit headers when :func:`limit` raised it;
    * :class:`CircuitOpen` -> 503 with ``Retry-After``;
    * :class:`TenantRequired` -> 400.
    """
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(CircuitOpen, _circuit_open)
    app.add_exception_handler(TenantRequired, _tenant_required)
