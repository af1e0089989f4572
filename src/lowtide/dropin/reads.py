"""Which commands the drop-in client may answer from process memory, and which keys they name.

Pure functions and tables, no I/O and no redis-py: the client hands over the command's
arguments and its encoder (``encode(arg) -> bytes``, the same one that puts them on the wire).

* :data:`CACHED` lists the read commands answered from L1: deterministic reads of one key at
  ``args[1]`` (GET, HGET, HGETALL, SMEMBERS, LRANGE, ZRANGE, ...), plus MGET and EXISTS, whose
  keys are every argument and which are answered key by key.
* :data:`READ_ONLY` are the other commands that change nothing (SCAN, TTL, PING, ...): they pass
  through and invalidate nothing. Every command in neither table is taken for a write.
* A write invalidates **every argument under a cached prefix** (:meth:`Prefixes.touched`),
  not only its keys: no per-command key table is needed (a value that happens to look like a
  cached key only costs one extra read of that key), and an unknown or new command is still
  safe.
* Keys are compared as the bytes that go on the wire, decoded as UTF-8 with
  ``surrogateescape`` (exactly how the invalidation listener decodes pushed keys), so a key
  given as ``str``, ``bytes`` or ``int`` is one key. A key longer than
  :data:`~lowtide.redis.tracking.MAX_KEY_BYTES` is never cached (the listener ignores such
  pushes), nor, in pub/sub mode, a key holding a newline (backplane messages are
  newline-separated).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

from lowtide.context import Attribution, _tenant
from lowtide.errors import ConfigError
from lowtide.redis.tracking import MAX_KEY_BYTES

__all__ = [
    "CACHED",
    "MULTI_KEY",
    "READ_ONLY",
    "Plan",
    "Prefixes",
    "check_prefixes",
    "command_of",
]

Encode = Callable[[Any], bytes]

#: reads of one key (``args[1]``) answered from L1: deterministic, and changed only by writes
#: to that key (each is pushed by the server)
SINGLE_KEY: Final = frozenset(
    {
        "GET",
        "GETRANGE",
        "SUBSTR",
        "STRLEN",
        "GETBIT",
        "BITCOUNT",
        "BITPOS",
        "TYPE",
        "HGET",
        "HMGET",
        "HGETALL",
        "HEXISTS",
        "HLEN",
        "HKEYS",
        "HVALS",
        "HSTRLEN",
        "SMEMBERS",
        "SISMEMBER",
        "SMISMEMBER",
        "SCARD",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "LPOS",
        "ZSCORE",
        "ZMSCORE",
        "ZRANGE",
        "ZREVRANGE",
        "ZRANGEBYSCORE",
        "ZREVRANGEBYSCORE",
        "ZRANGEBYLEX",
        "ZREVRANGEBYLEX",
        "ZCARD",
        "ZCOUNT",
        "ZLEXCOUNT",
        "ZRANK",
        "ZREVRANK",
    }
)
#: reads whose keys are all their arguments, answered key by key
MULTI_KEY: Final = frozenset({"MGET", "EXISTS"})
CACHED: Final = SINGLE_KEY | MULTI_KEY

#: commands that change no key (they pass through and invalidate nothing)
READ_ONLY: Final = CACHED | frozenset(
    {
        "PING",
        "ECHO",
        "INFO",
        "TIME",
        "DBSIZE",
        "LASTSAVE",
        "ROLE",
        "COMMAND",
        "CLIENT",
        "CONFIG",
        "SLOWLOG",
        "LATENCY",
        "MEMORY",
        "OBJECT",
        "DUMP",
        "TTL",
        "PTTL",
        "EXPIRETIME",
        "PEXPIRETIME",
        "KEYS",
        "SCAN",
        "SSCAN",
        "HSCAN",
        "ZSCAN",
        "RANDOMKEY",
        "SRANDMEMBER",
        "ZRANDMEMBER",
        "HRANDFIELD",
        "SINTER",
        "SUNION",
        "SDIFF",
        "SINTERCARD",
        "ZINTER",
        "ZUNION",
        "ZDIFF",
        "ZINTERCARD",
        "LCS",
        "XRANGE",
        "XREVRANGE",
        "XLEN",
        "XREAD",
        "XINFO",
        "XPENDING",
        "GEODIST",
        "GEOHASH",
        "GEOPOS",
        "GEOSEARCH",
        "GEORADIUS_RO",
        "GEORADIUSBYMEMBER_RO",
        "BITFIELD_RO",
        "SORT_RO",
        "PFCOUNT",
        "PUBLISH",
        "SPUBLISH",
        "PUBSUB",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PSUBSCRIBE",
        "PUNSUBSCRIBE",
        "WATCH",
        "UNWATCH",
        "MULTI",
        "DISCARD",
        "SCRIPT",
        "FUNCTION",
        "WAIT",
        "WAITAOF",
        "READONLY",
        "READWRITE",
        "HELLO",
        "AUTH",
        "QUIT",
        "RESET",
    }
)
#: commands after which nothing held can be trusted (every copy is dropped)
FLUSHING: Final = frozenset({"FLUSHDB", "FLUSHALL", "SWAPDB", "SELECT"})
#: commands whose first argument is not a key (their ledger family is ``-``)
_KEYLESS: Final = frozenset(
    {
        "PING",
        "ECHO",
        "INFO",
        "TIME",
        "DBSIZE",
        "LASTSAVE",
        "ROLE",
        "COMMAND",
        "CLIENT",
        "CONFIG",
        "SLOWLOG",
        "LATENCY",
        "MEMORY",
        "KEYS",
        "SCAN",
        "RANDOMKEY",
        "PUBLISH",
        "SPUBLISH",
        "PUBSUB",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PSUBSCRIBE",
        "PUNSUBSCRIBE",
        "MULTI",
        "EXEC",
        "DISCARD",
        "UNWATCH",
        "SCRIPT",
        "FUNCTION",
        "WAIT",
        "WAITAOF",
        "HELLO",
        "AUTH",
        "QUIT",
        "RESET",
        "SELECT",
        "SWAPDB",
        "FLUSHDB",
        "FLUSHALL",
        "XREAD",
        "XREADGROUP",
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
        "SINTERCARD",
        "ZINTERCARD",
        "ZINTER",
        "ZUNION",
        "ZDIFF",
        "LMPOP",
        "ZMPOP",
        "BLMPOP",
        "BZMPOP",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "DEBUG",
        "ACL",
        "CLUSTER",
    }
)
#: a str key this long is within MAX_KEY_BYTES whatever its characters (4 bytes each at most)
_SHORT: Final = MAX_KEY_BYTES // 4
_ID = re.compile(r"^[0-9a-fA-F-]{16,}$")
_SEGMENT_END = re.compile(r"[:/|.{}]")


def command_of(args: Sequence[Any]) -> str:
    """The command name of ``args`` in upper case (``""`` when it is not a plain name)."""
    if not args:
        return ""
    first = args[0]
    if isinstance(first, str):
        return first.upper()
    if isinstance(first, bytes):
        return first.decode("ascii", "replace").upper()
    return ""


def check_prefixes(prefixes: Iterable[str], namespace: str) -> tuple[str, ...]:
    """``prefixes`` as given, checked: non-empty ``str`` each, none overlapping lowtide's own
    keys (``<namespace>:``), and without those another one already covers (``"a:"`` covers
    ``"a:b:"``; the server refuses overlapping tracking prefixes)."""
    if isinstance(prefixes, str | bytes):
        raise ConfigError("cache_prefixes: give a tuple of prefixes, e.g. ('discovery:',)")
    own = f"{namespace}:"
    out: list[str] = []
    for p in prefixes:
        if not isinstance(p, str) or not p:
            raise ConfigError(f"cache_prefixes: {p!r} is not a non-empty str")
        if len(p.encode("utf-8", "surrogateescape")) > 1024:
            raise ConfigError("cache_prefixes: a prefix is longer than 1024 bytes")
        if p.startswith(own) or own.startswith(p):
            raise ConfigError(
                f"cache_prefixes: {p!r} overlaps lowtide's own keys ({own!r}); lowtide "
                "caches those itself"
            )
        out.append(p)
    return minimal_prefixes(out)


def minimal_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """``prefixes`` without duplicates and without those another one covers, sorted."""
    kept: list[str] = []
    for p in sorted(set(prefixes), key=len):
        if not any(p.startswith(q) for q in kept):
            kept.append(p)
    return tuple(sorted(kept))


class Plan(NamedTuple):
    """How a cacheable read is answered: its keys (wire bytes decoded, see module docs) and,
    per key, the signature of the reply held for it."""

    command: str
    keys: tuple[str, ...]
    #: one per key: ``(never_decode, command, *encoded args)`` (MGET and EXISTS: of the
    #: command for that key alone)
    sigs: tuple[tuple[Any, ...], ...]

    def equivalents(self, i: int, raw: Any) -> dict[tuple[Any, ...], Any]:
        """The replies key ``i``'s reply also gives: a GET's value is that key's MGET element
        and tells EXISTS; an MGET element that is not nil is that key's GET."""
        sig = self.sigs[i]
        out: dict[tuple[Any, ...], Any] = {sig: raw}
        nd, key = sig[0], self.keys[i]
        if self.command == "GET":
            out[(nd, "MGET", key)] = raw
            out[(nd, "EXISTS", key)] = 0 if raw is None else 1
        elif self.command == "MGET" and raw is not None:
            out[(nd, "GET", key)] = raw
            out[(nd, "EXISTS", key)] = 1
        return out

    def assemble(self, raws: Sequence[Any]) -> Any:
        """The reply of the whole command from its keys' replies (in key order)."""
        if self.command == "MGET":
            return list(raws)
        if self.command == "EXISTS":
            return sum(int(r) for r in raws)
        return raws[0]


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _is_id(segment: str) -> bool:
    return any(c.isdigit() for c in segment) or bool(_ID.match(segment)) or len(segment) > 24


class Prefixes:
    """The cached prefixes of one drop-in client, and everything decided from them."""

    __slots__ = ("_bytes", "_families", "_str", "component", "prefixes")

    def __init__(self, prefixes: tuple[str, ...], component: str) -> None:
        self.prefixes = prefixes
        self._str = prefixes
        self._bytes = tuple(p.encode("utf-8", "surrogateescape") for p in prefixes)
        self.component = component
        self._families: dict[str, str] = {}

    def cached_key(
        self, arg: Any, encode: Encode, *, newline_ok: bool, utf8: bool = False
    ) -> str | None:
        """The key ``arg`` names if its reply may be held (under a prefix, not too long, and
        without a newline unless ``newline_ok``), else None. ``utf8``: the client encodes
        ``str`` as strict UTF-8, so a ``str`` is its own wire form (no encoding needed)."""
        if isinstance(arg, str):
            if not arg.startswith(self._str):
                return None
            if utf8 and len(arg) <= _SHORT:
                return arg if newline_ok or "\n" not in arg else None
        b = encode(arg)
        if not b.startswith(self._bytes) or len(b) > MAX_KEY_BYTES:
            return None
        if not newline_ok and b"\n" in b:
            return None
        return _text(b)

    def plan(
        self,
        args: Sequence[Any],
        encode: Encode,
        *,
        never_decode: bool,
        newline_ok: bool,
        utf8: bool = False,
    ) -> Plan | None:
        """The :class:`Plan` of ``args``, or None when the reply may not be held."""
        command = command_of(args)
        if command not in CACHED or len(args) < 2:
            return None
        if command in MULTI_KEY:
            keys: list[str] = []
            for arg in args[1:]:
                k = self.cached_key(arg, encode, newline_ok=newline_ok, utf8=utf8)
                if k is None:
                    return None
                keys.append(k)
            sigs = tuple((never_decode, command, k) for k in keys)
            return Plan(command, tuple(keys), sigs)
        key = self.cached_key(args[1], encode, newline_ok=newline_ok, utf8=utf8)
        if key is None:
            return None
        rest = tuple(
            a if utf8 and isinstance(a, str) else _text(bytes(encode(a))) for a in args[2:]
        )
        return Plan(command, (key,), ((never_decode, command, key, *rest),))

    def touched(self, args: Sequence[Any], encode: Encode) -> list[str]:
        """The cached keys a command may change: every argument under a cached prefix (see
        module docs); none for a read-only command."""
        if command_of(args) in READ_ONLY:
            return []
        out: list[str] = []
        for arg in args[1:]:
            if isinstance(arg, str) and not arg.startswith(self._str):
                continue
            if not isinstance(arg, str | bytes | bytearray | memoryview | int | float):
                continue
            try:
                b = bytes(encode(arg))
            except Exception:  # redis-py raises the same error when it packs the command
                continue
            if b.startswith(self._bytes):
                out.append(_text(b))
        return out

    def owns(self, key: str) -> bool:
        """True if a pushed ``key`` is under one of the prefixes."""
        return key.startswith(self._str)

    # -- ledger labels ------------------------------------------------------------------------
    def label(self, args: Sequence[Any]) -> Attribution:
        """The ledger label of ``args``: the client's component, the masked key family of its
        first key (``<prefix>*`` under a cached prefix, else the first segment with ids
        masked, ``-`` for a command without a key) and the tenant of ``tenant_scope()``."""
        return Attribution(self.component, self.family(args), _tenant.get())

    def family(self, args: Sequence[Any]) -> str:
        """The masked key family of ``args`` (see :meth:`label`)."""
        command = command_of(args)
        if len(args) < 2 or command in _KEYLESS or " " in command:
            return "-"
        key = args[1]
        if isinstance(key, bytes | bytearray | memoryview):
            text = _text(bytes(key)[:256])
        elif isinstance(key, str):
            text = key[:256]
        else:
            return "*"
        if text.startswith(self._str):
            for p in self._str:
                if text.startswith(p):
                    return p + "*"
        m = _SEGMENT_END.search(text)
        if m is None:
            return "*"  # a key without a separator is its own name: never a label
        first = text[: m.start()]
        family = self._families.get(first)
        if family is None:
            family = ("*" if _is_id(first) else first) + m.group(0) + "*"
            if len(self._families) < 4096:
                self._families[first] = family
        return family
