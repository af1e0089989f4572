"""One guarded call: the async context manager :meth:`CircuitBreaker.guard` returns.

A hand-written class rather than ``@asynccontextmanager``: a healthy call (closed, fleet state
known absent from L1, the block returns) runs one ``__aenter__`` and one ``__aexit__`` frame
plus the L1 read, with no generator and no clock read on the way in. Every other case (open,
half-open, forced, a fleet state to adopt, a failure, a probe, a cancellation) takes the
breaker's own slow path, which decides exactly as before.

The object is also the call's handle: ``call.result(value)`` lets ``result_failure_when``
judge a result, and ``call.fail()`` counts a call that returned normally as a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from lowtide._untrusted import Warnings
from lowtide.breaker.core import BreakerCore, State
from lowtide.errors import LowtideError, RedisCommandError, SerializationError
from lowtide.tenancy import TenantLRU

__all__ = ["Guard"]

log = logging.getLogger("lowtide.breaker")

T = TypeVar("T")
_CLOSED = State.CLOSED


class Guarded(Protocol):
    """What a :class:`Guard` needs of its breaker (:class:`CircuitBreaker`): its settings, its
    per-tenant state, and the slow paths that decide everything but a healthy call."""

    name: str
    per_tenant: bool
    slow_call: float | None
    failure_on: tuple[type[BaseException], ...]
    ignore: tuple[type[BaseException], ...]
    not_called: tuple[type[BaseException], ...]
    failure_when: Callable[[BaseException], bool] | None
    result_failure_when: Callable[[Any], bool] | None
    stats: dict[str, int]
    _cores: TenantLRU[BreakerCore]
    _fleet_gen: dict[str | None, int]
    _warnings: Warnings

    @property
    def _read_state(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def _server_now(self) -> Callable[[], float]: ...

    @property
    def _monotonic(self) -> Callable[[], float]: ...

    def _tenant(self, tenant: str | None) -> str | None: ...

    async def _admit(self, tenant: str | None, core: BreakerCore, value: object) -> bool: ...

    async def _finish(
        self, tenant: str | None, core: BreakerCore, probe: bool, failed: bool
    ) -> None: ...

    def _abandon(self, tenant: str | None, core: BreakerCore, probe: bool, why: str) -> None: ...


class Guard:
    """``async with breaker.guard(tenant) as call:`` runs the block if the breaker allows it and
    counts its outcome (see :meth:`CircuitBreaker.guard`). One use per object."""

    __slots__ = ("_breaker", "_core", "_failed", "_probe", "_started", "_tenant")

    def __init__(self, breaker: Guarded, tenant: str | None) -> None:
        self._breaker = breaker
        self._tenant = tenant
        self._failed = False
        # _core, _probe and _started are set by __aenter__

    def result(self, value: T) -> T:
        """Hand the call's result to the breaker and get it back: the call counts as a failure
        if ``result_failure_when(value)`` is true (a no-op without that predicate)."""
        b = self._breaker
        if b.result_failure_when is not None and not self._failed:
            self._failed = _judge(b, b.result_failure_when, value, "result_failure_when", False)
        return value

    def fail(self) -> None:
        """Count this call as a failure although the block returns normally."""
        self._failed = True

    @property
    def failed(self) -> bool:
        """True if the call counts as a failure so far (:meth:`result`, :meth:`fail`)."""
        return self._failed

    async def __aenter__(self) -> Guard:
        b = self._breaker
        tenant = self._tenant
        if tenant is None or not b.per_tenant:
            tenant = self._tenant = b._tenant(tenant)
        core = self._core = b._cores.get(tenant)
        value: object
        try:
            value = await b._read_state("state", tenant=tenant)
        except (SerializationError, RedisCommandError) as exc:  # unreadable, or WRONGTYPE
            value = exc
        except LowtideError:
            value = None  # Redis cannot tell: decide locally
        if (
            value is not None
            or core.state is not _CLOSED
            or core.forced is not None
            or tenant in b._fleet_gen
        ):
            self._probe = await b._admit(tenant, core, value)
        else:
            self._probe = False
        b.stats["calls"] += 1
        if b.slow_call is not None:
            self._started = b._monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        b = self._breaker
        core: BreakerCore = self._core
        if exc is None:
            failed = self._failed
            if not failed and b.slow_call is not None:
                failed = b._monotonic() - self._started >= b.slow_call
            if not failed and not self._probe and core.state is _CLOSED and core.forced is None:
                core.window.record(b._server_now(), False)  # a success while closed
                return
        elif not isinstance(exc, Exception):  # cancelled, or interrupted: no outcome
            b._abandon(self._tenant, core, self._probe, "cancelled")
            return
        elif isinstance(exc, b.not_called):  # refused before the dependency was called
            b._abandon(self._tenant, core, self._probe, "not_called")
            return
        else:
            failed = _is_failure(b, exc)
        await b._finish(self._tenant, core, self._probe, failed)


def _is_failure(b: Guarded, exc: Exception) -> bool:
    """Whether an exception from a guarded block counts as a failure (see ``guard()``)."""
    if not isinstance(exc, b.failure_on) or isinstance(exc, b.ignore):
        return False
    if b.failure_when is None:
        return True
    return _judge(b, b.failure_when, exc, "failure_when", True)


def _judge(
    b: Guarded, predicate: Callable[[Any], object], x: Any, what: str, default: bool
) -> bool:
    """``predicate(x)`` as a bool; ``default`` (the verdict without the predicate) if it
    raises (counted in ``stats["predicate_errors"]``, logged at most once a minute)."""
    try:
        return bool(predicate(x))
    except Exception:
        b.stats["predicate_errors"] += 1
        b._warnings.warn(what, "breaker %r: %s raised; judged without it", b.name, what)
        log.debug("breaker %r: %s raised", b.name, what, exc_info=True)
        return default
