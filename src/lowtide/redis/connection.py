"""Connections that count every command they write, for the ledger.

The counting happens where bytes go to the socket: ``pack_command`` (which ``pack_commands``
calls for every command of a pipeline) notes the command name and the current
:class:`Attribution`, and ``send_packed_command`` records the noted commands in the ledger only
after the write succeeded. Handshake
commands (AUTH, HELLO, SELECT, ...), health-check PINGs, MULTI/EXEC, pipelines and every retry go
through the same two methods, so nothing the server sees is missed.

Connection set-up is trimmed to what is needed: RESP2, no CLIENT SETINFO, no CLIENT SETNAME;
AUTH only when a password is set, SELECT only for a non-zero database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from lowtide.context import Attribution, _attribution
from lowtide.ledger import Ledger, command_name, known_name

__all__ = [
    "HANDSHAKE",
    "CountingConnection",
    "CountingSSLConnection",
    "CountingUnixConnection",
    "counting_class_for",
]

#: attribution of the commands a connection sends to set itself up
HANDSHAKE = Attribution("connection", "-", None)
#: ``_attribution.get`` bound once: calling it is ~30 ns cheaper per command than looking the
#: method up on the ContextVar each time (CPython 3.11)
_current = _attribution.get


class _CountingMixin(AbstractConnection):
    _lt_ledger: Ledger | None
    _lt_pending: list[tuple[str, Attribution]]
    #: the ``pack_command`` the hook hands over to: what ``super()`` finds after this mixin in
    #: the class's MRO, looked up once per class instead of once per command
    _lt_next_pack: ClassVar[Callable[..., list[bytes]]]
    #: the same, held by the instance (read faster than a class attribute)
    _lt_pack: Callable[..., list[bytes]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._lt_next_pack = staticmethod(super().pack_command)

    def __init__(self, *args: Any, lowtide_ledger: Ledger | None = None, **kwargs: Any) -> None:
        self._lt_ledger = lowtide_ledger
        self._lt_pending = []
        self._lt_pack = self._lt_next_pack
        super().__init__(*args, **kwargs)

    def pack_command(self, *args: Any) -> list[bytes]:
        # pack_commands (pipelines, MULTI/EXEC) calls this once per command too; a command
        # named before is one dict lookup (known_name), not a call of command_name
        self._lt_pending.append((known_name(args[0]) or command_name(args), _current()))
        pack = self._lt_pack
        # the commonest arities (GET, DEL; INCRBY, PEXPIRE, PUBLISH) are passed one by one:
        # CPython 3.11 runs ``f(*args)`` in a new eval loop, ~70 ns more per command
        n = len(args)
        if n == 2:
            return pack(self, args[0], args[1])
        if n == 3:
            return pack(self, args[0], args[1], args[2])
        return pack(self, *args)

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        entries = self._lt_pending
        if entries:
            self._lt_pending = []
        await super().send_packed_command(command, check_health)
        # reached only when the write succeeded: a command that never left is not counted
        if entries and self._lt_ledger is not None:
            self._lt_ledger.record(entries)

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        # the handshake runs inside the first send: keep the caller's packed-but-unsent
        # commands aside so they are recorded by their own send, after the handshake's
        token = _attribution.set(HANDSHAKE)
        outer, self._lt_pending = self._lt_pending, []
        try:
            await super().on_connect_check_health(check_health)
        finally:
            _attribution.reset(token)
            self._lt_pending = outer


class CountingConnection(_CountingMixin, Connection):
    """TCP connection that counts what it sends."""


class CountingSSLConnection(_CountingMixin, SSLConnection):
    """TLS connection that counts what it sends."""


class CountingUnixConnection(_CountingMixin, UnixDomainSocketConnection):
    """Unix-socket connection that counts what it sends."""


def counting_class_for(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """The counting counterpart of one of redis-py's connection classes."""
    if issubclass(connection_class, SSLConnection):
        return CountingSSLConnection
    if issubclass(connection_class, UnixDomainSocketConnection):
        return CountingUnixConnection
    return CountingConnection
