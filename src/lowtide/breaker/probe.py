"""The fleet's single half-open probe: a lease per open generation, renewed while it runs.

``take`` wins the one probe of an open generation with ``SET <probe key> <instance> NX PX``
(1 command). While the probe call runs, the lease is extended every third of its life by a
small script that extends it only while this hub still holds it (1 EVALSHA, 1 GET + 1
PEXPIRE inside), so however slow the call, exactly one probe is in flight fleet-wide. A
prober that dies or loses Redis stops renewing, the lease lapses, and another hub probes.
A probe that ends with no outcome (cancelled) releases the lease the same way (GET + DEL
inside one script), so another hub may probe at once; so does a caller cancelled while its
``SET NX`` is in flight (it may have landed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lowtide._tasks import BackgroundTasks
from lowtide.context import Attribution
from lowtide.errors import LowtideError, RedisUnavailable
from lowtide.keys import build_key
from lowtide.redis.scripts import Script

if TYPE_CHECKING:
    import asyncio

    from lowtide.runtime import HubView

__all__ = ["PROBE_LEASE", "ProbeLeases"]

PROBE_LEASE = Script.from_package("probe_lease")


class ProbeLeases:
    """The probe leases one breaker holds on this hub (see module docs)."""

    def __init__(
        self,
        hub: HubView,
        breaker: str,
        lease_ms: int,
        attribution: Callable[[str | None], Attribution],
        tasks: BackgroundTasks,
    ) -> None:
        self._hub = hub
        self._breaker = breaker
        self.lease_ms = lease_ms
        self._att = attribution
        self._tasks = tasks
        #: tenant -> (probe key, renewal task) for the leases this hub holds
        self._held: dict[str | None, tuple[str, asyncio.Task[Any]]] = {}

    def key(self, tenant: str | None, gen: int) -> str:
        """The probe key of open generation ``gen`` (an untracked ``fleet`` key)."""
        ns = self._hub.settings.namespace
        return build_key(ns, "fleet", f"breaker.{self._breaker}", tenant, f"probe.{gen}")

    async def take(self, tenant: str | None, gen: int) -> bool:
        """True if this hub runs the probe of generation ``gen`` (or Redis is away: then
        every hub probes locally)."""
        key = self.key(tenant, gen)
        px = self.lease_ms
        instance = self._hub.settings.instance
        try:
            reply = await self._hub.gateway.call(
                self._att(tenant), "SET", key, instance, "NX", "PX", px
            )
        except RedisUnavailable:
            return True  # nobody to agree with: probe locally
        except BaseException:
            # cancelled (an outer timeout) with the SET in flight: it may have landed, and a
            # lease nobody renews would keep the fleet from probing for its whole life
            if self._hub.distributed:
                self._tasks.spawn(self._release(tenant, key))
            raise
        if reply is None:
            return False
        self._held[tenant] = (key, self._tasks.spawn(self._renew(tenant, key, px)))
        return True

    async def _renew(self, tenant: str | None, key: str, px: int) -> None:
        instance = self._hub.settings.instance
        while True:
            await self._hub.clock.sleep(px / 3000)
            try:
                held = await self._hub.gateway.run_script(
                    self._att(tenant), PROBE_LEASE, [key], [instance, px]
                )
            except LowtideError:
                continue  # Redis away: the lease lapses unless a later renewal lands
            if held != 1:
                return  # lapsed and taken over: the fleet has another prober

    def let_go(self, tenant: str | None, *, release: bool) -> None:
        """Stop renewing; ``release`` also deletes the lease (in the background, only if still
        this hub's) so another hub may probe at once."""
        held = self._held.pop(tenant, None)
        if held is None:
            return
        key, renewal = held
        renewal.cancel()
        if release and self._hub.distributed:
            self._tasks.spawn(self._release(tenant, key))

    async def _release(self, tenant: str | None, key: str) -> None:
        with contextlib.suppress(LowtideError):
            await self._hub.gateway.run_script(
                self._att(tenant), PROBE_LEASE, [key], [self._hub.settings.instance, 0]
            )

    def close(self) -> None:
        """Stop every renewal (leases lapse on their own)."""
        for tenant in list(self._held):
            self.let_go(tenant, release=False)
