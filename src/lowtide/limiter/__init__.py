"""The fleet-wide rate limiter (reserve-ahead leases) and its pure arithmetic."""

from lowtide.limiter.core import Decision
from lowtide.limiter.limiter import Algorithm, LimiterKwargs, OnRedisError, RateLimiter

__all__ = ["Algorithm", "Decision", "LimiterKwargs", "OnRedisError", "RateLimiter"]
