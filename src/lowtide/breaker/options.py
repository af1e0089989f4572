"""What a circuit breaker is configured with and reports: its arguments, their checks, and the
:class:`Transition` records listeners receive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict

from lowtide._validate import fraction, integer, optional_seconds, seconds
from lowtide.errors import CircuitOpen, ConfigError, RateLimited

__all__ = ["NOT_CALLED", "BreakerKwargs", "Listener", "Transition", "check_arguments"]

#: exceptions that say the dependency was never called (a limiter or another breaker refused)
NOT_CALLED: tuple[type[BaseException], ...] = (RateLimited, CircuitOpen)


class Transition(NamedTuple):
    """A state change of one tenant's breaker as this machine saw it."""

    breaker: str
    tenant: str | None
    old: str
    new: str
    reason: str
    at: float


Listener = Callable[[Transition], None]


class BreakerKwargs(TypedDict, total=False):
    """The optional :class:`CircuitBreaker` arguments, as :meth:`Lowtide.circuit_breaker`
    takes them (each default lives in :class:`CircuitBreaker`)."""

    failure_rate: float
    min_calls: int
    window: float
    open_for: float
    slow_call: float | None
    quorum: int
    max_open: float | None
    failure_on: tuple[type[BaseException], ...]
    ignore: tuple[type[BaseException], ...]
    failure_when: Callable[[BaseException], bool] | None
    result_failure_when: Callable[[Any], bool] | None
    not_called: tuple[type[BaseException], ...]
    per_tenant: bool
    max_tenants: int


def check_arguments(
    *,
    failure_rate: float,
    min_calls: int,
    window: float,
    open_for: float,
    slow_call: float | None,
    max_open: float | None,
    quorum: int,
    max_tenants: int,
    exceptions: dict[str, object],
    predicates: dict[str, object],
) -> None:
    """Raise :class:`ConfigError` naming the first argument that is not acceptable."""
    fraction("failure_rate", failure_rate)
    integer("min_calls", min_calls)
    seconds("window", window)
    seconds("open_for", open_for)
    optional_seconds("slow_call", slow_call)
    optional_seconds("max_open", max_open)
    integer("quorum", quorum)
    integer("max_tenants", max_tenants)
    for what, classes in exceptions.items():
        if not isinstance(classes, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in classes
        ):
            raise ConfigError(f"{what}: expected a tuple of exception classes, got {classes!r}")
    for what, predicate in predicates.items():
        if predicate is not None and not callable(predicate):
            raise ConfigError(f"{what}: expected a function or None, got {predicate!r}")
