"""The tiered cache: L1 store, L2 envelope, the cache itself and its registry."""

from lowtide.cache.registry import CacheRegistry
from lowtide.cache.store import L1Store
from lowtide.cache.tiered import Cache, CacheOptions, CacheStats

__all__ = ["Cache", "CacheOptions", "CacheRegistry", "CacheStats", "L1Store"]
