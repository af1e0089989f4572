"""The invalidation connection: one dedicated RESP2 connection that receives invalidations.

Tracking set-up (3 commands, counted by the ledger like any other)::

    CLIENT ID                                   -> own id
    CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <p1> PREFIX <p2> ...
    SUBSCRIBE __redis__:invalidate

Backplane set-up, where the server has no CLIENT TRACKING (Upstash): ``SUBSCRIBE <channel>``
only; writers PUBLISH the keys they changed, newline-separated (keys built by
:func:`lowtide.keys.build_key` never contain whitespace).

Tracking state lives on this connection (REDIRECT to itself, BCAST), so data connections need no
set-up and losing a pooled data connection loses nothing. RESP2 is used on purpose: with RESP3
the server sends invalidations as push frames that a Pub/Sub reader drops (the cashews + redis-py
8 stale-data bug); the hub's start-up self-test proves a write really produces a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from lowtide.context import Attribution, _attribution
from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.ledger import Ledger
from lowtide.redis.client import make_pool
from lowtide.settings import Settings

__all__ = ["INVALIDATE_CHANNEL", "TrackingConnection"]

INVALIDATE_CHANNEL = "__redis__:invalidate"
LISTENER = Attribution("invalidation", "-", None)


async def _keep(response: Any) -> Any:
    """RESP3 invalidation push handler that hands the frame back to the reader."""
    return response


def _text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


class TrackingConnection:
    """A connection in BCAST tracking mode; :meth:`read` yields invalidated keys."""

    def __init__(self, settings: Settings, ledger: Ledger | None, *, resp3: bool = False) -> None:
        # no socket timeout: reads block until a message or a keepalive PONG arrives
        #: RESP3: invalidations arrive as push frames on this connection (HELLO 3, no REDIRECT)
        self.resp3 = resp3
        self._pool = make_pool(
            settings,
            ledger,
            max_connections=1,
            socket_timeout=math.inf,
            protocol=3 if resp3 else 2,
        )
        self._conn: AbstractConnection | None = None
        self._aborted = False
        self.client_id: int | None = None
        self.channel = INVALIDATE_CHANNEL

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the server this listener connects to."""
        kw = self._pool.connection_kwargs
        return str(kw.get("host", "")), int(kw.get("port", 0))

    def abort(self) -> None:
        """Refuse every further command at once (the socket is closed by :meth:`close`):
        nothing more is sent after the hub decided to stop using Redis."""
        self._aborted = True

    async def _cmd(self, *args: Any) -> Any:
        if self._conn is None or self._aborted:
            raise RedisUnavailable("tracking connection is closed")
        token = _attribution.set(LISTENER)
        try:
            await self._conn.send_command(*args)
            reply = await self._conn.read_response(timeout=5.0)
        finally:
            _attribution.reset(token)
        if isinstance(reply, rexc.ResponseError):
            raise RedisCommandError(str(reply), command=_text(args[0]).lower())
        return reply

    async def open(self, prefixes: Sequence[str], *, backplane: str | None = None) -> None:
        """Connect, turn BCAST tracking on for ``prefixes`` and subscribe (raises on failure).

        With ``backplane`` set, skip tracking and subscribe to that pub/sub channel instead.
        """
        try:
            get: Callable[[], Awaitable[AbstractConnection]] = self._pool.get_connection
            self._conn = await get()
            if self._aborted:
                raise RedisUnavailable("tracking connection is closed")
            if self.resp3 and backplane is None:
                # pushes are returned by read_response(push_request=True), not handled away
                parser: Any = getattr(self._conn, "_parser", None)
                if parser is None or not hasattr(parser, "invalidation_push_handler_func"):
                    raise RedisCommandError("no RESP3 push support", command="hello")
                parser.invalidation_push_handler_func = _keep
                args3: list[Any] = ["CLIENT", "TRACKING", "ON", "BCAST"]
                for p in prefixes:
                    args3 += ["PREFIX", p]
                await self._cmd(*args3)
                return
            if backplane is None:
                self.client_id = int(await self._cmd("CLIENT", "ID"))
                args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", self.client_id]
                args.append("BCAST")
                for p in prefixes:
                    args += ["PREFIX", p]
                await self._cmd(*args)
            else:
                self.channel = backplane
            reply = await self._cmd("SUBSCRIBE", self.channel)
            if not (isinstance(reply, list) and _text(reply[0]).lower() == "subscribe"):
                raise RedisCommandError(
                    f"unexpected SUBSCRIBE reply {reply!r}", command="subscribe"
                )
        except rexc.ResponseError as exc:
            await self.close()
            raise RedisCommandError(str(exc), command="client|tracking") from exc
        except (rexc.ConnectionError, rexc.TimeoutError, OSError, TimeoutError) as exc:
            await self.close()
            raise RedisUnavailable(f"tracking connection: {exc}") from exc

    async def ping(self) -> None:
        """Send a keepalive PING (answered in subscribed mode as a ``pong`` message)."""
        if self._conn is None or self._aborted:
            raise RedisUnavailable("tracking connection is closed")
        token = _attribution.set(LISTENER)
        try:
            await self._conn.send_command("PING")
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            raise RedisUnavailable(f"tracking connection: {exc}") from exc
        finally:
            _attribution.reset(token)

    async def read(self) -> list[str] | str | None:
        """Wait for the next message.

        Returns a list of invalidated keys, ``None`` for "flush everything" (FLUSHALL,
        FLUSHDB, or the server dropping tracking state), or ``"pong"`` for a keepalive answer.
        Raises :class:`RedisUnavailable` when the connection is lost.
        """
        if self._conn is None:
            raise RedisUnavailable("tracking connection is closed")
        while True:
            try:
                msg = await self._conn.read_response(timeout=math.inf, push_request=self.resp3)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                raise RedisUnavailable(f"tracking connection lost: {exc}") from exc
            if self.resp3 and not isinstance(msg, list):
                if _text(msg).lower() == "pong":
                    return "pong"
                continue
            if not isinstance(msg, list) or not msg:
                continue
            kind = _text(msg[0]).lower()
            if self.resp3 and kind == "invalidate" and len(msg) >= 2:
                if msg[1] is None:
                    return None
                return [_text(k) for k in msg[1]] if isinstance(msg[1], list) else [_text(msg[1])]
            if kind == "pong":
                return "pong"
            if kind == "message" and len(msg) >= 3 and _text(msg[1]) == self.channel:
                keys = msg[2]
                if keys is None:
                    return None
                if isinstance(keys, list):
                    return [_text(k) for k in keys]
                if self.channel != INVALIDATE_CHANNEL:
                    return _text(keys).split("\n")
                return [_text(keys)]

    async def close(self) -> None:
        """Close the connection (tracking state on the server goes with it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing must not fail, nor hang
                await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.disconnect(), 1.0)
