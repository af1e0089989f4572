"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from lowtide import CircuitBreaker, CircuitOpen


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` is true (polls; fails the test after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not condition():
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
