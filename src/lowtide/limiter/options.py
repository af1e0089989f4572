"""What a rate limiter is configured with: its optional arguments and their checks."""

from __future__ import annotations

from typing import Literal, TypedDict

from lowtide._validate import integer, optional_seconds, seconds
from lowtide.errors import ConfigError
from lowtide.limiter.local import OnRedisError

__all__ = ["Algorithm", "LimiterKwargs", "check_arguments"]

#: how a limit is counted
Algorithm = Literal["fixed_window", "token_bucket"]


class LimiterKwargs(TypedDict, total=False):
    """The optional :class:`RateLimiter` arguments, as :meth:`Lowtide.rate_limiter` takes them
    (each default lives in :class:`RateLimiter`)."""

    algorithm: Algorithm
    on_redis_error: OnRedisError
    fleet_size: int | None
    max_lease: int
    lease_horizon: float
    per_tenant: bool
    max_tenants: int
    max_penalty: float | None


def check_arguments(
    *,
    limit: int,
    per: float,
    algorithm: str,
    on_redis_error: str,
    fleet_size: int | None,
    max_lease: int,
    lease_horizon: float,
    max_tenants: int,
    max_penalty: float | None,
) -> None:
    """Raise :class:`ConfigError` naming the first argument that is not acceptable."""
    integer("limit", limit)
    seconds("per", per)
    if algorithm not in ("fixed_window", "token_bucket"):
        raise ConfigError(f"algorithm: fixed_window or token_bucket, got {algorithm!r}")
    if on_redis_error not in ("local_share", "allow", "deny"):
        raise ConfigError(f"on_redis_error: local_share, allow or deny, got {on_redis_error!r}")
    if fleet_size is not None:
        integer("fleet_size", fleet_size)
    integer("max_lease", max_lease)
    seconds("lease_horizon", lease_horizon)
    integer("max_tenants", max_tenants)
    optional_seconds("max_penalty", max_penalty)
