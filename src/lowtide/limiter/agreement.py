"""One configuration per limiter name across the fleet.

Two processes that configure the same limiter name differently (5 vs 50 calls per 10 s after
a half-finished deploy, or a fixed window here and a token bucket there) share one budget, so
each would admit by its own rule. :class:`FleetConfig` makes them agree, at a cost of about
one GET per process per limiter:

* The configuration (``algorithm/limit/per``) is stored at ``<ns>:x:<name>.config::config``, a
  tracked control key (1 SET by the first process; its lifetime is an hour, renewed by whoever
  finds it gone), read once per process through the tiered cache (1 GET, then L1; a change
  anywhere is pushed to every hub, which reads it again; a reply whose read or write a push
  crossed is stale and is read again, at most :data:`SETTLE_ATTEMPTS` reads in a row).
* Same algorithm and window, different limits: the **stricter limit wins** everywhere. A
  process with a lower limit than the stored one writes its own; the others adopt it on the
  push. So lowering a limit takes effect at once; raising it takes effect once no process
  with the old, lower limit is left and the stored value has expired (within an hour).
* Different algorithm or window: the budgets cannot be compared, so a process whose
  configuration differs from the stored one **refuses every call** (and logs an error naming
  both) until they agree. Never over the limit, whichever process is right.

The stored value is untrusted: :meth:`LimitConfig.parse` accepts only ``algorithm/limit/per``
with a known algorithm, a limit of 1 to 18 ASCII digits and a finite ``per`` > 0 (at most 100
characters). Anything else, or a value the cache cannot read (another codec, a hash: WRONGTYPE),
is treated as no stored configuration: this process writes its own over it, and counts it in
:attr:`FleetConfig.bad`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from lowtide._untrusted import Warnings
from lowtide.cache.options import pushed_state
from lowtide.errors import LowtideError, RedisCommandError, SerializationError

if TYPE_CHECKING:
    from lowtide.cache import Cache, CacheHub

__all__ = ["CONFIG_TTL", "SETTLE_ATTEMPTS", "FleetConfig", "LimitConfig"]

log = logging.getLogger("lowtide.limiter")

#: lifetime of the stored configuration (renewed by the first process that finds it gone)
CONFIG_TTL = 3600.0
#: reads of the configuration one :meth:`FleetConfig.settle` makes while pushes keep changing it
SETTLE_ATTEMPTS = 3
_LIMIT = re.compile(r"[0-9]{1,18}")
_UNREADABLE = object()


class LimitConfig(NamedTuple):
    """A limiter's configuration as it is stored: ``algorithm/limit/per``."""

    algorithm: str
    limit: int
    per: float

    def text(self) -> str:
        """The stored form."""
        return f"{self.algorithm}/{self.limit}/{self.per!r}"

    @classmethod
    def parse(cls, value: object) -> LimitConfig | None:
        """The configuration stored as ``value``, or None if it is not one (untrusted input)."""
        if not isinstance(value, str) or len(value) > 100:
            return None
        parts = value.split("/")
        if len(parts) != 3 or parts[0] not in ("fixed_window", "token_bucket"):
            return None
        if not _LIMIT.fullmatch(parts[1]):
            return None
        try:
            limit, per = int(parts[1]), float(parts[2])
        except ValueError:
            return None
        if limit < 1 or not math.isfinite(per) or per <= 0:
            return None
        return cls(parts[0], limit, per)


class FleetConfig:
    """The fleet's agreement on one limiter's configuration (see module docs)."""

    def __init__(
        self,
        hub: CacheHub,
        name: str,
        mine: LimitConfig,
        on_change: Callable[[], None],
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        self.mine = mine
        #: the limit this process enforces (its own, or a stricter one agreed by the fleet)
        self.limit = mine.limit
        #: the stored configuration this process cannot share a budget with, if any
        self.conflict: LimitConfig | None = None
        self._name = name
        #: stored configurations that were not one (malformed or unreadable): overwritten
        self.bad = 0
        self._warnings = Warnings(log)
        self._settled = False
        #: bumped by every push about the stored configuration: a reply read across one is stale
        self._generation = 0
        self._on_change = on_change
        #: called when the stored configuration may have changed (before it is read again)
        self._on_stale = on_stale
        push = hub.settings.invalidation != "ttl"
        self._cache: Cache = hub.caches.cache(
            f"{name}.config",
            pushed_state(
                ttl=CONFIG_TTL,
                max_staleness=CONFIG_TTL if push else hub.settings.max_staleness,
                max_entries=4,
                entry_bytes=256,
                fail_safe=False,
                max_value_bytes=128,
                per_tenant=False,
            ),
            component="control",
            codec=None,
        )
        self._cache.watch(self._unsettle)

    def _unsettle(self, _: object) -> None:
        self._settled = False
        self._generation += 1
        if self._on_stale is not None:
            self._on_stale()

    async def settle(self) -> None:
        """Agree with the stored configuration (0 commands once settled; see module docs).

        A push heard while the configuration is read or written (another process stored a
        stricter one) makes that reply stale: it is read again, at most
        :data:`SETTLE_ATTEMPTS` times in all. If it keeps changing, this process stays
        unsettled and keeps what it agreed last; the next decision reads it again.
        """
        for _ in range(SETTLE_ATTEMPTS):
            if self._settled:
                return
            generation = self._generation
            try:
                stored = await self._read()
            except LowtideError as exc:
                log.debug("limiter %r: configuration not agreed yet: %s", self._name, exc)
                return  # keep what was agreed last (Redis is away: local rules apply anyway)
            if self._generation == generation:  # nothing changed while reading: trusted
                self._apply(stored)
                return

    async def _read(self) -> LimitConfig:
        """The configuration the fleet agrees on (stored, or this process's own, written)."""
        try:
            value = await self._cache.get("config")
        except (SerializationError, RedisCommandError):
            value = _UNREADABLE  # not a configuration (overwritten below)
        stored = LimitConfig.parse(value)
        if stored is None and value is not None:
            self.bad += 1
            self._warnings.warn(
                "config",
                "rate limiter %r: the stored configuration is not one; writing this "
                "process's (%s) over it",
                self._name,
                self.mine.text(),
            )
        if stored is None or (
            (stored.algorithm, stored.per) == (self.mine.algorithm, self.mine.per)
            and self.mine.limit < stored.limit
        ):
            await self._cache.set("config", self.mine.text(), ttl=CONFIG_TTL)
            stored = self.mine
        return stored

    def _apply(self, stored: LimitConfig) -> None:
        self._settled = True
        before = (self.limit, self.conflict)
        if (stored.algorithm, stored.per) != (self.mine.algorithm, self.mine.per):
            self.conflict, self.limit = stored, self.mine.limit
        else:
            self.conflict, self.limit = None, min(self.mine.limit, stored.limit)
        if (self.limit, self.conflict) == before:
            return
        if self.conflict is not None:
            log.error(
                "rate limiter %r is configured as %s here but %s elsewhere in the fleet: "
                "refusing every call here until the configurations agree",
                self._name,
                self.mine.text(),
                stored.text(),
            )
        elif self.limit < self.mine.limit:
            log.warning(
                "rate limiter %r: another process has a stricter limit (%s); enforcing it here",
                self._name,
                stored.text(),
            )
        self._on_change()
