"""``lt.redis(...)``: build a drop-in ``redis.asyncio.Redis`` client on a hub.

See :mod:`lowtide.dropin.engine` for what it answers from process memory and what it costs,
and docs/dropin.md for the user's view.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lowtide._validate import integer, seconds
from lowtide.cache.options import CacheOptions
from lowtide.dropin.engine import DropInEngine
from lowtide.dropin.reads import Prefixes, check_prefixes
from lowtide.errors import ConfigError
from lowtide.redis.dropin import DropInRedis
from lowtide.redis.dropin_pool import make_dropin_pool

if TYPE_CHECKING:
    from lowtide.runtime import HubView

__all__ = ["drop_in"]


def drop_in(
    hub: HubView,
    cache_prefixes: Iterable[str],
    *,
    component: str = "app",
    max_staleness: float | None = None,
    local_ttl: float | None = None,
    max_entries: int = 10_000,
    max_bytes: int = 64 * 1024 * 1024,
    fail_safe_max: float = 600.0,
    redis_options: dict[str, Any],
) -> tuple[DropInRedis, DropInEngine]:
    """A drop-in client on ``hub`` and its engine (see :meth:`lowtide.Lowtide.redis`)."""
    s = hub.settings
    prefixes = check_prefixes(cache_prefixes, s.namespace)
    if not isinstance(component, str) or not component:
        raise ConfigError("component: give a non-empty str (the ledger's label)")
    staleness = s.max_staleness if max_staleness is None else max_staleness
    seconds("max_staleness", staleness, allow_zero=True)
    if local_ttl is None:
        local_ttl = staleness if staleness > 0 else 1.0
    options = CacheOptions(
        ttl=seconds("local_ttl", local_ttl),
        max_staleness=staleness,
        max_entries=integer("max_entries", max_entries),
        max_bytes=integer("max_bytes", max_bytes),
        max_tenant_share=1.0,
        eager_refresh=None,
        fail_safe_max=seconds("fail_safe_max", fail_safe_max, allow_zero=True),
        soft_timeout=None,
        max_value_bytes=s.max_value_bytes,
        per_tenant=False,
        batch_reads=False,
    )
    opts = dict(redis_options)
    single = bool(opts.pop("single_connection_client", False))
    labels = Prefixes(prefixes, component)
    pool = make_dropin_pool(s.url, hub.ledger, labels.label, opts)
    engine = DropInEngine(hub, labels, options)
    client = DropInRedis(
        lowtide_engine=engine, connection_pool=pool, single_connection_client=single
    )
    return client, engine
