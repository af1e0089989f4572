"""The drop-in client's redis-py side: a ``redis.asyncio.Redis`` subclass whose commands go
through a lowtide engine (:class:`Engine`), and its pipeline.

:class:`DropInRedis` *is* a ``redis.asyncio.Redis``: every command method, type, option and
exception stays redis-py's. Only ``execute_command`` changes: it hands the command to the
engine (:class:`lowtide.dropin.engine.DropInEngine`), which answers cacheable reads from process
memory or sends the command through redis-py's own path (:meth:`DropInRedis.lt_send`).
Replies are held raw (what the parser returned, before response callbacks) and shaped again
by redis-py's ``parse_response`` on every answer (:meth:`DropInRedis.lt_shape`), so
``decode_responses``, ``withscores``, RESP2/RESP3 and every callback keep their meaning.

:class:`DropInPipeline` lets pipelines and transactions run as redis-py runs them (their reads
are always sent, never answered from memory); the engine only learns which cached keys they
may change. :class:`DropInUnavailable` is what a command raises when lowtide will not send
it (Redis unavailable, suspended, local mode, tenant over quota): a
``redis.exceptions.ConnectionError`` (existing ``except`` clauses keep working) and a
:class:`lowtide.RedisUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import ConnectionPool
from redis.client import NEVER_DECODE

from lowtide.errors import RedisUnavailable

__all__ = ["DropInPipeline", "DropInRedis", "DropInUnavailable", "Engine"]

#: the parse_response option that asks for the raw reply (no response callback)
_RAW = "_lowtide_raw"
_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, OSError, TimeoutError)


class DropInUnavailable(RedisUnavailable, rexc.ConnectionError):
    """lowtide did not send the command: Redis is unavailable, suspended or not configured,
    or the tenant is over its command quota (``reason`` says which). Writes always raise it;
    reads raise it only when process memory holds no answer."""


class Engine(Protocol):
    """What the client asks of the lowtide side (see :mod:`lowtide.dropin.engine`)."""

    async def execute(
        self, client: DropInRedis, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """Answer one command (from memory, or by sending it)."""

    async def execute_pipeline(self, pipe: DropInPipeline, raise_on_error: bool) -> list[Any]:
        """Run a pipeline's queued commands."""

    async def immediate(
        self, pipe: DropInPipeline, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """Run a command of a pipeline in immediate (WATCH) mode."""


class _Replay:
    """Hands a held raw reply to redis-py's ``parse_response`` (in place of a connection)."""

    __slots__ = ("_reply",)

    def __init__(self, reply: Any) -> None:
        self._reply = reply

    async def read_response(self, disable_decoding: bool = False, **_: Any) -> Any:
        return self._reply


class DropInRedis(Redis):
    """A ``redis.asyncio.Redis`` whose reads of cached prefixes are answered from process
    memory. Create it with :meth:`lowtide.Lowtide.redis`."""

    def __init__(
        self,
        *,
        lowtide_engine: Engine,
        connection_pool: ConnectionPool,
        single_connection_client: bool = False,
        owns_pool: bool = True,
    ) -> None:
        super().__init__(
            connection_pool=connection_pool, single_connection_client=single_connection_client
        )
        #: the pool is closed by ``aclose()`` (as for ``Redis.from_url``), except for clients
        #: made by :meth:`client`, which share it
        self.auto_close_connection_pool = owns_pool
        self.lt_engine = lowtide_engine
        self._lt_encoder: Any = _encoder(self)
        #: ``str`` arguments go on the wire as strict UTF-8 (their own key form)
        self.lt_utf8 = _is_utf8(self._lt_encoder)
        #: while a MULTI block or a WATCH is open on this single-connection client: the cached
        #: keys its queued commands may change (None: no such block)
        self.lt_direct: list[str] | None = None

    def __repr__(self) -> str:
        return f"<lowtide DropInRedis {self.connection_pool!r}>"

    # -- redis-py entry points ------------------------------------------------------------
    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command: answered from process memory when it is a cached read the engine
        holds, else sent by redis-py."""
        return await self.lt_engine.execute(self, args, options)

    async def parse_response(
        self, connection: Any, command_name: str | bytes, **options: Any
    ) -> Any:
        """redis-py's ``parse_response``, or the raw reply when the engine asked for it."""
        if options.pop(_RAW, False):
            return await connection.read_response(disable_decoding=NEVER_DECODE in options)
        return await super().parse_response(connection, command_name, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> DropInPipeline:
        """A redis-py pipeline (transaction by default) whose writes the engine learns of."""
        return DropInPipeline(
            self.lt_engine, self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    def client(self) -> DropInRedis:
        """A client bound to one connection of this pool (redis-py's ``client()``)."""
        return DropInRedis(
            lowtide_engine=self.lt_engine,
            connection_pool=self.connection_pool,
            single_connection_client=True,
            owns_pool=False,
        )

    # -- what the engine uses ---------------------------------------------------------------
    async def lt_send(
        self, args: Sequence[Any], options: Mapping[str, Any], *, raw: bool = False
    ) -> Any:
        """Send ``args`` through redis-py's normal path; ``raw``: return the parser's reply
        without the response callback."""
        send: Callable[..., Awaitable[Any]] = super().execute_command
        if raw:
            return await send(*args, **options, **{_RAW: True})
        return await send(*args, **options)

    async def lt_shape(self, args: Sequence[Any], reply: Any, options: Mapping[str, Any]) -> Any:
        """What redis-py would have returned for ``args`` given the raw ``reply``."""
        if args[0] not in self.response_callbacks:
            return reply  # no callback: parse_response would return the reply as it is
        return await Redis.parse_response(self, cast(Any, _Replay(reply)), args[0], **options)

    async def lt_send_and_publish(
        self,
        args: Sequence[Any],
        options: Mapping[str, Any],
        publish: Sequence[tuple[Any, ...]],
    ) -> Any:
        """Send a write and the PUBLISH commands that announce it, in one round trip (one
        after the other on a single-connection client); the write's error is raised."""
        if self.single_connection_client:
            send: Callable[..., Awaitable[Any]] = super().execute_command
            result = await send(*args, **options)
            for cmd in publish:
                await send(*cmd)
            return result
        pipe = Pipeline(self.connection_pool, self.response_callbacks, False, None)
        queue: Callable[..., Any] = pipe.pipeline_execute_command
        queue(*args, **options)
        for cmd in publish:
            queue(*cmd)
        replies = await pipe.execute(raise_on_error=False)
        first = replies[0]
        if isinstance(first, Exception):
            raise first
        return first

    def lt_encode(self, arg: Any) -> bytes:
        """``arg`` as the bytes redis-py puts on the wire."""
        return bytes(self._lt_encoder.encode(arg))

    @staticmethod
    def lt_never_decode(options: Mapping[str, Any]) -> bool:
        """True when the caller asked redis-py not to decode the reply."""
        return NEVER_DECODE in options

    @staticmethod
    def lt_unavailable(exc: BaseException) -> bool:
        """True when ``exc`` says the server could not be reached (not an error reply)."""
        return isinstance(exc, _UNAVAILABLE)


def _is_utf8(encoder: Any) -> bool:
    encoding = str(getattr(encoder, "encoding", "")).lower().replace("_", "-")
    return encoding in ("utf-8", "utf8") and getattr(encoder, "encoding_errors", "") == "strict"


def _encoder(client: Redis) -> Any:
    get: Callable[[], Any] = client.get_encoder
    return get()


class DropInPipeline(Pipeline):
    """redis-py's pipeline (and transaction), telling the engine which cached keys its
    commands may change."""

    def __init__(
        self,
        engine: Engine,
        connection_pool: ConnectionPool,
        response_callbacks: Any,
        transaction: bool,
        shard_hint: str | None,
    ) -> None:
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)
        self.lt_engine = engine
        self._lt_encoder: Any = _encoder(self)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run every queued command (see redis-py)."""
        return await self.lt_engine.execute_pipeline(self, raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        """Run a command now (WATCH mode, see redis-py)."""
        return await self.lt_engine.immediate(self, args, options)

    async def lt_execute(
        self, raise_on_error: bool, publish: Sequence[tuple[Any, ...]] = ()
    ) -> list[Any]:
        """redis-py's ``execute``, with ``publish`` commands appended (their replies are not
        returned)."""
        queue: Callable[..., Any] = self.pipeline_execute_command
        for cmd in publish:
            queue(*cmd)
        replies: list[Any] = await super().execute(raise_on_error)
        if publish and len(replies) >= len(publish):
            return replies[: len(replies) - len(publish)]
        return replies

    async def lt_reset(self) -> None:
        """redis-py's ``reset`` (returns the connection, forgets queued commands)."""
        reset: Callable[[], Awaitable[None]] = self.reset
        await reset()

    async def lt_immediate(self, args: Sequence[Any], options: Mapping[str, Any]) -> Any:
        """redis-py's ``immediate_execute_command``."""
        run: Callable[..., Awaitable[Any]] = super().immediate_execute_command
        return await run(*args, **options)

    def lt_encode(self, arg: Any) -> bytes:
        """``arg`` as the bytes redis-py puts on the wire."""
        return bytes(self._lt_encoder.encode(arg))
