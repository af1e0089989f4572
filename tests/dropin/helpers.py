"""Shared by the drop-in client's tests: hubs with a drop-in client, and a plain client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aredis

from lowtide import Lowtide
from lowtide.dropin import DropInRedis

PREFIX = "d:"


@asynccontextmanager
async def dropin(
    url: str,
    prefixes: tuple[str, ...] = (PREFIX,),
    *,
    instance: str = "a",
    hub_options: dict[str, Any] | None = None,
    **redis_options: Any,
) -> AsyncIterator[tuple[Lowtide, DropInRedis]]:
    """A started hub (listener healthy) and a drop-in client made before ``start()``."""
    lt = Lowtide(url, instance=instance, **(hub_options or {}))
    r = lt.redis(prefixes, **redis_options)
    await lt.start()
    try:
        assert await lt.ready(10)
        yield lt, r
    finally:
        await lt.aclose()


def plain(url: str, **options: Any) -> aredis.Redis:
    """A plain redis-py client, as another service would use (RESP2, no CLIENT SETINFO, so
    its own commands are exactly the ones it is asked to send)."""
    return aredis.Redis.from_url(url, protocol=2, driver_info=None, **options)
