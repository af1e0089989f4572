"""How one cache's writes go over the wire: on the listener's NOLOOP writer connection or
through the pool, ``SET ... GET`` / ``GETDEL`` / ``SET ... NX GET`` with their fallbacks on
servers (or ACLs) that refuse them, and the backplane's ``PUBLISH`` batches."""

from __future__ import annotations

from typing import Any, Final

from lowtide.cache.l2 import L2
from lowtide.context import Attribution
from lowtide.errors import RedisCommandError
from lowtide.redis.tracking import publish_batches
from lowtide.redis.writer import WriterLost

__all__ = ["NO_REPLY", "WriteWire"]


class _NoReply:
    def __repr__(self) -> str:
        return "<no reply>"


#: the server could not say what a write replaced
NO_REPLY: Final = _NoReply()


class WriteWire:
    """The commands of one cache's writes (see module docs)."""

    __slots__ = ("_getdel", "_l2", "_nx_get", "_set_get")

    def __init__(self, l2: L2) -> None:
        self._l2 = l2
        #: the server answers ``SET ... GET`` and ``GETDEL`` (Redis 6.2+, Valkey; an ACL may
        #: allow one and not the other)
        self._set_get = True
        self._getdel = True
        #: the server answers ``SET ... NX GET`` (Redis 7.0+, Valkey)
        self._nx_get = True

    @property
    def set_get(self) -> bool:
        """True while ``SET ... GET`` is believed to work here."""
        return self._set_get

    @property
    def nx_get(self) -> bool:
        """True while ``SET ... NX GET`` is believed to work here."""
        return self._nx_get

    async def with_old(
        self, tenant: str | None, cmd: tuple[Any, ...], option: str | None, *, fallback: Any
    ) -> object:
        """Run ``cmd`` (plus ``option``: ``SET ... GET``; else ``GETDEL``) and return its
        reply, the value it replaced; where the server cannot answer that run ``fallback``
        instead and return :data:`NO_REPLY`."""
        gw = self._l2.gateway
        att = self._l2.attribution(tenant)
        form = "SET" if option else "GETDEL"
        if self._set_get if option else self._getdel:
            try:
                return await gw.call(att, *cmd, *((option,) if option else ()))
            except RedisCommandError as exc:
                self.refused(exc, form)
        await gw.call(att, *fallback)
        return NO_REPLY

    async def nx_get_call(self, att: Attribution, cmd: tuple[Any, ...]) -> tuple[object, bool]:
        """``cmd`` (a ``SET ... NX``) with ``GET``: None if it stored, else the value found
        (``b""`` when the server cannot answer both: then every later one is a plain NX);
        and whether its push comes back (:meth:`call`)."""
        try:
            return await self.call(att, (*cmd, "GET"))
        except RedisCommandError as exc:
            if exc.code not in ("ERR", "NOPERM"):  # WRONGTYPE: found something unreadable
                return b"", True
            self._nx_get = False  # older than Redis 7.0 (NX with GET refused), or an ACL
        reply, echo = await self.call(att, cmd)
        return (None if reply is not None else b""), echo

    async def call(self, att: Attribution, cmd: tuple[Any, ...]) -> tuple[Any, bool]:
        """``cmd``'s raw reply, and whether the server pushes it back to this process: False
        when it went over the listener's NOLOOP writer (:mod:`lowtide.redis.writer`); through
        the pool while there is none, or when it was lost (the listener flushed first, so no
        copy is kept of what it wrote)."""
        l2 = self._l2
        inv = l2.guard()
        writer = inv.writer if inv is not None else None
        if writer is not None:
            try:
                return await l2.gateway.call_on(writer, att, *cmd), False
            except WriterLost:
                pass  # it may have run: a second SET/DEL writes the same
        return await l2.gateway.call(att, *cmd), True

    async def send_quiet(self, tenant: str | None, cmds: list[tuple[Any, ...]]) -> bool:
        """:meth:`send` (errors raised) over the NOLOOP writer where there is one, as
        :meth:`call`; True if the pushes come back to this process."""
        l2 = self._l2
        inv = l2.guard()
        writer = inv.writer if inv is not None else None
        if writer is not None:
            try:
                replies = await l2.gateway.pipeline_on(writer, l2.attribution(tenant), cmds)
            except WriterLost:
                pass
            else:
                errors = [r for r in replies if isinstance(r, RedisCommandError)]
                if errors:  # the others were written: reads in flight must not fill
                    self.quietly([str(c[1]) for c in cmds])
                    raise errors[0]
                return False
        await self.send(tenant, cmds, errors_in_place=False)
        return True

    def quietly(self, rks: list[str]) -> None:
        inv = self._l2.guard()
        if inv is not None:
            inv.wrote_quietly(rks)

    def refused(self, exc: RedisCommandError, form: str) -> None:
        """``SET ... GET`` (``form`` ``SET``) or ``GETDEL`` was refused: for another type under
        the key (``WRONGTYPE``) this write falls back; where the server or its ACL does not
        allow the form (``ERR``, ``NOPERM``: older than Redis 6.2, a recipe without
        ``+getdel``) every later write does too; any other error is raised."""
        if exc.code == "WRONGTYPE":
            return
        if exc.code not in ("ERR", "NOPERM"):
            raise exc
        if form == "SET":
            self._set_get = False
        else:
            self._getdel = False

    async def send(
        self, tenant: str | None, cmds: list[tuple[Any, ...]], *, errors_in_place: bool
    ) -> list[Any]:
        gw = self._l2.gateway
        att = self._l2.attribution(tenant)
        if len(cmds) == 1 and not errors_in_place:
            return [await gw.call(att, *cmds[0])]
        replies = await gw.pipeline(att, cmds)
        if not errors_in_place:
            for reply in replies:
                if isinstance(reply, RedisCommandError):
                    raise reply
        return replies

    async def publish(self, tenant: str | None, rks: list[str]) -> None:
        inv = self._l2.listener()
        if inv is None:
            return
        cmds: list[tuple[Any, ...]] = [
            ("PUBLISH", inv.channel, batch) for batch in publish_batches(rks)
        ]
        await self.send(tenant, cmds, errors_in_place=False)
