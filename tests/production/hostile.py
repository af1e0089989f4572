"""Planting hostile values with the harness's raw client, for the hostile-data tests (issue 19)."""

from __future__ import annotations

import json

from lowtide import Lowtide
from lowtide.cache.envelope import wrap
from lowtide.codec import JsonCodec
from lowtide.testing import ValkeyServer
from tests.helpers import eventually

CODEC = JsonCodec()


def plant(server: ValkeyServer, key: str, value: object, *, ttl_ms: int | None = None) -> None:
    """Write ``value`` as a lowtide cache value (envelope + the JSON codec's tag) with the raw
    client; stdlib JSON, so integers beyond 64 bits can be planted too."""
    raw = wrap(b"j" + json.dumps(value).encode(), 0)
    args: tuple[object, ...] = (
        ("SET", key, raw) if ttl_ms is None else ("SET", key, raw, "PX", ttl_ms)
    )
    assert server.command(*args) == "OK"


async def plant_heard(hub: Lowtide, server: ValkeyServer, key: str, value: object) -> None:
    """:func:`plant`, then wait until ``hub`` heard its push (a read in flight meanwhile would
    rightly not be remembered)."""
    received = hub.invalidations.received
    plant(server, key, value)
    await eventually(lambda: hub.invalidations.received > received)
