"""Connections that count every command they write, for the ledger.

The counting happens where bytes go to the socket: ``pack_command`` / ``pack_commands`` tag the
packed buffer with the command names and the current :class:`Attribution`, and
``send_packed_command`` records them in the ledger only after the write succeeded. Handshake
commands (AUTH, HELLO, SELECT, ...), health-check PINGs, MULTI/EXEC, pipelines and every retry go
through the same two methods, so nothing the server sees is missed.

Connection set-up is trimmed to what is needed: RESP2, no CLIENT SETINFO, no CLIENT SETNAME;
AUTH only when a password is set, SELECT only for a non-zero database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from lowtide.context import Attribution, _attribution
from lowtide.ledger import Ledger, command_name

__all__ = [
    "HANDSHAKE",
    "CountingConnection",
    "CountingSSLConnection",
    "CountingUnixConnection",
    "counting_class_for",
]

#: attribution of the commands a connection sends to set itself up
HANDSHAKE = Attribution("connection", "-", None)


class _Packed(list[bytes]):
    """Packed command bytes, carrying what the ledger needs once they are written."""

    __slots__ = ("lt_entries",)
    lt_entries: list[tuple[str, Attribution]]


class _CountingMixin(AbstractConnection):
    _lt_ledger: Ledger | None

    def __init__(self, *args: Any, lowtide_ledger: Ledger | None = None, **kwargs: Any) -> None:
        self._lt_ledger = lowtide_ledger
        super().__init__(*args, **kwargs)

    def pack_command(self, *args: Any) -> list[bytes]:
        packed = _Packed(super().pack_command(*args))
        packed.lt_entries = [(command_name(args), _attribution.get())]
        return packed

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        cmds = [tuple(c) for c in commands]
        packed = _Packed(super().pack_commands(cmds))
        att = _attribution.get()
        packed.lt_entries = [(command_name(c), att) for c in cmds]
        return packed

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        await super().send_packed_command(command, check_health)
        entries = getattr(command, "lt_entries", None)
        if entries and self._lt_ledger is not None:
            self._lt_ledger.record(entries)

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        token = _attribution.set(HANDSHAKE)
        try:
            await super().on_connect_check_health(check_health)
        finally:
            _attribution.reset(token)


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
