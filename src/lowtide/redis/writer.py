"""The writer connection: cache writes whose invalidation the server does not push back.

With CLIENT TRACKING, the listener (:mod:`lowtide.redis.tracking`) only subscribes; the BCAST
registration lives on this second connection, which redirects every push to the listener::

    INFO server                                 -> is NOLOOP safe here? (see noloop_safe)
    CLIENT TRACKING ON REDIRECT <listener id> BCAST NOLOOP PREFIX <p1> PREFIX <p2> ...

``NOLOOP`` leaves out of every push the keys whose last modifier in the server's event-loop
cycle is this connection (the server remembers, per modified key, the last client that changed
it in the cycle). So a cache write sent here is not pushed back to its own process, while a
write by anyone else, before or after it, still is, unless ours landed after it in the same
cycle (then ours is the value Redis holds). Expiries and evictions have no modifier: always
pushed. Servers that remembered the *first* modifier instead (Redis before 6.0.15, and 6.2.0
to 6.2.4) could hide another client's later write: :func:`noloop_safe` allows only servers
known to remember the last one.

The connection is shared by every writer of the process and pipelined: a command is packed,
its reply's future queued and its bytes written in one step, and one reader task hands replies
to futures in order, so any number of concurrent writers share it without waiting for each
other. Losing it loses the registration (the listener would hear nothing more): ``on_lost`` is
called before any caller learns of it, and every command in flight fails with
:class:`WriterLost`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from lowtide.context import Attribution, _attribution
from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.ledger import Ledger
from lowtide.redis.client import close_quietly, make_pool, round_trip
from lowtide.redis.info import parse_info
from lowtide.settings import Settings

__all__ = ["WriterConnection", "WriterLost", "noloop_safe"]

log = logging.getLogger("lowtide.invalidation")
WRITER = Attribution("invalidation", "-", None)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class WriterLost(RedisUnavailable):
    """The writer connection is gone (or not up): send the command through the pool instead."""


def noloop_safe(info: dict[str, str]) -> bool:
    """True if the server of ``INFO server`` remembers the *last* modifier of a key in BCAST
    mode (``raxInsert``): every Valkey (forked from Redis 7.2), Redis 7.0+, 6.2.5+ and 6.0.15+
    (redis/redis#9116). Anything else (older Redis, or a server that is not known to be Redis
    or Valkey: Dragonfly, KeyDB, ...) is not trusted."""
    if info.get("server_name") == "valkey" or "valkey_version" in info:
        return True
    if any(k.endswith("_version") and k not in ("redis_version",) for k in info):
        return False  # another server reporting a Redis version (dragonfly_version, ...)
    m = _VERSION.match(info.get("redis_version", ""))
    if m is None:
        return False
    v = (int(m[1]), int(m[2]), int(m[3]))
    return v >= (7, 0, 0) or (6, 2, 5) <= v < (6, 3, 0) or (6, 0, 15) <= v < (6, 1, 0)


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class WriterConnection:
    """One pipelined connection carrying the BCAST NOLOOP registration (see module docs)."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger | None,
        *,
        on_lost: Callable[[str], None],
        now: Callable[[], float],
    ) -> None:
        self._pool = make_pool(settings, ledger, max_connections=1)
        self._conn: AbstractConnection | None = None
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._on_lost = on_lost
        self._now = now
        self._up = False
        self._aborted = False
        #: the reader task: ends (raising :class:`WriterLost`) when the connection is lost
        self.reader: asyncio.Task[None] | None = None
        #: when the last reply arrived (``now`` clock)
        self.heard = 0.0

    @property
    def up(self) -> bool:
        """True while registered and connected: writes sent now are not pushed back."""
        return self._up

    async def _setup(self, *args: Any) -> Any:
        """One command before the reader runs (send, then read its reply)."""
        if self._conn is None or self._aborted:
            raise WriterLost("writer connection is closed")
        return await round_trip(self._conn, WRITER, *args)

    async def open(self, redirect: int, prefixes: Sequence[str]) -> bool:
        """Connect, read ``INFO server`` and, where :func:`noloop_safe`, register BCAST NOLOOP
        tracking of ``prefixes`` redirected to client ``redirect``. False (and closed): not
        safe here, the listener tracks as before. Raises on failure."""
        try:
            get: Callable[[], Awaitable[AbstractConnection]] = self._pool.get_connection
            self._conn = await get()
            # the write path must put bytes on the socket in the caller's step (no task)
            self._conn.socket_timeout = None
            try:
                info = parse_info(await self._setup("INFO", "server"))
            except rexc.ResponseError:  # INFO not allowed (an ACL): cannot tell
                info = {}
            if not noloop_safe(info):
                await self.close()
                return False
            args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "BCAST"]
            args.append("NOLOOP")
            for p in prefixes:
                args += ["PREFIX", p]
            await self._setup(*args)
        except rexc.ResponseError as exc:
            await self.close()
            raise RedisCommandError(str(exc), command="client|tracking") from exc
        except (rexc.ConnectionError, rexc.TimeoutError, OSError, TimeoutError) as exc:
            await self.close()
            raise RedisUnavailable(f"writer connection: {exc}") from exc
        self.heard = self._now()
        self._up = True
        self.reader = asyncio.get_running_loop().create_task(self._read_loop(self._conn))
        return True

    # -- commands --------------------------------------------------------------------------------
    def _send(self, commands: Sequence[Sequence[Any]]) -> tuple[list[asyncio.Future[Any]], Any]:
        """Pack ``commands`` (noted for the ledger under the current attribution), queue one
        future per reply and start writing, all in this step; returns the futures and the
        write to await."""
        conn = self._conn
        if conn is None or not self._up:
            raise WriterLost("writer connection is not up")
        if not conn.is_connected:  # redis-py would reconnect: a new connection, unregistered
            self._lost("writer connection lost")
            raise WriterLost("writer connection lost")
        packed: list[bytes] = []
        for cmd in commands:
            packed += conn.pack_command(*cmd)
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in commands]
        for fut in futs:
            fut.add_done_callback(_retrieved)
        self._pending.extend(futs)
        return futs, conn.send_packed_command(packed, check_health=False)

    async def call(self, *args: Any) -> Any:
        """Send one command; its raw reply. Error replies raise ``redis``'s ResponseError;
        a lost connection raises :class:`WriterLost` (the command may have run)."""
        (fut,), sent = self._send((args,))
        await self._written(sent)
        reply = await fut
        if isinstance(reply, rexc.ResponseError):
            raise reply
        return reply

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; their raw replies, error replies in place (as
        ``redis``'s ResponseError). Raises :class:`WriterLost` when the connection is lost."""
        futs, sent = self._send(commands)
        await self._written(sent)
        return [await fut for fut in futs]

    async def ping(self) -> None:
        """Send a keepalive PING (its reply only updates :attr:`heard`)."""
        token = _attribution.set(WRITER)
        try:
            _, sent = self._send((("PING",),))
            await self._written(sent)
        finally:
            _attribution.reset(token)

    async def _written(self, sent: Any) -> None:
        try:
            await sent
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            self._lost(f"writer connection lost: {exc}")
            raise WriterLost(f"writer connection lost: {exc}") from exc

    async def _read_loop(self, conn: AbstractConnection) -> None:
        pending = self._pending
        while True:
            try:
                reply: Any = await conn.read_response(timeout=math.inf)
            except rexc.ResponseError as exc:
                reply = exc
            except (rexc.ConnectionError, rexc.TimeoutError, OSError, AttributeError) as exc:
                # AttributeError: redis-py's reader once the connection was closed under it
                why = f"writer connection lost: {exc}"
                self._lost(why)
                raise WriterLost(why) from exc
            self.heard = self._now()
            if not pending:
                self._lost("writer connection: a reply nobody asked for")
                raise WriterLost("writer connection: a reply nobody asked for")
            fut = pending.popleft()
            if not fut.done():
                fut.set_result(reply)

    def _lost(self, why: str) -> None:
        """Tell the listener first (its flush must precede any fallback), then every caller."""
        if self._up and not self._aborted:
            self._up = False
            try:
                self._on_lost(why)
            except Exception:  # never let a callback stop the failure from reaching callers
                log.exception("writer-lost callback failed")
        self._up = False
        pending, self._pending = self._pending, collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(WriterLost(why))

    def abort(self) -> None:
        """Refuse every further command at once (the socket is closed by :meth:`close`)."""
        self._aborted = True
        self._lost("writer connection closed")

    async def close(self) -> None:
        """Close the connection (the registration on the server goes with it)."""
        self._aborted = True
        self._lost("writer connection closed")
        reader, self.reader = self.reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({reader}, timeout=1.0)
        conn, self._conn = self._conn, None
        await close_quietly(conn, self._pool)
