"""Sampling a live server with MONITOR (for ``lowtide doctor``)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.redis.client import make_pool
from lowtide.settings import Settings

__all__ = ["sample_monitor"]


async def sample_monitor(settings: Settings, seconds: float) -> list[str]:
    """Every MONITOR line the server sends during ``seconds`` (1 MONITOR command).

    Raises RedisCommandError where MONITOR is refused (Upstash, ACLs) and RedisUnavailable when
    the server cannot be reached.
    """
    pool = make_pool(settings, None, max_connections=1, socket_timeout=math.inf)
    lines: list[str] = []
    try:
        get: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
        conn = await get()
        await conn.send_command("MONITOR")
        first: Any = await conn.read_response(timeout=5.0)
        if isinstance(first, rexc.ResponseError):
            raise RedisCommandError(str(first), command="monitor")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            reply: Any = await conn.read_response(timeout=left)
            if reply is None:
                break
            lines.append(
                reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            )
    except rexc.ResponseError as exc:
        raise RedisCommandError(str(exc), command="monitor") from exc
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"monitor: {exc}") from exc
    finally:
        await pool.disconnect()
    return lines
