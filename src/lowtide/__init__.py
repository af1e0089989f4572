"""lowtide: fewer billed Redis commands for multi-tenant asyncio backends.

Start with :class:`Lowtide`::

    async with Lowtide.from_env() as lt:
        ...
"""

from lowtide.breaker import CircuitBreaker, Transition
from lowtide.cache import Cache, CacheOptions, CacheStats
from lowtide.clock import Clock, ManualClock, SystemClock
from lowtide.context import Attribution, current_tenant, tenant_scope
from lowtide.errors import (
    CircuitOpen,
    ConfigError,
    InvalidKeyError,
    LowtideError,
    RateLimited,
    RedisCommandError,
    RedisUnavailable,
    SerializationError,
    TenantRequired,
    ValueTooLarge,
)
from lowtide.hub import Lowtide
from lowtide.keys import build_key, parse_key
from lowtide.ledger import LedgerSnapshot
from lowtide.limiter import Decision, RateLimiter
from lowtide.modes import Mode, ModeChange
from lowtide.quotas import QuotaEvent, Quotas
from lowtide.settings import Settings
from lowtide.tenants import TenantResolver

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "Cache",
    "CacheOptions",
    "CacheStats",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "Decision",
    "InvalidKeyError",
    "LedgerSnapshot",
    "Lowtide",
    "LowtideError",
    "ManualClock",
    "Mode",
    "ModeChange",
    "QuotaEvent",
    "Quotas",
    "RateLimited",
    "RateLimiter",
    "RedisCommandError",
    "RedisUnavailable",
    "SerializationError",
    "Settings",
    "SystemClock",
    "TenantRequired",
    "TenantResolver",
    "Transition",
    "ValueTooLarge",
    "build_key",
    "current_tenant",
    "parse_key",
    "tenant_scope",
]
