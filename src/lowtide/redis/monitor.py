"""Sampling a live server for ``lowtide doctor``: MONITOR, or two INFO commandstats readings.

Each sample uses one connection of its own and sends nothing else on it, so what it reads is
other clients' traffic (see :mod:`lowtide.doctor.run`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.redis.client import make_pool
from lowtide.redis.info import parse_commandstats
from lowtide.settings import Settings

__all__ = ["sample_commandstats", "sample_monitor"]


async def sample_monitor(settings: Settings, seconds: float) -> tuple[list[str], float]:
    """Every MONITOR line the server sends during ``seconds`` (1 MONITOR command), and the
    seconds the sample lasted (from MONITOR's OK; shorter if the server closes the connection).

    Raises RedisCommandError where MONITOR is refused (Upstash, ACLs) and RedisUnavailable when
    the server cannot be reached.
    """
    pool = make_pool(settings, None, max_connections=1, socket_timeout=math.inf)
    lines: list[str] = []
    elapsed = 0.0
    try:
        get: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
        conn = await get()
        await conn.send_command("MONITOR")
        first: Any = await conn.read_response(timeout=5.0)
        if isinstance(first, rexc.ResponseError):
            raise RedisCommandError(str(first), command="monitor")
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + seconds
        while (left := deadline - loop.time()) > 0:
            reply: Any = await conn.read_response(timeout=left)
            if reply is None:
                break
            lines.append(
                reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            )
        elapsed = loop.time() - start
    except rexc.ResponseError as exc:
        raise RedisCommandError(str(exc), command="monitor") from exc
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"monitor: {exc}") from exc
    finally:
        await pool.disconnect()
    return lines, elapsed


async def sample_commandstats(settings: Settings, seconds: float) -> tuple[dict[str, int], float]:
    """The server's per-command counts over ``seconds`` of real time, and those seconds.

    Two ``INFO commandstats`` on one connection. The server counts the first INFO after it
    produced that INFO's reply, so the difference holds exactly one command of this sample's
    own, which is taken off; the second INFO is not in it yet. Raises RedisCommandError where
    INFO is refused and RedisUnavailable when the server cannot be reached.
    """
    pool = make_pool(settings, None, max_connections=1, socket_timeout=max(seconds, 1.0) + 10)
    try:
        get: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
        conn = await get()
        await conn.send_command("INFO", "commandstats")
        before = parse_commandstats(await conn.read_response())
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        await conn.send_command("INFO", "commandstats")
        after = parse_commandstats(await conn.read_response())
        elapsed = time.monotonic() - t0
    except rexc.ResponseError as exc:
        raise RedisCommandError(f"INFO commandstats: {exc}", command="info") from exc
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"INFO commandstats: {exc}") from exc
    finally:
        await pool.disconnect()
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    delta["info"] = delta.get("info", 0) - 1  # the first INFO, counted after its reply
    return {k: v for k, v in delta.items() if v > 0}, elapsed
