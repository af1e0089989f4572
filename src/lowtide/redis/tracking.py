"""The invalidation connection: one dedicated RESP2 connection that receives invalidations.

Tracking set-up (3 commands, counted by the ledger like any other)::

    CLIENT ID                                   -> own id
    CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <p1> PREFIX <p2> ...
    SUBSCRIBE __redis__:invalidate

Keyspace set-up (:mod:`lowtide.redis.keyspace`)::

    CONFIG GET notify-keyspace-events           -> the server's event classes
    CONFIG SET notify-keyspace-events <flags>   (only when a class lowtide needs is missing)
    PSUBSCRIBE __keyspace@<db>__:<p1>* ...

Backplane set-up, where the server has no CLIENT TRACKING (Upstash): ``SUBSCRIBE <channel>``
only; writers PUBLISH the keys they changed, newline-separated (keys built by
:func:`lowtide.keys.build_key` never contain whitespace).

Every message is untrusted (PUBLISH permission is enough to send one), so the work per message
is bounded before anything is decoded (:func:`message_keys`):

* a payload over :data:`MAX_MESSAGE_BYTES` (1 MiB) or with more than :data:`MAX_MESSAGE_KEYS`
  (10,000) keys is read as "flush everything" (``None``), counted in
  :attr:`MessageStats.oversized`: always safe (copies are demoted, not trusted), where dropping
  it could lose a real invalidation. lowtide's own writers never send one (one key per write,
  :func:`publish_batches` splits a batch), and the key a server pushes in one tracking message
  are those changed in one event-loop cycle, so only a huge pipelined write reaches the bound;
* a key that cannot be a tracked lowtide key (another prefix, empty, longer than
  :data:`MAX_KEY_BYTES`) is skipped by a byte comparison, counted in
  :attr:`MessageStats.skipped_keys` (and its message in :attr:`MessageStats.malformed`);
* a message of an unexpected shape is dropped and counted in :attr:`MessageStats.malformed`.

Tracking state lives on this connection (REDIRECT to itself, BCAST), so data connections need no
set-up and losing a pooled data connection loses nothing. RESP2 is used on purpose: with RESP3
the server sends invalidations as push frames that a Pub/Sub reader drops (the cashews + redis-py
8 stale-data bug); the hub's start-up self-test proves a write really produces a message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis import exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from lowtide._untrusted import Warnings, shown
from lowtide.context import Attribution, _attribution
from lowtide.errors import RedisCommandError, RedisUnavailable
from lowtide.keys import MAX_KEY_LENGTH, MAX_TENANT_LENGTH
from lowtide.ledger import Ledger
from lowtide.redis import keyspace as ks
from lowtide.redis.client import close_quietly, make_pool, round_trip
from lowtide.settings import Settings

__all__ = [
    "INVALIDATE_CHANNEL",
    "MAX_KEY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_KEYS",
    "MessageStats",
    "TrackingConnection",
    "message_keys",
    "publish_batches",
]

INVALIDATE_CHANNEL = "__redis__:invalidate"
LISTENER = Attribution("invalidation", "-", None)
log = logging.getLogger("lowtide.invalidation")

#: the longest key :func:`lowtide.keys.build_key` can make, in bytes: namespace (64), name and
#: key (4096 each), tenant (256) characters, each at worst an escaped 3-byte character
#: (``%E3%80%80``, 9 bytes), plus the four separators and a hash tag
MAX_KEY_BYTES: Final = 9 * (64 + 2 * MAX_KEY_LENGTH + MAX_TENANT_LENGTH) + 6
#: the largest pushed payload whose keys are read one by one (larger: "flush everything");
#: more than ten of the longest possible keys
MAX_MESSAGE_BYTES: Final = 1 << 20
#: the most keys read from one message (more: "flush everything"); about 25 ms of dispatch
MAX_MESSAGE_KEYS: Final = 10_000


@dataclass(slots=True)
class MessageStats:
    """What the listener refused in pushed messages (shared by a listener's connections)."""

    #: messages over :data:`MAX_MESSAGE_BYTES` or :data:`MAX_MESSAGE_KEYS`: read as a flush
    oversized: int = 0
    #: messages of an unexpected shape, or holding at least one key that is not lowtide's
    malformed: int = 0
    #: keys skipped: not under a tracked prefix, empty, or longer than :data:`MAX_KEY_BYTES`
    skipped_keys: int = 0
    warnings: Warnings = field(default_factory=lambda: Warnings(log), repr=False)

    def to_dict(self) -> dict[str, int]:
        """The counters."""
        return {
            "oversized": self.oversized,
            "malformed": self.malformed,
            "skipped_keys": self.skipped_keys,
        }


def message_keys(
    payload: object, prefixes: tuple[bytes, ...], stats: MessageStats, *, split: bool
) -> list[str] | None:
    """The keys of one pushed message (see module docs), or None for "flush everything".

    ``payload`` is what the server sent: a list of keys (a tracking message) or one bulk
    string, which holds newline-separated keys when ``split`` (the pub/sub backplane). Keys not
    under ``prefixes`` are skipped. Bounded work: sizes are checked before anything is decoded.
    """
    if isinstance(payload, bytes):
        if len(payload) > MAX_MESSAGE_BYTES:
            _oversized(stats, f"{len(payload)} bytes")
            return None
        if split:
            lines = payload.count(b"\n")
            if lines >= MAX_MESSAGE_KEYS:
                _oversized(stats, f"{lines + 1} keys")
                return None
            raw: Iterable[object] = payload.split(b"\n")
        else:
            raw = (payload,)
    elif isinstance(payload, list):
        if len(payload) > MAX_MESSAGE_KEYS:
            _oversized(stats, f"{len(payload)} keys")
            return None
        if sum(len(k) for k in payload if isinstance(k, bytes)) > MAX_MESSAGE_BYTES:
            _oversized(stats, "over 1 MiB of keys")
            return None
        raw = payload
    else:
        stats.malformed += 1
        stats.warnings.warn(
            "shape", "invalidation message of an unexpected shape ignored: %s", shown(payload)
        )
        return []
    keys: list[str] = []
    skipped = 0
    bad: object = None
    for k in raw:
        if isinstance(k, bytes) and 0 < len(k) <= MAX_KEY_BYTES and k.startswith(prefixes):
            keys.append(k.decode("utf-8", "surrogateescape"))
        else:
            skipped += 1
            bad = k
    if skipped:
        stats.skipped_keys += skipped
        stats.malformed += 1
        stats.warnings.warn(
            "keys",
            "invalidation message with %d key(s) that are not lowtide's, skipped (e.g. %s)",
            skipped,
            shown(bad),
        )
    return keys


def _oversized(stats: MessageStats, what: str) -> None:
    """Count and (rate-limited) log a message over the bounds; the caller flushes."""
    stats.oversized += 1
    stats.warnings.warn(
        "oversized",
        "invalidation message over the bounds (%s): flushing process memory instead of "
        "reading it (limits: %d bytes, %d keys)",
        what,
        MAX_MESSAGE_BYTES,
        MAX_MESSAGE_KEYS,
    )


def publish_batches(keys: Sequence[str]) -> list[str]:
    """Backplane payloads for ``keys``: newline-joined, each within :data:`MAX_MESSAGE_KEYS`
    keys and :data:`MAX_MESSAGE_BYTES` bytes, so a reader never takes one for a flush."""
    out: list[str] = []
    batch: list[str] = []
    size = 0
    for k in keys:
        n = len(k.encode("utf-8", "surrogateescape")) + 1
        if batch and (len(batch) >= MAX_MESSAGE_KEYS or size + n > MAX_MESSAGE_BYTES):
            out.append("\n".join(batch))
            batch, size = [], 0
        batch.append(k)
        size += n
    if batch:
        out.append("\n".join(batch))
    return out


async def _keep(response: Any) -> Any:
    """RESP3 invalidation push handler that hands the frame back to the reader."""
    return response


def _text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


class TrackingConnection:
    """A connection in BCAST tracking mode; :meth:`read` yields invalidated keys."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger | None,
        *,
        resp3: bool = False,
        stats: MessageStats | None = None,
    ) -> None:
        # no socket timeout: reads block until a message or a keepalive PONG arrives
        #: RESP3: invalidations arrive as push frames on this connection (HELLO 3, no REDIRECT)
        self.resp3 = resp3
        #: what :meth:`read` refused (see :func:`message_keys`)
        self.stats = stats if stats is not None else MessageStats()
        self._prefixes: tuple[bytes, ...] = ()
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
        #: keyspace mode: the channel prefix before each key (None in the other modes)
        self._keyspace: bytes | None = None
        #: keyspace mode: the channels whose TTL-only events are reported (flush sentinels)
        self._watched: frozenset[bytes] = frozenset()

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
        reply = await round_trip(self._conn, LISTENER, *args)
        if isinstance(reply, rexc.ResponseError):
            raise RedisCommandError(str(reply), command=_text(args[0]).lower())
        return reply

    async def open(
        self,
        prefixes: Sequence[str],
        *,
        backplane: str | None = None,
        track: Callable[[int], Awaitable[bool]] | None = None,
        keyspace: bool = False,
        watched: Sequence[str] = (),
    ) -> None:
        """Connect, turn BCAST tracking on for ``prefixes`` and subscribe (raises on failure).

        With ``backplane`` set, skip tracking and subscribe to that pub/sub channel instead.
        With ``track``, ``await track(own id)`` may register the tracking elsewhere (a writer
        connection redirecting here: :mod:`lowtide.redis.writer`); when it returns False this
        connection registers itself. With ``keyspace``, turn on the event classes keyspace
        invalidation needs and subscribe to the keyspace channels of ``prefixes`` instead; the
        TTL-only events of the ``watched`` keys are read as :class:`~lowtide.redis.keyspace.
        Checked` (the fleet's flush sentinels), every other one is skipped. Pushed keys outside
        ``prefixes`` are skipped by :meth:`read`.
        """
        self._prefixes = tuple(p.encode("utf-8") for p in prefixes)
        try:
            get: Callable[[], Awaitable[AbstractConnection]] = self._pool.get_connection
            self._conn = await get()
            if self._aborted:
                raise RedisUnavailable("tracking connection is closed")
            if keyspace:
                await self._subscribe_keyspace(prefixes)
                prefix = self._keyspace or b""
                self._watched = frozenset(prefix + k.encode("utf-8") for k in watched)
                return
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
                if track is None or not await track(self.client_id):
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

    async def _subscribe_keyspace(self, prefixes: Sequence[str]) -> None:
        try:
            reply = await self._cmd("CONFIG", "GET", "notify-keyspace-events")
            current = ""
            if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
                current = _text(reply[1])
            elif reply:  # anything but the two-element answer (or nothing: not configurable)
                raise RedisCommandError(f"unexpected reply {shown(reply)}", command="config")
            missing = ks.missing_flags(current)
            if missing:
                await self._cmd("CONFIG", "SET", "notify-keyspace-events", current + missing)
        except (RedisCommandError, rexc.ResponseError) as exc:
            raise RedisCommandError(
                "keyspace notifications need notify-keyspace-events to hold "
                f"{ks.REQUIRED_FLAGS!r}, and reading or setting it failed ({exc}): allow "
                "CONFIG GET and CONFIG SET, or set it on the server and allow CONFIG GET",
                command="config",
            ) from exc
        if missing:
            log.info(
                "keyspace notifications: notify-keyspace-events %r -> %r (classes lowtide needs)",
                current,
                current + missing,
            )
        db = int(self._pool.connection_kwargs.get("db") or 0)
        self._keyspace = ks.channel_prefix(db).encode()
        reply = await self._cmd("PSUBSCRIBE", *(ks.pattern(db, p) for p in prefixes))
        if not (isinstance(reply, list) and reply and _text(reply[0]).lower() == "psubscribe"):
            raise RedisCommandError(
                f"unexpected PSUBSCRIBE reply {shown(reply)}", command="psubscribe"
            )

    def _keyspace_message(self, channel: object, event: object) -> list[str] | None:
        """The key a keyspace message names (``[]`` for a TTL-only event or a channel that is
        not a keyspace channel of this database)."""
        prefix = self._keyspace or b""
        if not (isinstance(channel, bytes) and channel.startswith(prefix)):
            self.stats.malformed += 1
            self.stats.warnings.warn(
                "shape", "keyspace message on an unexpected channel ignored: %s", shown(channel)
            )
            return []
        if not ks.is_invalidation(event):
            if channel in self._watched and event in ks.TTL_ONLY_EVENTS:  # a sentinel checked
                return ks.Checked([channel[len(prefix) :].decode("utf-8")])
            return []
        keys = message_keys(channel[len(prefix) :], self._prefixes, self.stats, split=False)
        return ks.Expired(keys) if keys and event == b"expired" else keys

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
                return message_keys(msg[1], self._prefixes, self.stats, split=False)
            if kind == "pong":
                return "pong"
            if kind == "pmessage" and self._keyspace is not None and len(msg) >= 4:
                return self._keyspace_message(msg[2], msg[3])
            if kind == "message" and len(msg) >= 3 and _text(msg[1]) == self.channel:
                if msg[2] is None:
                    return None
                split = self.channel != INVALIDATE_CHANNEL
                return message_keys(msg[2], self._prefixes, self.stats, split=split)

    async def close(self) -> None:
        """Close the connection (tracking state on the server goes with it)."""
        conn, self._conn = self._conn, None
        await close_quietly(conn, self._pool)
