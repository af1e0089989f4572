"""Tenant quotas: per-plan budgets of billed Redis commands, counted locally, flushed in batches.

A quota check that reads a counter costs one GET per operation (the incident: every cache
operation paid one, and it recursed into the cache). Here it costs **0 commands per
operation**: the ledger already counts every command the hub sends, per tenant, so
:class:`Quotas` only reads those counts and, in batches, reports them (layout in
:mod:`lowtide.quota_layout`)::

    HSET  <ns>:q:usage::<period>.<index>.<process>  <tenant> <units> <tenant> <units> ...
    HKEYS <ns>:q:usage::<period>.<index>            # the directory: processes, tenants near a plan

Every ``flush_interval`` seconds (default 300, at a per-process offset so a fleet's flushes
spread out) a process reports **all** its tenants in one ``HSET`` and reads the directory: 2
commands per flush, whatever the number of tenants. The values are this process's **absolute**
counts for the period, so a flush is idempotent: a reply lost after the server applied it, and
the flush sent again, counts nothing twice.

The fleet's total of a tenant is the sum of its field over the processes the directory lists
(one ``HMGET`` per process), read only for tenants whose plan has a limit and that are near it:
marked near in the directory, or estimated at :data:`NEAR` (half) of their plan by this process
(total at the last read + this process's units since then x processes reporting). The busiest
process of a tenant overestimates, so it reads in time and marks the tenant near; from then on
every process reads that tenant at each flush. A process flushes early, at the next one-second
check, when a limited tenant's unflushed units exceed ``early_fraction`` of what its plan has
left.

A tenant at or over its plan goes **local-only**: the gateway refuses its commands without I/O
(components fall back to local state: the cache serves L1, limiters their local share) until the
period rolls over; an event and a warning say so. Units counted but not flushed when a period
ends are reported in the new period.

What a crash can lose: a failed flush keeps everything for the next one. With ``spool`` (a
JSON file) the absolute counts are written to it every second while they change, and at
shutdown; the next process that loads the file reports them under the old process's name
(idempotent again), so a process killed with SIGKILL loses at most the units it counted in the
last second. Without a spool, a crash loses what was counted since the last flush (at most
``flush_interval`` seconds of traffic). The quota's own commands carry no tenant, so they never
count against one: no recursion.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import secrets
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowtide._listeners import Listeners
from lowtide._untrusted import Warnings
from lowtide._validate import fraction, seconds
from lowtide.context import Attribution
from lowtide.errors import ConfigError, LowtideError
from lowtide.keys import family
from lowtide.quota_layout import (
    directory_key,
    near_field,
    parse_directory,
    source_field,
    sum_counts,
    usage_key,
)
from lowtide.quota_spool import read_spool, write_spool
from lowtide.quota_types import Period, PlanOf, QuotaEvent, QuotasKwargs

if TYPE_CHECKING:
    from lowtide.blocklist import TenantBlockList
    from lowtide.runtime import HubView

__all__ = ["Period", "PlanOf", "QuotaEvent", "Quotas", "QuotasKwargs"]

log = logging.getLogger("lowtide.quotas")
_PERIOD_S = {"hour": 3600.0, "day": 86_400.0, "month": 30 * 86_400.0}
#: a limited tenant's fleet total is read once it is (or is estimated to be) this share of its plan
NEAR = 0.5


class Quotas:
    """Per-tenant budgets of billed commands. Create it with :meth:`Lowtide.quotas`."""

    def __init__(
        self,
        hub: HubView,
        plans: Mapping[str, int],
        plan_of: PlanOf,
        *,
        period: Period = "day",
        flush_interval: float = 300.0,
        early_fraction: float = 0.1,
        plan_ttl: float = 300.0,
        spool: str | os.PathLike[str] | None = None,
    ) -> None:
        if not plans or any(
            not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in plans.values()
        ):
            raise ConfigError("plans: expected {plan name: billed commands per period >= 0}")
        if period not in _PERIOD_S:
            raise ConfigError(f"period: hour, day or month, got {period!r}")
        seconds("flush_interval", flush_interval)
        fraction("early_fraction", early_fraction)
        seconds("plan_ttl", plan_ttl, allow_zero=True)
        self.plans = dict(plans)
        self.period = period
        self.flush_interval = flush_interval
        self.early_fraction = early_fraction
        self.plan_ttl = plan_ttl
        self.spool = Path(spool) if spool is not None else None
        self._hub = hub
        self._plan_of = plan_of
        self._ns = hub.settings.namespace
        self._att = Attribution("quota", family(self._ns, "quota", "usage"), None)
        #: this process's field in every usage hash (a new boot id per process)
        self.source = f"{hub.settings.instance}.{secrets.token_hex(4)}"
        #: ledger total per tenant when the current period began for this process
        self._base: dict[str, int] = {}
        #: ledger total per tenant at the last successful flush (what the fleet has seen)
        self._flushed: dict[str, int] = {}
        #: counts of earlier processes (from the spool) still to report: (index, source, counts)
        self._orphans: list[tuple[int, str, dict[str, int]]] = []
        self._spooled: dict[str, int] | None = None  # counts at the last spool write
        #: fleet total per tenant at its last read, and this process's units at that read
        self._used: dict[str, int] = {}
        self._read_at: dict[str, int] = {}
        #: tenants the directory marks near their plan this period (read at every flush)
        self._near: set[str] = set()
        self._registered: int | None = None  # the period index this process is listed in
        self._plans_seen: dict[str, tuple[str | None, float]] = {}
        self._period_index = self._index()
        # the first regular flush comes at a per-process offset, so a fleet's flushes spread out
        offset = (zlib.crc32(self.source.encode()) % 1000) / 1000 * flush_interval
        self._last_flush = hub.clock.monotonic() - offset
        self._warnings = Warnings(log)
        self._listeners: Listeners[QuotaEvent] = Listeners(log, "quota listener")
        self._over: dict[str, QuotaEvent] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self.flushes = 0
        self.flush_errors = 0
        #: entries read from Redis that were not counts or known fields (ignored)
        self.bad_entries = 0
        self._load_spool()

    # -- public API ---------------------------------------------------------------------------
    def on_event(self, listener: Callable[[QuotaEvent], None]) -> Callable[[], None]:
        """Call ``listener(QuotaEvent)`` when a tenant goes over its plan or comes back."""
        return self._listeners.add(listener)

    def over_quota(self, tenant: str) -> bool:
        """True while ``tenant`` is local-only because it used up its plan."""
        return tenant in self._hub_blocked()

    def usage(self, tenant: str) -> int:
        """Billed units of ``tenant`` this period as far as this process knows (fleet total at
        the last flush plus what this process has not flushed yet)."""
        mine = self._hub.ledger.billed_by_tenant().get(tenant, 0) - self._base.get(tenant, 0)
        return self._used.get(tenant, 0) + max(0, mine - self._read_at.get(tenant, 0))

    def counter_key(self, source: str | None = None) -> str:
        """The Redis key of a process's usage hash for the current period (tenant -> that
        process's units): this process's, or that of ``source`` as listed in
        :meth:`directory_key`. The fleet's total is the sum over the processes listed there."""
        return usage_key(self._ns, self.period, self._index(), source or self.source)

    def directory_key(self) -> str:
        """The Redis key of the current period's directory (processes that reported, tenants
        near their plan)."""
        return directory_key(self._ns, self.period, self._index())

    async def fleet_total(self, tenant: str) -> int:
        """The fleet's billed units of ``tenant`` this period as flushed so far (1 ``HKEYS`` +
        1 ``HMGET`` per process that reported)."""
        idx = self._index()
        reply = await self._hub.gateway.call(
            self._att, "HKEYS", directory_key(self._ns, self.period, idx)
        )
        found = parse_directory(reply)
        totals = await self._read(idx, found.sources, [tenant])
        return totals.get(tenant, 0)

    def start(self) -> None:
        """Start the background flusher (idempotent; :meth:`Lowtide.quotas` calls it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self, *, everything: bool = True) -> int:
        """Report now (or, with ``everything=False``, only if a flush is due); returns how many
        tenants were reported. Idempotent: each value written is an absolute count.

        Costs 1 ``HSET`` (every tenant with new units) + 1 ``HKEYS`` (the directory), plus
        ``HMGET`` per process that reported when a limited tenant needs its fleet total read
        (near its plan, see the module docs), plus once per period 1 ``HSET`` + 2 ``PEXPIRE``.
        One flush at a time (the background one and a caller's wait for each other): an older
        count never lands after a newer one, nor in the next period.
        """
        async with self._flushing:
            return await self._flush(everything=everything)

    async def _flush(self, *, everything: bool) -> int:
        self._roll_period()
        if not self._hub.distributed:
            return 0
        now = self._hub.clock.monotonic()
        counts, totals = self._unreported_counts()
        if not everything and not await self._is_due(counts, totals, now):
            return 0
        orphans, self._orphans = self._orphans, []
        idx = self._period_index
        directory = directory_key(self._ns, self.period, idx)
        cmds: list[tuple[Any, ...]] = []
        if counts:
            cmds.append(
                ("HSET", usage_key(self._ns, self.period, idx, self.source), *_pairs(counts))
            )
        register = bool(counts) and self._registered != idx
        if register:
            cmds.append(("HSET", directory, source_field(self.source), 1))
        written: list[str] = []
        for index, source, units in orphans:
            written += [usage_key(self._ns, self.period, index, source)]
            written += [directory_key(self._ns, self.period, index)]
            cmds.append(("HSET", written[-2], *_pairs(units)))
            cmds.append(("HSET", written[-1], source_field(source), 1))
        cmds.append(("HKEYS", directory))
        try:
            replies = await self._hub.gateway.pipeline(self._att, cmds)
        except LowtideError as exc:
            self._orphans = orphans + self._orphans
            self.flush_errors += 1
            log.debug("quota flush failed (kept for the next one): %s", exc)
            return 0
        if any(isinstance(r, Exception) for r in replies):
            self._orphans = orphans + self._orphans
            self.flush_errors += 1
            log.debug("quota flush got an error reply (kept for the next one): %s", replies)
            return 0
        expire = list(written)
        if counts:
            for tenant in counts:
                self._flushed[tenant] = totals[tenant]
            if register:
                self._registered = idx
                expire += [usage_key(self._ns, self.period, idx, self.source), directory]
        self._last_flush = now
        found = parse_directory(replies[-1])
        self._note_bad(found.bad)
        self._near |= found.near
        await self._read_near(idx, found.sources)
        if expire:
            with contextlib.suppress(LowtideError):
                await self._hub.gateway.pipeline(
                    self._att, [("PEXPIRE", key, self._ttl_ms()) for key in dict.fromkeys(expire)]
                )
        self.flushes += 1
        return len(counts)

    async def aclose(self) -> None:
        """Stop, flush what is left, and spool what could not be flushed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.flush()
        self._write_spool(final=True)

    def info(self) -> dict[str, Any]:
        """Period, counters and the tenants currently over quota."""
        return {
            "period": self.period,
            "flushes": self.flushes,
            "flush_errors": self.flush_errors,
            "tenants": len(self._flushed),
            "near": len(self._near),
            "bad_entries": self.bad_entries,
            "over_quota": sorted(self._hub_blocked()),
        }

    # -- internals ----------------------------------------------------------------------------
    def _hub_blocked(self) -> TenantBlockList:
        return self._hub.quota_blocked

    def _index(self) -> int:
        return math.floor(self._hub.clock.time() / _PERIOD_S[self.period])

    def _ttl_ms(self) -> int:
        return math.ceil((_PERIOD_S[self.period] + 86_400) * 1000)

    async def _plan(self, tenant: str) -> tuple[str | None, int | None]:
        now = self._hub.clock.monotonic()
        cached = self._plans_seen.get(tenant)
        if cached is None or cached[1] <= now:
            try:
                answer = self._plan_of(tenant)
                if inspect.isawaitable(answer):
                    answer = await answer
            except Exception:
                log.exception("plan_of(%r) failed; treating the tenant as unlimited", tenant)
                answer = None
            plan = answer if isinstance(answer, str) else None
            self._plans_seen[tenant] = (plan, now + self.plan_ttl)
            if len(self._plans_seen) > 100_000:
                self._plans_seen.pop(next(iter(self._plans_seen)))
        else:
            plan = cached[0]
        return plan, (self.plans.get(plan) if plan is not None else None)

    async def _is_due(self, counts: dict[str, int], totals: dict[str, int], now: float) -> bool:
        """A flush is due every ``flush_interval``, or early when a limited tenant's unflushed
        units reach ``early_fraction`` of what its plan has left."""
        if now - self._last_flush >= self.flush_interval:
            return True
        for tenant in counts:
            _, limit = await self._plan(tenant)
            if limit is None:
                continue
            pending = totals[tenant] - self._flushed.get(tenant, 0)
            if pending >= self.early_fraction * max(limit - self.usage(tenant) + pending, 0):
                return True
        return False

    def _unreported_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """This process's absolute units this period for every tenant with units not yet
        reported, and the ledger totals they were computed from."""
        totals = self._hub.ledger.billed_by_tenant()
        counts = {
            t: n - self._base.get(t, 0)
            for t, n in totals.items()
            if n > self._flushed.get(t, 0) and n > self._base.get(t, 0)
        }
        return counts, totals

    async def _read_near(self, idx: int, sources: list[str]) -> None:
        """Read the fleet totals of the limited tenants that need it: those the directory marks
        near their plan, and those whose estimate (last total read + this process's units since
        then x processes reporting) reaches :data:`NEAR` of their plan. The busiest process of
        a tenant overestimates its total, so it reads in time and marks the tenant near for
        every process."""
        mine = self._counts()
        processes = max(1, len(sources))
        wanted: dict[str, int] = {}
        for tenant, units in mine.items():
            _, limit = await self._plan(tenant)
            if limit is None:
                continue
            grown = units - self._read_at.get(tenant, 0)
            if (
                tenant in self._near
                or self._used.get(tenant, 0) + grown * processes >= NEAR * limit
            ):
                wanted[tenant] = limit
        if not wanted or not sources:
            return
        tenants = list(wanted)
        try:
            totals = await self._read(idx, sources, tenants)
        except LowtideError as exc:
            log.debug("quota read failed (tried again at the next flush): %s", exc)
            return
        mark: list[str] = []
        for tenant in tenants:
            self._used[tenant] = totals[tenant]
            self._read_at[tenant] = mine[tenant]
            if tenant not in self._near and totals[tenant] >= NEAR * wanted[tenant]:
                self._near.add(tenant)
                mark += [near_field(tenant), "1"]
            await self._verdict(tenant, totals[tenant])
        if mark:
            with contextlib.suppress(LowtideError):
                await self._hub.gateway.call(
                    self._att, "HSET", directory_key(self._ns, self.period, idx), *mark
                )

    async def _read(self, idx: int, sources: list[str], tenants: list[str]) -> dict[str, int]:
        """The fleet totals of ``tenants`` (1 ``HMGET`` per process in ``sources``)."""
        if not sources:
            return dict.fromkeys(tenants, 0)
        rows = await self._hub.gateway.pipeline(
            self._att,
            [("HMGET", usage_key(self._ns, self.period, idx, src), *tenants) for src in sources],
        )
        totals, bad = sum_counts(rows, tenants)
        self._note_bad(bad)
        return totals

    def _note_bad(self, bad: int) -> None:
        if bad:
            self.bad_entries += bad
            self._warnings.warn(
                "entry", "ignoring %d quota entries that are not counts or known fields", bad
            )

    async def _verdict(self, tenant: str, used: int) -> None:
        plan, limit = await self._plan(tenant)
        if limit is None or plan is None:
            return
        blocked = self._hub_blocked()
        if used >= limit and blocked.block(tenant):
            self._over[tenant] = QuotaEvent(tenant, plan, used, limit, False, self.period)
            log.warning(
                "tenant %r is over its %s quota (%d of %d billed commands this %s): local-only "
                "until the period ends",
                tenant,
                plan,
                used,
                limit,
                self.period,
            )
            self._emit(QuotaEvent(tenant, plan, used, limit, True, self.period))

    def _roll_period(self) -> None:
        idx = self._index()
        if idx == self._period_index:
            return
        # units counted but not flushed yet are reported in the new period: never lost
        self._base = dict(self._flushed)
        self._period_index = idx
        self._used.clear()
        self._read_at.clear()
        self._near.clear()
        self._hub_blocked().clear()
        over, self._over = self._over, {}
        for event in over.values():
            log.info("tenant %r: new %s, quota restored", event.tenant, self.period)
            self._emit(event._replace(used=0))

    def _emit(self, event: QuotaEvent) -> None:
        self._listeners.emit(event)

    async def _run(self) -> None:
        while True:
            await self._hub.clock.sleep(min(1.0, self.flush_interval))
            try:
                await self.flush(everything=False)
            except Exception:
                log.exception("quota flush loop failed")
            self._write_spool(final=False)

    def _counts(self) -> dict[str, int]:
        """This process's absolute units per tenant in the current period."""
        totals = self._hub.ledger.billed_by_tenant()
        counts = {t: n - self._base.get(t, 0) for t, n in totals.items()}
        return {t: n for t, n in counts.items() if n > 0}

    def _load_spool(self) -> None:
        if self.spool is not None:
            self._orphans += read_spool(self.spool, self._period_index)

    def _unreported(self) -> dict[str, int]:
        totals = self._hub.ledger.billed_by_tenant()
        return {
            t: n - self._flushed.get(t, 0) for t, n in totals.items() if n > self._flushed.get(t, 0)
        }

    def _write_spool(self, *, final: bool) -> None:
        """Write what the fleet may not have yet: this process's counts and earlier processes'
        (every second while they change, and at shutdown); remove the file when nothing is
        left to report."""
        if self.spool is None:
            lost = self._unreported() if final else {}
            if lost:
                log.warning("quota counts not flushed at shutdown (no spool): %s", lost)
            return
        counts = self._counts()
        if not final and counts == self._spooled:
            return
        pending = [{"index": i, "source": src, "counts": c} for i, src, c in self._orphans]
        if counts and (not final or self._unreported()):
            pending.append({"index": self._period_index, "source": self.source, "counts": counts})
        if write_spool(self.spool, self.period, pending):
            self._spooled = counts


def _pairs(counts: dict[str, int]) -> list[Any]:
    """``HSET`` field-value arguments for ``counts``."""
    return [x for pair in counts.items() for x in pair]
