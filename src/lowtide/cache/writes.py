"""The write path of one cache: the commands, whether they tell the fleet, and what L1 keeps.

Commands (each attributed to the cache's component and key family, per tenant):

* with CLIENT TRACKING (or ttl mode, or no listener): 1 ``SET PX`` (``NX`` for a value a
  loader returned after Redis had none), 1 ``DEL``; the server tells every process;
* on the pub/sub backplane, a write learns what it replaced from its own reply and announces
  itself only when another process may hold something it makes wrong
  (:mod:`lowtide.cache.notify`): a fill is 1 ``SET PX NX``; a ``set`` is 1 ``SET PX GET`` and,
  when needed, 1 ``PUBLISH`` once its reply arrived; a ``delete`` is 1 ``GETDEL`` (+1
  ``PUBLISH`` when needed); ``set_many`` is 1 ``SET PX GET`` per value in one round trip, then 1
  ``PUBLISH`` of the keys that need it (one more per 10,000 keys or 1 MiB of keys: a reader
  takes a larger message for a flush). A server without ``SET ... GET`` or ``GETDEL`` (older
  than Redis 6.2) gets ``SET``/``DEL`` and a ``PUBLISH`` for every write, as before.

The command and its message run to their end even if the caller is cancelled
(:meth:`~lowtide.cache.l2.L2.shielded`), inside one race guard: what the writer keeps is the
:func:`~lowtide.cache.freshness.after_write` verdict, told whether it announced the write. In
pub/sub mode a value is written marked "no copies" while this cache's
:class:`~lowtide.cache.adaptive.CopyPolicy` says copies do not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lowtide.cache.adaptive import CopyPolicy
from lowtide.cache.envelope import wrap
from lowtide.cache.freshness import Fill, Verdict, after_write
from lowtide.cache.l1 import L1
from lowtide.cache.l2 import L2, Guarded
from lowtide.cache.notify import Replaced, notifies, replaced
from lowtide.cache.options import CacheStats
from lowtide.cache.store import Key
from lowtide.cache.values import Values
from lowtide.cache.wire import NO_REPLY, WriteWire
from lowtide.errors import RedisCommandError, RedisUnavailable

__all__ = ["Writes"]

#: told what a ``SET ... NX GET`` found in Redis: ``(key, raw value, pushes seen, sent)``
Found = Callable[[Key, bytes, int | None, float], None]

#: what a write replaced when the server could not say (the safe side: announce it)
_UNKNOWN: Final = Replaced.SHARED


@dataclass(frozen=True, slots=True)
class _Written:
    """How a write was sent: what L1 may keep of it depends on these."""

    #: marked as allowing copies
    copies: bool
    #: the envelope's expiry (unix ms, server-aligned)
    expires_ms: int
    ttl: float
    #: when it was sent (monotonic)
    sent: float


@dataclass(slots=True)
class _Outcome:
    """What one write to Redis did."""

    #: False only when ``NX`` found a value
    stored: bool
    #: a PUBLISH announced it
    notified: bool
    #: what it replaced (None when not asked: tracking, ttl, or a fill)
    what: Replaced | None
    #: the server pushes it back to this process (False: sent on the NOLOOP writer)
    echo: bool = True


class Writes:
    """The write path of one cache (see module docs)."""

    __slots__ = (
        "_l1",
        "_l2",
        "_now",
        "_stats",
        "_values",
        "_wire",
        "policy",
    )

    def __init__(
        self,
        l1: L1,
        l2: L2,
        values: Values,
        stats: CacheStats,
        policy: CopyPolicy,
        *,
        now: Callable[[], float],
    ) -> None:
        self._l1 = l1
        self._l2 = l2
        self._values = values
        self._stats = stats
        self._now = now
        self.policy = policy
        self._wire = WriteWire(l2)

    def copies(self) -> bool:
        """True if a value written now lets processes keep copies of it."""
        return self.policy.copies or not self._l2.publishes

    # -- what the cache calls ---------------------------------------------------------------------
    async def store(
        self,
        k: Key,
        rk: str,
        value: Any,
        payload: bytes,
        ttl: float,
        *,
        nx: bool = False,
        found: Found | None = None,
    ) -> None:
        """Write ``value`` (encoded: ``payload``) with ``nx`` and ``found`` as :meth:`write`;
        while Redis is unavailable keep it in L1 only. A write that fails while the hub still
        uses Redis raises (see :meth:`_failed`); a fill (``nx``) then keeps nothing."""
        self._values.forget(k)
        if self._l2.open:
            try:
                if await self.write(k, rk, value, payload, ttl, nx=nx, found=found):
                    self._stats.writes += 1
                return  # else NX lost: someone else's value is there (L1 dropped)
            except RedisUnavailable as exc:
                if self._failed(exc, [k]):
                    if nx:
                        return  # a fill that did not land: the caller has its value, L1 none
                    raise
        self._l1.fill(k, value, len(payload), ttl, echo=0)

    async def store_many(
        self, tenant: str | None, items: Sequence[tuple[Key, str, Any, bytes]], ttl: float
    ) -> None:
        """:meth:`write_many`; while Redis is unavailable keep the values in L1 only."""
        for k, _, _, _ in items:
            self._values.forget(k)
        if self._l2.open:
            try:
                await self.write_many(tenant, items, ttl)
                self._stats.writes += len(items)
                return
            except RedisUnavailable as exc:
                if self._failed(exc, [k for k, _, _, _ in items]):
                    raise
        for k, _, value, payload in items:
            self._l1.fill(k, value, len(payload), ttl, echo=0)

    async def remove(self, k: Key, rk: str) -> None:
        """Drop ``k`` from L1 and delete ``rk`` from Redis (nothing more while unavailable)."""
        store = self._l1.store
        store.drop(k)
        self._values.forget(k)
        if not self._l2.open:
            return
        try:
            await self.delete(k, rk)
        except RedisUnavailable as exc:
            if self._failed(exc, [k]):
                raise

    def _failed(self, exc: RedisUnavailable, ks: list[Key]) -> bool:
        """A write to Redis failed with ``exc``: True if the caller must be told. While the
        hub still uses Redis (every connection busy past the queue timeout, a reply that
        timed out without the hub degrading) the write may or may not have landed, and the
        other processes keep what Redis holds: L1 keeps nothing of ``ks`` and the error is
        raised. Redis down (the hub degraded, suspended, local) or the tenant over its quota:
        local state, as documented."""
        if not self._l2.open or exc.reason == "quota":
            return False
        for k in ks:
            self._l1.store.drop(k)
        return True

    # -- one key ---------------------------------------------------------------------------------
    async def write(
        self,
        k: Key,
        rk: str,
        value: Any,
        payload: bytes,
        ttl: float,
        *,
        nx: bool = False,
        found: Found | None = None,
    ) -> bool:
        """Store ``payload`` under ``rk`` (``nx``: only if Redis has no value) and keep what
        the verdict allows in L1. False if ``nx`` found a value (L1 dropped for ``k``); with
        ``found``, the same command brings that value back (``SET ... NX GET``) and
        ``found(k, raw, seen, sent)`` is told it (as an L2 read would be).
        Raises :class:`~lowtide.errors.RedisUnavailable` (nothing kept) when Redis fails."""
        l2 = self._l2
        inv = l2.guard()
        publishes = inv is not None and inv.publishes
        copies = self.copies()
        expires_ms = int((l2.wall() + ttl) * 1000)
        cmd: tuple[Any, ...] = (
            "SET",
            rk,
            wrap(payload, expires_ms, copies=copies),
            "PX",
            max(1, int(ttl * 1000)),
        )
        if nx:
            cmd = (*cmd, "NX")  # a loaded value must not overwrite a write that landed since
        written = _Written(copies, expires_ms, ttl, self._now())
        g = Guarded(inv, (rk,))
        return await l2.shielded(
            self._set(
                k, rk, cmd, value, payload, g, written, publishes=publishes, nx=nx, found=found
            )
        )

    async def _set(
        self,
        k: Key,
        rk: str,
        cmd: tuple[Any, ...],
        value: Any,
        payload: bytes,
        g: Guarded,
        written: _Written,
        *,
        publishes: bool,
        nx: bool,
        found: Found | None = None,
    ) -> bool:
        tenant = k[0]
        att = self._l2.attribution(tenant)
        tell = False
        echo = True
        what: Replaced | None = None
        there: object = None  # what an NX write found in Redis (None: it stored)
        with g:
            if nx and found is not None and self._wire.nx_get:
                there, echo = await self._wire.nx_get_call(att, cmd)
            elif nx or not publishes:
                reply, echo = await self._wire.call(att, cmd)
                there = None if reply is not None else b""
            else:
                old = await self._wire.with_old(tenant, cmd, "GET", fallback=cmd)
                what = replaced(old, payload) if old is not NO_REPLY else _UNKNOWN
                tell = notifies(what)
                if tell:
                    await self._wire.publish(tenant, [rk])
        if not echo:  # after our own guard ended: no push tells the other commands on rk
            self._wire.quietly([rk])
        if there is not None:  # NX found a value (in the step its reply arrived in)
            self._l1.store.drop(k)
            if found is not None and isinstance(there, bytes) and there:
                found(k, there, g.seen[0], written.sent)
            return False
        # in the step the reply arrived in: no push may slip between the guard and L1
        out = _Outcome(stored=True, notified=tell, what=what, echo=echo)
        self._account(publishes, [out])
        self._keep(k, value, payload, written, self._verdict(g, 0, out))
        return True

    def _keep(
        self, k: Key, value: Any, payload: bytes, written: _Written, verdict: Verdict
    ) -> None:
        size = len(payload)
        if written.copies:
            self._l1.keep(k, value, size, written.ttl, verdict, sent=written.sent)
        elif isinstance(verdict, Fill):
            life = written.ttl - (self._now() - written.sent)
            self._l1.keep_private(
                k, value, size, life, written.expires_ms, sent=written.sent, echo=verdict.echo
            )
        else:
            self._l1.keep(k, value, size, written.ttl, verdict)

    async def delete(self, k: Key, rk: str) -> None:
        """Remove ``rk`` from Redis; announce it in pub/sub mode when needed."""
        l2 = self._l2
        inv = l2.listener()
        if inv is None or not inv.publishes:
            await l2.shielded(self._del(k, rk))
            return
        await l2.shielded(self._delete(k, rk))

    async def _del(self, k: Key, rk: str) -> None:
        # to its end even if the caller is cancelled: over the NOLOOP writer no push of this
        # DEL comes back, so only wrote_quietly stops a read in flight from filling what it
        # deleted (also when the DEL failed: it may have run)
        echo = False
        try:
            _, echo = await self._wire.call(self._l2.attribution(k[0]), ("DEL", rk))
        finally:
            if not echo:
                self._wire.quietly([rk])
        self._l1.store.drop(k)  # a fill that raced with the delete

    async def _delete(self, k: Key, rk: str) -> None:
        tenant = k[0]
        old = await self._wire.with_old(tenant, ("GETDEL", rk), None, fallback=("DEL", rk))
        what = replaced(old, None) if old is not NO_REPLY else _UNKNOWN
        tell = notifies(what, delete=True)
        if tell:
            await self._wire.publish(tenant, [rk])
        self._account(True, [_Outcome(stored=True, notified=tell, what=what)])
        self._l1.store.drop(k)  # a fill that raced with the delete

    # -- several keys -----------------------------------------------------------------------------
    async def write_many(
        self,
        tenant: str | None,
        items: Sequence[tuple[Key, str, Any, bytes]],
        ttl: float,
    ) -> None:
        """Store every ``(k, rk, value, payload)`` in one round trip (plus one for the message
        in pub/sub mode); keep what each verdict allows. Raises
        :class:`~lowtide.errors.RedisUnavailable`."""
        l2 = self._l2
        inv = l2.guard()
        publishes = inv is not None and inv.publishes
        copies = self.copies()
        expires_ms = int((l2.wall() + ttl) * 1000)
        px = max(1, int(ttl * 1000))
        tail: tuple[Any, ...] = ("GET",) if publishes and self._wire.set_get else ()
        cmds = [
            ("SET", rk, wrap(payload, expires_ms, copies=copies), "PX", px, *tail)
            for _, rk, _, payload in items
        ]
        rks = [rk for _, rk, _, _ in items]
        written = _Written(copies, expires_ms, ttl, self._now())
        g = Guarded(inv, rks)
        await l2.shielded(self._set_many(tenant, items, cmds, g, written, publishes))

    async def _set_many(
        self,
        tenant: str | None,
        items: Sequence[tuple[Key, str, Any, bytes]],
        cmds: list[tuple[Any, ...]],
        g: Guarded,
        written: _Written,
        publishes: bool,
    ) -> None:
        rks = [rk for _, rk, _, _ in items]
        payloads = [payload for _, _, _, payload in items]
        with g:
            outs = await self._send_many(tenant, cmds, rks, payloads, publishes)
        if outs and not outs[0].echo:
            self._wire.quietly(rks)
        # in the step the replies arrived in: no push may slip between the guard and L1
        self._account(publishes, outs)
        for i, (k, _, value, payload) in enumerate(items):
            self._keep(k, value, payload, written, self._verdict(g, i, outs[i]))

    async def _send_many(
        self,
        tenant: str | None,
        cmds: list[tuple[Any, ...]],
        rks: list[str],
        payloads: list[bytes],
        publishes: bool,
    ) -> list[_Outcome]:
        if not publishes:
            echo = await self._wire.send_quiet(tenant, cmds)
            return [_Outcome(True, False, None, echo) for _ in rks]
        replies = await self._wire.send(tenant, cmds, errors_in_place=True)
        whats: list[Replaced] = []
        redo: list[tuple[Any, ...]] = []
        for cmd, reply, payload in zip(cmds, replies, payloads, strict=True):
            if isinstance(reply, RedisCommandError):
                self._wire.refused(reply, "SET")  # raises unless the GET form was the problem
                redo.append(cmd[:-1] if cmd[-1] == "GET" else cmd)
                whats.append(_UNKNOWN)
            elif cmd[-1] != "GET":
                whats.append(_UNKNOWN)  # the server cannot say what it replaced
            else:
                whats.append(replaced(reply, payload))
        if redo:
            await self._wire.send(tenant, redo, errors_in_place=False)
        tell = [notifies(w) for w in whats]
        if any(tell):
            await self._wire.publish(tenant, [rk for rk, t in zip(rks, tell, strict=True) if t])
        return [_Outcome(True, t, w) for t, w in zip(tell, whats, strict=True)]

    def _verdict(self, g: Guarded, i: int, out: _Outcome) -> Verdict:
        return after_write(
            g.seen[i], g.mode, distributed=self._l2.open, notified=out.notified, echo=out.echo
        )

    def _account(self, publishes: bool, outs: list[_Outcome]) -> None:
        """Count notifications, and tell the copy policy what the writes cost."""
        if not publishes:
            return
        stats = self._stats
        for out in outs:
            if out.notified:
                stats.notified += 1
            else:
                stats.quiet_writes += 1
            self.policy.wrote(costly=out.what in (Replaced.SHARED, Replaced.PRIVATE))
