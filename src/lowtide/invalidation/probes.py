"""The listener's probe keys: the start-up self-test, and in keyspace mode the flush sentinels.

**Self-test.** A session is trusted only after a write really produced a message on every
listener connection: one probe key per connection (per primary on a cluster), written with
``SET`` (or announced with ``PUBLISH`` on the pub/sub backplane), must come back within the
timeout.

**Flush sentinels** (keyspace mode only). ``FLUSHALL``, ``FLUSHDB`` and ``SWAPDB`` remove keys
without a keyspace event, so copies of removed values would otherwise live on until their own
expiry. One sentinel key per server (``<ns>:x:sentinel::fleet``; one per primary on a cluster)
is shared by the whole fleet, written (``SET NX``) by the first listener to start, with a life
of three check periods. A check is one ``PEXPIRE`` that extends it, and every listener hears
its ``expire`` event (:class:`~lowtide.redis.keyspace.Checked`): a check by any process proves
that no flush happened before it, so each listener schedules its own next check a period (less
up to a tenth, at random) after the last check it heard. The fleet thus sends about one check
per period, whatever its size, and each process still learns of a flush within a period.

A check that finds the sentinel gone (reply 0: a flush, or its removal missed) writes it again
(``SET NX``) and flushes that process's memory; every other listener hears that ``set`` (or
any other change of the sentinel but its expiry being extended) and flushes too. Two checks
that find it gone at once: one ``SET NX`` lands, and the other process flushes on hearing
it, or on its own ``SET NX``'s refusal when it heard that write while its own was in flight
(a change heard then is attributed by the reply), so every process flushes once per flush.
The period is three keepalive periods (45 s), the time within which a lost connection is
noticed, so copies are trusted on the same terms as with CLIENT TRACKING. Cost: about 1
command per period for the fleet (per primary on a cluster). Anyone allowed to ``PUBLISH``
on keyspace channels can postpone the checks (as anyone allowed to write can keep the
sentinel alive after a flush): copies then live at most their own ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from lowtide.context import Attribution
from lowtide.errors import LowtideError
from lowtide.keys import build_key
from lowtide.modes import InvalidationMode
from lowtide.redis.cluster import node_url

if TYPE_CHECKING:
    from lowtide.runtime import HubView
    from lowtide.settings import Settings

__all__ = ["SELFTEST", "Probes", "SelfTestFailed", "listener_targets", "sentinel_key"]

log = logging.getLogger("lowtide.invalidation")
SELFTEST = Attribution("invalidation", "-", None)
#: a self-test write's life (ms)
_PROBE_MS = 10_000
#: a listener's next check comes a period after the last check it heard, less up to this
#: fraction of a period (at random): the fleet's first due check is heard by the others
#: before theirs are due
_SPREAD = 0.1


class SelfTestFailed(LowtideError):
    """A probe write produced no message within the self-test's timeout."""


class Probes:
    """The probe keys of one listener session (see module docs)."""

    def __init__(self, hub: HubView, keepalive: Callable[[], float]) -> None:
        self._hub = hub
        self._keepalive = keepalive
        self._pending: set[str] = set()
        self._seen: asyncio.Future[None] | None = None
        #: flushes noticed through a vanished sentinel (keyspace mode), here or elsewhere
        self.flushes = 0
        #: the fleet's sentinel keys (one per listener connection; keyspace mode)
        self.sentinels: list[str] = []
        #: sentinels this process is writing (its SET not answered yet)
        self._writing: set[str] = set()
        #: sentinels changed while this process's SET of them was in flight: whose change
        #: it was is known only from the SET's reply
        self._changed: set[str] = set()
        #: sentinels this process wrote whose change it has not heard yet: the first change
        #: heard of each is its own
        self._wrote: set[str] = set()
        self._due = math.inf  # monotonic time of this listener's next check

    @property
    def period(self) -> float:
        """Seconds between sentinel checks: three of the listener's keepalive periods."""
        return 3 * self._keepalive()

    def heard(self, keys: Iterable[str]) -> bool:
        """The listener received a message naming ``keys``; True if it says a sentinel was
        written again by another process (which found it gone: flush process memory)."""
        seen = self._seen
        if seen is not None and not seen.done():
            self._pending.difference_update(keys)
            if not self._pending:
                seen.set_result(None)
        if not self.sentinels:
            return False
        rewritten = False
        for key in keys:
            if key not in self.sentinels:
                continue
            if key in self._writing:
                self._changed.add(key)  # ours or another's: the SET's reply tells
            elif key in self._wrote:
                self._wrote.discard(key)  # this process's own write
            else:
                rewritten = True
        if rewritten:
            self.flushes += 1
            log.warning(
                "another process found the flush sentinel gone (FLUSHALL, FLUSHDB or SWAPDB?): "
                "flushing process memory"
            )
        return rewritten

    def checked(self) -> None:
        """A sentinel check by some process was heard: no flush before it."""
        self._schedule()

    def wait(self) -> float:
        """Seconds until this listener's next check is due (inf: none)."""
        return self._due - self._hub.clock.monotonic()

    def _schedule(self) -> None:
        spread = 1 - _SPREAD * random.random()  # timing jitter
        self._due = self._hub.clock.monotonic() + self.period * spread

    async def _write(self, key: str, mode: InvalidationMode, channel: str) -> None:
        gateway = self._hub.gateway
        if mode is InvalidationMode.PUBSUB:
            await gateway.control(SELFTEST, "PUBLISH", channel, key)
            return
        await gateway.control(SELFTEST, "SET", key, "1", "PX", _PROBE_MS)

    async def selftest(
        self,
        keys: Sequence[str],
        readers: list[asyncio.Task[None]],
        mode: InvalidationMode,
        channel: str,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Write each probe key and wait until the listener heard of all of them (raises
        :class:`~lowtide.errors.LowtideError` on timeout, or why a reader died)."""
        self._seen = asyncio.get_running_loop().create_future()
        self._pending = set(keys)
        for key in keys:
            await self._write(key, mode, channel)
        done, _ = await asyncio.wait(
            {self._seen, *readers}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
        for reader in readers:
            if reader in done:
                reader.result()  # re-raise why the connection died
        if self._seen not in done:
            raise SelfTestFailed(
                f"self-test failed: a write produced no invalidation message within {timeout}s"
            )

    async def start_sentinels(self, keys: Sequence[str], mode: InvalidationMode) -> None:
        """Keyspace mode: write the fleet's sentinels unless they exist (``SET NX``), and
        schedule this listener's first check."""
        if mode is not InvalidationMode.KEYSPACE:
            self.sentinels, self._due = [], math.inf
            return
        self.sentinels = list(keys)
        self._wrote.clear()
        self._changed.clear()
        for key in keys:
            await self._write_sentinel(key)  # memory was flushed when the last session ended
        self._schedule()

    async def _write_sentinel(self, key: str) -> bool:
        """Write a sentinel unless it exists (``SET NX``); True if this process must flush:
        its write landed, or another process's write was heard while this one was in flight
        (that process found the sentinel gone too, and this one heard its only message)."""
        self._writing.add(key)
        self._changed.discard(key)
        life = int(3 * self.period * 1000)
        try:
            reply = await self._hub.gateway.control(SELFTEST, "SET", key, "1", "PX", life, "NX")
        finally:
            self._writing.discard(key)
        heard = key in self._changed
        self._changed.discard(key)
        if reply is None:  # NX found it: another process wrote it
            return heard  # not heard yet: flushed when heard (heard())
        if not heard:
            self._wrote.add(key)  # the first change heard of it is this write
        return True

    async def flushed(self, mode: InvalidationMode) -> bool:
        """Keyspace mode, when this listener's check is due: True if a sentinel vanished
        unheard (the caller flushes process memory); the sentinel is then written again."""
        if mode is not InvalidationMode.KEYSPACE or not self.sentinels or self.wait() > 0:
            return False
        self._schedule()  # hearing its own check schedules the next one again
        life = int(3 * self.period * 1000)
        vanished = False
        for key in self.sentinels:
            kept = await self._hub.gateway.control(SELFTEST, "PEXPIRE", key, life)
            # written again with NX: when two checks find it gone at once, the one whose
            # write lands flushes; the other hears that write (as every other process does)
            # and flushes once, on hearing it
            if kept != 1 and await self._write_sentinel(key):
                vanished = True
        if vanished:
            self.flushes += 1
            log.warning(
                "the flush sentinel vanished without a keyspace event (FLUSHALL, FLUSHDB or "
                "SWAPDB?): flushing process memory"
            )
        return vanished


def sentinel_key(hub: HubView, i: int | None = None) -> str:
    """The fleet's flush sentinel (``i``: the candidate for one cluster node)."""
    ns = hub.settings.namespace
    if i is None:
        return build_key(ns, "control", "sentinel", None, "fleet")
    return build_key(ns, "control", f"sentinel.{i}", None, "fleet", hashtag=True)


def listener_targets(hub: HubView, *, pubsub: bool) -> list[tuple[Settings, str, str]]:
    """One ``(settings, probe key, sentinel key)`` per listener connection.

    On a cluster, CLIENT TRACKING and keyspace notifications are per node: one connection per
    primary, each proven by a probe key that lives on that node, and watching a sentinel on
    that node. Pub/sub messages reach every node of a cluster, so the backplane needs one
    connection.
    """
    settings = hub.settings
    ns, inst = settings.namespace, settings.instance
    nodes = hub.gateway.primaries()
    if nodes is None or pubsub or settings.url is None:
        return [(settings, build_key(ns, "control", "selftest", None, inst), sentinel_key(hub))]
    url = settings.url

    def probe(i: int) -> str:
        return build_key(ns, "control", f"selftest.{i}", None, inst, hashtag=True)

    def sentinel(i: int) -> str:
        return sentinel_key(hub, i)

    return [
        (
            settings.with_(url=node_url(url, host, port)),
            hub.gateway.key_on_node(probe, host, port),
            hub.gateway.key_on_node(sentinel, host, port),
        )
        for host, port in nodes
    ]
