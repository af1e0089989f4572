"""The listener's probe keys: the start-up self-test, and in keyspace mode the flush sentinels.

**Self-test.** A session is trusted only after a write really produced a message on every
listener connection: one probe key per connection (per primary on a cluster), written with
``SET`` (or announced with ``PUBLISH`` on the pub/sub backplane), must come back within the
timeout.

**Flush sentinels** (keyspace mode only). ``FLUSHALL``, ``FLUSHDB`` and ``SWAPDB`` remove keys
without a keyspace event, so copies of removed values would otherwise live on until their own
expiry. The probe keys stay as sentinels: written with a life of three check periods, and every
period one ``PEXPIRE`` per probe extends it. A reply of 0 means the key vanished without the
listener hearing of it (a flush, or eviction missed): the listener flushes process memory and
writes the sentinel again. The period is three keepalive periods (45 s), the time within which
a lost connection is noticed too, so copies are trusted on the same terms as with CLIENT
TRACKING. Cost: 1 command per connection per period.
"""

from __future__ import annotations

import asyncio
import logging
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

__all__ = ["SELFTEST", "Probes", "SelfTestFailed", "listener_targets"]

log = logging.getLogger("lowtide.invalidation")
SELFTEST = Attribution("invalidation", "-", None)
#: a self-test write's life when it is not a sentinel (ms)
_PROBE_MS = 10_000


class SelfTestFailed(LowtideError):
    """A probe write produced no message within the self-test's timeout."""


class Probes:
    """The probe keys of one listener session (see module docs)."""

    def __init__(self, hub: HubView, keepalive: Callable[[], float]) -> None:
        self._hub = hub
        self._keepalive = keepalive
        self.keys: list[str] = []
        self._pending: set[str] = set()
        self._seen: asyncio.Future[None] | None = None
        #: flushes noticed through a vanished sentinel (keyspace mode)
        self.flushes = 0
        self._checked = 0.0

    @property
    def period(self) -> float:
        """Seconds between sentinel checks: three of the listener's keepalive periods."""
        return 3 * self._keepalive()

    def heard(self, keys: Iterable[str]) -> None:
        """The listener received a message naming ``keys``."""
        seen = self._seen
        if seen is not None and not seen.done():
            self._pending.difference_update(keys)
            if not self._pending:
                seen.set_result(None)

    async def _write(self, key: str, mode: InvalidationMode, channel: str) -> None:
        gateway = self._hub.gateway
        if mode is InvalidationMode.PUBSUB:
            await gateway.control(SELFTEST, "PUBLISH", channel, key)
            return
        life = _PROBE_MS
        if mode is InvalidationMode.KEYSPACE:
            life = max(_PROBE_MS, int(3 * self.period * 1000))
        await gateway.control(SELFTEST, "SET", key, "1", "PX", life)

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
        self.keys = list(keys)
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
        self._checked = self._hub.clock.monotonic()

    async def flushed(self, mode: InvalidationMode) -> bool:
        """Keyspace mode, once per :attr:`period`: True if a sentinel vanished unheard (the
        caller flushes process memory); the sentinel is then written again."""
        now = self._hub.clock.monotonic()
        # the listener's keepalive loop calls this on its ticks: half a second of slack so a
        # period that is a multiple of the tick is not missed by a rounding error
        if mode is not InvalidationMode.KEYSPACE or now - self._checked < self.period - 0.5:
            return False
        self._checked = now
        life = int(3 * self.period * 1000)
        vanished = False
        for key in self.keys:
            kept = await self._hub.gateway.control(SELFTEST, "PEXPIRE", key, life)
            if kept != 1:
                vanished = True
                await self._write(key, mode, "")
        if vanished:
            self.flushes += 1
            log.warning(
                "a sentinel key vanished without a keyspace event (FLUSHALL, FLUSHDB or "
                "SWAPDB?): flushing process memory"
            )
        return vanished


def listener_targets(hub: HubView, *, pubsub: bool) -> list[tuple[Settings, str]]:
    """One ``(settings, probe key)`` per listener connection.

    On a cluster, CLIENT TRACKING and keyspace notifications are per node: one connection per
    primary, each proven by a probe key that lives on that node. Pub/sub messages reach every
    node of a cluster, so the backplane needs one connection.
    """
    settings = hub.settings
    ns, inst = settings.namespace, settings.instance
    nodes = hub.gateway.primaries()
    if nodes is None or pubsub or settings.url is None:
        return [(settings, build_key(ns, "control", "selftest", None, inst))]
    url = settings.url

    def probe(i: int) -> str:
        return build_key(ns, "control", f"selftest.{i}", None, inst, hashtag=True)

    return [
        (settings.with_(url=node_url(url, host, port)), hub.gateway.key_on_node(probe, host, port))
        for host, port in nodes
    ]
