"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lowtide import CircuitBreaker, CircuitOpen, Lowtide, ManualClock, Quotas, build_key
from lowtide.modes import InvalidationMode
from lowtide.redis import plain_client
from lowtide.testing import ValkeyServer


async def eventually(condition: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``condition()`` is true (polls; fails the test after ``within`` seconds).

    ``condition`` may be a coroutine function (``async def``): each poll then awaits it, e.g.
    a read that must come back with a new value.
    """
    deadline = time.monotonic() + within
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Loader:
    """A cache loader that counts its calls; each returns a new value naming ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"by": self.name, "n": self.calls}


class Boom(Exception):
    """A dependency failure, raised inside ``breaker.guard``."""


async def fail(breaker: CircuitBreaker, tenant: str, n: int) -> None:
    """Record ``n`` failed calls (or rejections, once open) on ``breaker`` for ``tenant``."""
    for _ in range(n):
        with pytest.raises((Boom, CircuitOpen)):
            async with breaker.guard(tenant):
                raise Boom


def server_fleet_total(server: ValkeyServer, quotas: Quotas, tenant: str) -> int:
    """A tenant's fleet-wide quota units as the server holds them, summed without lowtide's
    code: every process the period's directory lists, that process's field for ``tenant``."""
    total = 0
    for name in server.command("HKEYS", quotas.directory_key()) or []:
        name = name.decode() if isinstance(name, bytes) else name
        if name.startswith("s:"):
            total += int(server.command("HGET", quotas.counter_key(name[2:]), tenant) or 0)
    return total


async def advance_gently(clock: ManualClock, seconds: float, step: float = 5.0) -> None:
    """Advance a :class:`~lowtide.ManualClock` by ``seconds`` in steps of ``step``, letting the
    loop run between them: background loops (the listener's keepalive, which declares a
    listener dead after two silent periods) see time pass as it would in real life."""
    left = seconds
    while left > 0:
        clock.advance(min(step, left))
        left -= step
        await asyncio.sleep(0.02)


async def listeners_caught_up(hubs: list[Lowtide]) -> None:
    """Wait until every hub's invalidation listener has handled every message sent so far: a
    fence key is written (published, on the backplane) and each listener must hear it (one
    connection, in order; one server only: on a cluster each primary has its own connection).
    Keyspace notifications send one message per write, so a big batch of writes can still be
    in flight to the listeners when the writer has its replies."""
    url = hubs[0].settings.url
    assert url is not None
    key = build_key(hubs[0].settings.namespace, "cache", "fence", None, str(time.monotonic()))
    heard: set[int] = set()

    def hear(i: int, keys: list[str] | None) -> None:
        if keys is None or key in keys:
            heard.add(i)

    stops = [hub.invalidations.subscribe(functools.partial(hear, i)) for i, hub in enumerate(hubs)]
    client = plain_client(url)
    try:
        if hubs[0].invalidations.mode is InvalidationMode.PUBSUB:
            await client.publish(hubs[0].invalidations.channel, key)
        else:
            await client.set(key, "1", px=10_000)
        await eventually(lambda: len(heard) == len(hubs))
    finally:
        await client.aclose()
        for stop in stops:
            stop()
