"""The gateway: the one door through which components send commands to Redis.

It labels commands for the ledger, refuses instantly (no network) while the hub is not in
distributed mode, turns redis-py's errors into lowtide's typed errors, and tells the hub when
the server stopped answering so the hub can degrade and start reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from lowtide.blocklist import TenantBlockList
from lowtide.context import Attribution, _attribution
from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.ledger import Ledger, command_name
from lowtide.redis.client import make_client
from lowtide.redis.cluster import key_on_node, make_cluster_client, primaries
from lowtide.redis.deadline import batch_weight, deadline, round_trip_allowance, round_trip_cap
from lowtide.redis.info import parse_commandstats
from lowtide.redis.scripts import Script
from lowtide.redis.sends import OBSERVERS, Sent, notify, observe_sends
from lowtide.settings import Settings

__all__ = ["QUEUE_TIMEOUT", "Dedicated", "Gateway", "Sent", "observe_sends"]

log = logging.getLogger("lowtide")

#: longest a command waits for a free connection before RedisUnavailable(reason="busy"); an
#: outage drains the queue fast (the gateway closes and waiting callers are refused at once)
QUEUE_TIMEOUT = 30.0


_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, OSError, TimeoutError)
#: every error a send may raise: redis-py's (RedisClusterException is not a RedisError), I/O
_DRIVER = (rexc.RedisError, rexc.RedisClusterException, OSError, TimeoutError)
# redis-py strips the error code from replies it maps to its own classes; put it back
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (rexc.OutOfMemoryError, "OOM"),
    (rexc.ReadOnlyError, "READONLY"),
    (rexc.NoScriptError, "NOSCRIPT"),
    (rexc.BusyLoadingError, "LOADING"),
    (rexc.NoPermissionError, "NOPERM"),
    (rexc.ExecAbortError, "EXECABORT"),
)


class Dedicated(Protocol):
    """A connection of its own that pipelines commands (:class:`~lowtide.redis.writer.
    WriterConnection`): raw replies, error replies raised (``call``) or in place."""

    async def call(self, *args: Any) -> Any:
        """One command's raw reply."""

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Raw replies of ``commands`` sent in one write."""


def _code_of(exc: BaseException) -> str | None:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return None


def _reply_options(args: Sequence[Any]) -> dict[str, Any]:
    """What redis-py needs to hand back the raw reply of ``args``: ``SET ... GET`` answers
    the value it replaced, which redis-py's SET parser would turn into a bool."""
    if (
        len(args) > 3
        and str(args[0]).upper() == "SET"
        and any(isinstance(a, str) and a.upper() == "GET" for a in args[3:])
    ):
        return {"get": True}
    return {}


class Gateway:
    """Sends commands for components; see the module docs."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        ledger: Ledger,
        *,
        upstash: bool = False,
        on_failure: Callable[[BaseException], None] | None = None,
        max_in_flight: int = 32,
        queue_timeout: float = QUEUE_TIMEOUT,
        op_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.upstash = upstash
        #: False while the hub is degraded or suspended: calls fail fast without I/O
        self.open = True
        self.closed_reason = "degraded"
        #: tenants over their command quota: their commands are refused without I/O
        self.blocked = TenantBlockList()
        self._on_failure = on_failure
        #: commands in flight are capped at the pool's size; more callers wait their turn (in
        #: order, up to ``queue_timeout``) instead of exhausting the pool, which redis-py would
        #: report as a ConnectionError, i.e. as an outage
        self._slots = asyncio.Semaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self.queue_timeout = queue_timeout
        #: callers waiting for a free connection right now, and the most ever seen
        self.queued = 0
        self.max_queued = 0
        #: bound of one command, connection set-up included, in responsive loop time (see
        #: :mod:`lowtide.redis.deadline`); None leaves it to the client's socket timeouts
        self.op_timeout = op_timeout
        self.op_cap = round_trip_cap(op_timeout) if op_timeout is not None else 0.0

    @classmethod
    def connect(
        cls,
        settings: Settings,
        ledger: Ledger,
        *,
        cluster: bool = False,
        on_failure: Callable[[BaseException], None] | None = None,
        blocked: TenantBlockList | None = None,
    ) -> Gateway:
        r"""A gateway over a new counting client (a cluster client with ``cluster=True``,
        which must then be :meth:`initialize`\ d); connections open on first use."""
        backstop = round_trip_cap(settings.op_timeout) + 1.0  # the gateway's deadline fires first
        client = (
            make_cluster_client(settings, ledger, backstop=backstop)
            if cluster
            else make_client(
                settings, ledger, socket_timeout=backstop, socket_connect_timeout=backstop
            )
        )
        gw = cls(
            client,
            ledger,
            upstash=settings.provider == "upstash",
            on_failure=on_failure,
            max_in_flight=settings.max_connections,
            op_timeout=settings.op_timeout,
        )
        if blocked is not None:
            gw.blocked = blocked
        return gw

    async def initialize(self) -> None:
        """Discover a cluster's topology (no-op for a single server)."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()

    @property
    def cluster(self) -> bool:
        """True when the server is a Redis Cluster (commands are routed by key slot)."""
        return isinstance(self.client, RedisCluster)

    def primaries(self) -> list[tuple[str, int]] | None:
        """The cluster's primaries (``None`` for a single server)."""
        return primaries(self.client) if isinstance(self.client, RedisCluster) else None

    def key_on_node(self, make: Callable[[int], str], host: str, port: int) -> str:
        """A key made by ``make(i)`` that lives on the primary ``host:port``."""
        if not isinstance(self.client, RedisCluster):
            return make(0)
        return key_on_node(self.client, make, host, port)

    async def commandstats(self, attribution: Attribution) -> dict[str, int]:
        """The server's ``INFO commandstats`` (summed over every primary of a cluster)."""
        if not isinstance(self.client, RedisCluster):
            return parse_commandstats(await self.call(attribution, "INFO", "commandstats"))
        async with self._sending(attribution, "info", data=False):
            per_node = await self.client.execute_command(
                "INFO", "commandstats", target_nodes=RedisCluster.PRIMARIES
            )
        total: dict[str, int] = {}
        replies = per_node.values() if isinstance(per_node, dict) else [per_node]
        for reply in replies:
            for k, v in parse_commandstats(reply).items():
                total[k] = total.get(k, 0) + v
        return total

    async def scan(self, attribution: Attribution, pattern: str) -> list[Any]:
        """Every key matching ``pattern`` (on every primary of a cluster)."""
        async with self._sending(attribution, "scan", data=False):
            return [k async for k in self.client.scan_iter(match=pattern, count=1000)]

    async def disconnect(self) -> None:
        """Close every pooled connection (they reopen on demand)."""
        if isinstance(self.client, RedisCluster):
            for node in self.client.get_nodes():
                await node.disconnect()
        else:
            await self.client.connection_pool.disconnect()

    def _send(self, *args: Any) -> Awaitable[Any]:
        # redis-py's execute_command is untyped; this is its one typed entry point here
        send: Callable[..., Awaitable[Any]] = self.client.execute_command
        return send(*args, **_reply_options(args))

    def _refuse(self) -> RedisUnavailable:
        return RedisUnavailable(f"redis is {self.closed_reason}", reason=self.closed_reason)

    def _over_quota(self, attribution: Attribution) -> bool:
        return attribution.tenant is not None and attribution.tenant in self.blocked

    def _quota_refusal(self, attribution: Attribution) -> RedisUnavailable:
        return RedisUnavailable(
            f"tenant {attribution.tenant!r} is over its command quota: local-only",
            reason="quota",
        )

    def _translate(self, exc: BaseException, command: str) -> Exception:
        if isinstance(exc, _UNAVAILABLE):
            if self._on_failure is not None:
                self._on_failure(exc)
            reason = (
                "timeout" if isinstance(exc, rexc.TimeoutError | TimeoutError) else "unreachable"
            )
            return RedisUnavailable(f"{command}: {exc}", reason=reason)
        if isinstance(exc, rexc.ResponseError):
            return RedisCommandError(str(exc), command=command, code=_code_of(exc))
        return RedisCommandError(f"{type(exc).__name__}: {exc}", command=command)

    @contextlib.asynccontextmanager
    async def _sending(
        self,
        attribution: Attribution,
        command: str | tuple[Any, ...],
        *,
        data: bool,
        slot: bool = True,
        items: int = 1,
    ) -> AsyncIterator[None]:
        """Around every send: refuse data traffic without I/O while closed or over quota,
        wait for a free connection (``slot``: from the pool), label the commands for the
        ledger, and translate driver errors (once, here).

        ``command`` names the command in errors (the args tuple is named only on failure);
        ``items`` is how many commands or keys the round trip carries (its deadline grows
        with it, :data:`~lowtide.redis.deadline.PER_ITEM`)."""
        if data:
            if not self.open:
                raise self._refuse()
            if self.blocked and self._over_quota(attribution):
                raise self._quota_refusal(attribution)
        if slot:
            await self._take_slot()
        token = _attribution.set(attribution)
        observed = (time.time_ns(), time.perf_counter()) if OBSERVERS else None
        failed: BaseException | None = None
        try:
            if data and not self.open:  # closed while this caller waited
                raise self._refuse()
            if self.op_timeout is None:
                yield
            else:
                extra = round_trip_allowance(items)
                async with deadline(self.op_timeout + extra, cap=self.op_cap + extra):
                    yield
        except _DRIVER as exc:
            name = command if isinstance(command, str) else command_name(command)
            failed = self._translate(exc, name)
            raise failed from exc
        except BaseException as exc:
            failed = exc
            raise
        finally:
            _attribution.reset(token)
            if slot:
                self._slots.release()
            if observed is not None:
                name = command if isinstance(command, str) else command_name(command)
                took = time.perf_counter() - observed[1]
                sent = Sent(self.ledger, attribution, name, observed[0], took, failed, not slot)
                notify(sent)

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a connection is free: no wait
            return
        self.queued += 1
        self.max_queued = max(self.max_queued, self.queued)
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisUnavailable(
                f"every connection stayed busy for {self.queue_timeout:g}s "
                f"({self.queued} callers waiting)",
                reason="busy",
            ) from None
        finally:
            self.queued -= 1

    async def call(self, attribution: Attribution, *args: Any) -> Any:
        """Run one command labelled with ``attribution``; returns the raw reply."""
        async with self._sending(attribution, args, data=True):
            return await self._send(*args)

    async def call_on(self, conn: Dedicated, attribution: Attribution, *args: Any) -> Any:
        """:meth:`call` on a dedicated pipelined connection (the listener's writer), which
        needs no slot of the pool; its own loss raises its own error, untranslated."""
        async with self._sending(attribution, args, data=True, slot=False):
            return await conn.call(*args)

    async def pipeline_on(
        self, conn: Dedicated, attribution: Attribution, commands: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """:meth:`pipeline` (error replies in place) on a dedicated connection."""
        size = batch_weight(commands)
        async with self._sending(attribution, "pipeline", data=True, slot=False, items=size):
            replies = await conn.call_many(commands)
        return [
            RedisCommandError(str(r), command=command_name(c), code=_code_of(r))
            if isinstance(r, rexc.ResponseError)
            else r
            for r, c in zip(replies, commands, strict=True)
        ]

    async def mget(self, attribution: Attribution, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys``: 1 MGET on one server; on a cluster one MGET per hash slot,
        sent to every node in one round trip (a cross-slot MGET is refused there)."""
        async with self._sending(attribution, "mget", data=True, items=len(keys)):
            if not isinstance(self.client, RedisCluster):
                return list(await self._send("MGET", *keys))
            return list(await self.client.mget_nonatomic(list(keys)))

    async def control(self, attribution: Attribution, *args: Any) -> Any:
        """Run a control-plane command even while closed (kill switch, listener self-test).

        Data traffic never takes this path: suspension stops it, not lowtide's own switch.
        """
        return await self._execute(attribution, args)

    async def probe(self, attribution: Attribution) -> None:
        """PING even while closed: how the hub learns that Redis is back."""
        await self._execute(attribution, ("PING",))

    async def _execute(self, attribution: Attribution, args: tuple[Any, ...]) -> Any:
        async with self._sending(attribution, args, data=False):
            return await self._send(*args)

    async def pipeline(
        self,
        attribution: Attribution,
        commands: Sequence[Sequence[Any]],
        *,
        transaction: bool = False,
    ) -> list[Any]:
        """Send ``commands`` in one round trip (each is still one command on the server).

        Error replies are returned in place (as :class:`RedisCommandError`), not raised.
        """
        async with self._sending(attribution, "pipeline", data=True, items=batch_weight(commands)):
            pipe = self.client.pipeline(transaction=transaction)
            for cmd in commands:
                pipe.execute_command(*cmd, **_reply_options(cmd))
            replies = await pipe.execute(raise_on_error=False)
        return [
            RedisCommandError(str(r), command=command_name(c), code=_code_of(r))
            if isinstance(r, rexc.ResponseError)
            else r
            for r, c in zip(replies, commands, strict=True)
        ]

    async def run_script(
        self,
        attribution: Attribution,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any] = (),
    ) -> Any:
        """Run ``script`` with EVALSHA (EVAL after NOSCRIPT); count its inner commands."""
        async with self._sending(attribution, "evalsha", data=True):
            try:
                reply = await self._send(
                    "EVALSHA", script.sha(upstash=self.upstash), len(keys), *keys, *args
                )
            except rexc.NoScriptError:
                reply = await self._send(
                    "EVAL", script.body(upstash=self.upstash), len(keys), *keys, *args
                )
        if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
            raise RedisCommandError(
                f"script {script.name!r} did not return {{result, inner}}", command="evalsha"
            )
        result, inner = reply
        counts: dict[str, int] = {}
        for raw in inner:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            counts[name] = counts.get(name, 0) + 1
        if counts:
            self.ledger.record_inner(counts, attribution)
        return result

    async def aclose(self) -> None:
        """Close every connection of the pool."""
        self.open = False
        self.closed_reason = "closed"
        if isinstance(self.client, RedisCluster):
            await self.client.aclose()
        else:
            await self.client.aclose(close_connection_pool=True)
