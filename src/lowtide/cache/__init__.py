"""The tiered cache: L1 store, L2 envelope, the cache itself and its registry."""

from lowtide.cache.options import CacheKwargs, CacheOptions, CacheStats, pushed_state
from lowtide.cache.registry import CacheHub, CacheRegistry
from lowtide.cache.store import L1Store
from lowtide.cache.tiered import Cache

__all__ = [
    "Cache",
    "CacheHub",
    "CacheKwargs",
    "CacheOptions",
    "CacheRegistry",
    "CacheStats",
    "L1Store",
    "pushed_state",
]
