"""The knobs of a tiered cache and its counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TypedDict

from lowtide._validate import fraction, integer, optional_seconds, seconds

__all__ = ["CacheKwargs", "CacheOptions", "CacheStats", "pushed_state"]


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """The knobs of one cache (durations in seconds, sizes in bytes)."""

    #: life of a value in Redis (L2)
    ttl: float
    #: longest an L1 copy is served as fresh (guarantee: staleness bound without push)
    max_staleness: float
    #: L1 bounds for this cache
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    #: share of max_entries/max_bytes one tenant may hold (1.0 = no per-tenant cap)
    max_tenant_share: float = 0.1
    #: how long "no value" is remembered after a loader returned None
    negative_ttl: float = 30.0
    #: refresh in the background once this fraction of an entry's life has passed
    #: (``get_or_load`` only; None turns it off)
    eager_refresh: float | None = 0.9
    #: serve the last good value when Redis or the loader fails, for at most this long
    fail_safe: bool = True
    fail_safe_max: float = 600.0
    #: after a loader failure, keep serving the stale value this long before trying again
    fail_safe_throttle: float = 5.0
    #: when a last good value exists, answer with it if Redis or the loader takes longer than
    #: this (the read goes on in the background); None waits (up to the op timeout)
    soft_timeout: float | None = 0.1
    #: largest encoded value accepted
    max_value_bytes: int = 1_048_576
    #: False for data that belongs to no tenant (then ``tenant=`` must not be given)
    per_tenant: bool = True
    #: misses of one tenant's keys issued in the same event-loop turn share one MGET
    batch_reads: bool = True
    #: enables ``purge()``, ``purge_tag()`` and ``tags=`` (values carry a stamp; the first L2
    #: read per process costs 2 more commands, see :mod:`lowtide.cache.purge`)
    purgeable: bool = False
    #: pub/sub mode: stop keeping copies in process memory when the messages they need cost
    #: more than the reads they save (see :mod:`lowtide.cache.adaptive`); False keeps them
    adaptive: bool = True

    def __post_init__(self) -> None:
        seconds("ttl", self.ttl)
        for name in ("max_staleness", "negative_ttl", "fail_safe_max", "fail_safe_throttle"):
            seconds(name, getattr(self, name), allow_zero=True)
        for name in ("max_entries", "max_bytes", "max_value_bytes"):
            integer(name, getattr(self, name))
        fraction("max_tenant_share", self.max_tenant_share)
        optional_seconds("soft_timeout", self.soft_timeout)
        if self.eager_refresh is not None:
            fraction("eager_refresh", self.eager_refresh, allow_one=False)


class CacheKwargs(TypedDict, total=False):
    """The :class:`CacheOptions` fields as keyword arguments of :meth:`Lowtide.cache` (each
    default lives in :class:`CacheOptions`, or in :class:`~lowtide.settings.Settings` for
    ``ttl``, ``max_staleness`` and ``max_value_bytes``)."""

    ttl: float
    max_staleness: float
    max_entries: int
    max_bytes: int
    max_tenant_share: float
    negative_ttl: float
    eager_refresh: float | None
    fail_safe: bool
    fail_safe_max: float
    fail_safe_throttle: float
    soft_timeout: float | None
    max_value_bytes: int
    per_tenant: bool
    batch_reads: bool
    purgeable: bool
    adaptive: bool


@dataclass(slots=True)
class CacheStats:
    """Counters of one cache since it was created."""

    hits: int = 0  # answered from L1 (each saved one GET)
    misses: int = 0  # not fresh in L1
    l2_hits: int = 0
    l2_misses: int = 0
    loads: int = 0  # loader calls
    load_errors: int = 0
    stale_served: int = 0  # fail-safe answers
    writes: int = 0
    invalidations: int = 0  # L1 entries dropped by a push
    echoes: int = 0  # own-write invalidations swallowed
    refreshes: int = 0  # eager background refreshes started
    coalesced: int = 0  # callers that joined a single-flight instead of sending their own
    soft_timeouts: int = 0  # slow reads/loads answered with the last good value
    unreadable: int = 0  # L2 values refused: not lowtide's, corrupt, wrong type, too large
    oversized: int = 0  # of those, larger than max_value_bytes (never decoded)
    unreadable_hits: int = 0  # reads refused from memory of an unreadable value, no command
    known_absent: int = 0  # loads that skipped the GET: the Redis copy was known to be gone
    # pub/sub mode (see lowtide.cache.notify and lowtide.cache.adaptive)
    notified: int = 0  # writes that sent a PUBLISH
    quiet_writes: int = 0  # writes that needed none (nothing another process can hold)
    private_reads: int = 0  # reads of values marked "no copies" (not kept in L1)
    would_hits: int = 0  # of those, reads a copy would have answered
    # copies capped by max_staleness (pub/sub and ttl modes), see lowtide.cache.renew
    renewals: int = 0  # MGETs that renewed copies before they lapsed
    renewed: int = 0  # copies renewed by them

    def to_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self)


def pushed_state(
    *,
    max_staleness: float,
    max_value_bytes: int,
    per_tenant: bool,
    ttl: float = 3600.0,
    max_entries: int = 100_000,
    entry_bytes: int = 400,
    eager_refresh: float | None = None,
    fail_safe: bool = True,
    fail_safe_max: float = 600.0,
    negative_ttl: float = 30.0,
) -> CacheOptions:
    """Options for control-plane state kept in a tiered cache (limiter penalties, breaker
    states, tenant mappings).

    Such state changes only through lowtide's own writes, which are pushed to every hub, so
    L1 may keep it as long as L2 does (``max_staleness`` is the caller's bound for when there is
    no push); small values, many tenants, no per-tenant share; copies always kept (a read of
    control state must cost nothing).
    """
    return CacheOptions(
        ttl=ttl,
        max_staleness=max_staleness,
        max_entries=max_entries,
        max_bytes=max_entries * entry_bytes,
        max_tenant_share=1.0,
        negative_ttl=negative_ttl,
        eager_refresh=eager_refresh,
        fail_safe=fail_safe,
        fail_safe_max=fail_safe_max,
        max_value_bytes=max_value_bytes,
        per_tenant=per_tenant,
        adaptive=False,
    )
