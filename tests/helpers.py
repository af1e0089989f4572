"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest

from lowtide import CircuitBreaker, CircuitOpen, ManualClock, Quotas
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
