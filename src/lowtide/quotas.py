"""Tenant quotas: per-plan budgets of billed Redis commands, counted locally, flushed in batches.

A quota check that reads a counter costs one GET per operation (the incident: every cache
operation paid one, and it recursed into the cache). Here it costs **0 commands per
operation**: the ledger already counts every command the hub sends, per tenant, so
:class:`Quotas` only reads those counts and, in batches, reports them to a fleet-wide hash per
(tenant, period) in which every hub process owns one field::

    HSET  <ns>:q:usage:<tenant>:<period>.<index>  <instance>.<boot id>  <units so far>
    HVALS <ns>:q:usage:<tenant>:<period>.<index>          # only for tenants whose plan has a limit

(one pipeline per flush for every tenant due, so one round trip; ``PEXPIRE`` once, when this
process's field is new.) The value written is this process's **absolute** count for the
period, so a flush is idempotent: a reply lost after the server applied it, and the flush sent
again, counts nothing twice. The sum of the fields (``HVALS``) is the fleet's total, which sets
the verdict. A tenant flushes every ``flush_interval`` seconds (default 300, each tenant at its
own offset so flushes spread out), or at the next one-second check when its unflushed units
exceed ``early_fraction`` of what its plan has left.

A tenant at or over its plan goes **local-only**: the gateway refuses its commands without I/O
(components fall back to local state: the cache serves L1, limiters their local share) until the
period rolls over; an event and a warning say so. Units counted but not flushed when a period
ends are reported in the new period.

What a crash can lose: a failed flush keeps everything for the next one. With ``spool`` (a
JSON file) the absolute counts are written to it every second while they change, and at
shutdown; the next process that loads the file reports them under the old process's field
(idempotent again), so a process killed with SIGKILL loses at most the units it counted in the
last second. Without a spool, a crash loses what was counted since the last flush (at most
``flush_interval`` seconds of traffic). The quota's own commands carry no tenant, so they never
count against one: no recursion.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import secrets
import zlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

from lowtide._listeners import Listeners
from lowtide._validate import fraction, seconds
from lowtide.context import Attribution
from lowtide.errors import ConfigError, LowtideError
from lowtide.keys import build_key, family

if TYPE_CHECKING:
    from lowtide.blocklist import TenantBlockList
    from lowtide.runtime import HubView

__all__ = ["Period", "QuotaEvent", "Quotas", "QuotasKwargs"]

log = logging.getLogger("lowtide.quotas")
Period = Literal["hour", "day", "month"]
PlanOf = Callable[[str], "str | Awaitable[str | None] | None"]
_PERIOD_S = {"hour": 3600.0, "day": 86_400.0, "month": 30 * 86_400.0}


class QuotaEvent(NamedTuple):
    """A tenant crossed its plan (``over=True``) or got its budget back (period rolled over)."""

    tenant: str
    plan: str
    used: int
    limit: int
    over: bool
    period: str


class QuotasKwargs(TypedDict, total=False):
    """The optional :class:`Quotas` arguments, as :meth:`Lowtide.quotas` takes them (each
    default lives in :class:`Quotas`)."""

    period: Period
    flush_interval: float
    early_fraction: float
    plan_ttl: float
    spool: str | os.PathLike[str] | None


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
        self._used: dict[str, int] = {}  # fleet total per tenant in the current period
        self._last_flush: dict[str, float] = {}
        self._plans_seen: dict[str, tuple[str | None, float]] = {}
        self._period_index = self._index()
        self._started = hub.clock.monotonic()
        self._listeners: Listeners[QuotaEvent] = Listeners(log, "quota listener")
        self._over: dict[str, QuotaEvent] = {}
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.flush_errors = 0
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
        local = self._hub.ledger.billed_by_tenant().get(tenant, 0)
        pending = local - self._flushed.get(tenant, 0)
        return self._used.get(tenant, 0) + max(0, pending)

    def counter_key(self, tenant: str) -> str:
        """The Redis key of ``tenant``'s usage hash for the current period (one field per
        process, the fleet's total is the sum of the fields)."""
        return self._key(tenant, self._index())

    async def fleet_total(self, tenant: str) -> int:
        """The fleet's billed units of ``tenant`` this period as flushed so far (1 HVALS)."""
        return _sum_fields(
            await self._hub.gateway.call(self._att, "HVALS", self.counter_key(tenant))
        )

    def start(self) -> None:
        """Start the background flusher (idempotent; :meth:`Lowtide.quotas` calls it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self, *, everything: bool = True) -> int:
        """Flush now (every tenant with unreported units, or only those due); returns how many
        tenants were reported. Idempotent: each value written is an absolute count."""
        self._roll_period()
        if not self._hub.distributed:
            return 0
        now = self._hub.clock.monotonic()
        totals = self._hub.ledger.billed_by_tenant()
        due: list[tuple[str, int, bool]] = []  # tenant, ledger total, read the fleet total
        for tenant, total in totals.items():
            unreported = total - self._flushed.get(tenant, 0)
            if unreported <= 0:
                continue
            if not everything and not await self._is_due(tenant, unreported, now):
                continue
            _, limit = await self._plan(tenant)
            due.append((tenant, total, limit is not None))
        orphans, self._orphans = self._orphans, []
        if not due and not orphans:
            return 0
        idx = self._period_index
        cmds: list[tuple[Any, ...]] = []
        for tenant, total, read in due:
            key = self._key(tenant, idx)
            cmds.append(("HSET", key, self.source, total - self._base.get(tenant, 0)))
            if read:
                cmds.append(("HVALS", key))
        written: list[str] = []
        for index, source, counts in orphans:
            for tenant, units in counts.items():
                written.append(self._key(tenant, index))
                cmds.append(("HSET", written[-1], source, units))
        try:
            replies = await self._hub.gateway.pipeline(self._att, cmds)
        except LowtideError as exc:
            self._orphans = orphans + self._orphans
            self.flush_errors += 1
            log.debug("quota flush failed (kept for the next one): %s", exc)
            return 0
        expire: list[tuple[Any, ...]] = []
        pos = 0
        for tenant, total, read in due:
            created, pos = replies[pos], pos + 1
            fleet = replies[pos] if read else None
            pos += 1 if read else 0
            if isinstance(created, Exception) or isinstance(fleet, Exception):
                self.flush_errors += 1
                continue
            self._flushed[tenant] = total
            self._last_flush[tenant] = now
            if created == 1:  # this process's field is new: give the hash a lifetime
                expire.append(("PEXPIRE", self._key(tenant, idx), self._ttl_ms()))
            if read:
                self._used[tenant] = _sum_fields(fleet)
                await self._verdict(tenant, self._used[tenant])
        expire += [("PEXPIRE", key, self._ttl_ms()) for key in written]
        if expire:
            with contextlib.suppress(LowtideError):
                await self._hub.gateway.pipeline(self._att, expire)
        self.flushes += 1
        return len(due)

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
            "tenants": len(self._used),
            "over_quota": sorted(self._hub_blocked()),
        }

    # -- internals ----------------------------------------------------------------------------
    def _hub_blocked(self) -> TenantBlockList:
        return self._hub.quota_blocked

    def _index(self) -> int:
        return math.floor(self._hub.clock.time() / _PERIOD_S[self.period])

    def _key(self, tenant: str, index: int) -> str:
        return build_key(self._ns, "quota", "usage", tenant, f"{self.period}.{index}")

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

    async def _is_due(self, tenant: str, delta: int, now: float) -> bool:
        last = self._last_flush.get(tenant)
        if last is None:
            # first flush of a tenant at a stable offset within the interval, so a fleet's
            # flushes spread evenly instead of arriving together
            last = self._started - (zlib.crc32(tenant.encode()) % 1000) / 1000 * self.flush_interval
        if now - last >= self.flush_interval:
            return True
        _, limit = await self._plan(tenant)
        if limit is None:
            return False
        left = limit - self._used.get(tenant, 0)
        return delta >= self.early_fraction * max(left, 0)

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
        self._last_flush.clear()
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
        if self.spool is None or not self.spool.exists():
            return
        try:
            data = json.loads(self.spool.read_text())
        except (OSError, ValueError) as exc:
            log.warning("could not read the quota spool %s: %s", self.spool, exc)
            return
        for entry in data.get("pending", []) if isinstance(data, dict) else []:
            try:
                index, source, counts = entry["index"], entry["source"], entry["counts"]
            except (KeyError, TypeError):
                continue
            if not (
                isinstance(index, int) and isinstance(source, str) and isinstance(counts, dict)
            ):
                continue
            clean = {
                t: n
                for t, n in counts.items()
                if isinstance(t, str) and isinstance(n, int) and not isinstance(n, bool) and n > 0
            }
            if clean:
                self._orphans.append((index, source, clean))
        # files written before absolute counts: {"unflushed": {tenant: units}}
        legacy = data.get("unflushed") if isinstance(data, dict) else None
        if isinstance(legacy, dict):
            clean = {t: n for t, n in legacy.items() if isinstance(t, str) and isinstance(n, int)}
            if clean:
                self._orphans.append((self._period_index, f"spool.{secrets.token_hex(4)}", clean))

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
        try:
            if pending:
                tmp = self.spool.with_name(self.spool.name + ".tmp")
                tmp.write_text(json.dumps({"period": self.period, "pending": pending}))
                tmp.replace(self.spool)
            else:
                self.spool.unlink(missing_ok=True)
            self._spooled = counts
        except OSError as exc:
            log.warning("could not write the quota spool %s: %s", self.spool, exc)


def _sum_fields(reply: Any) -> int:
    """The fleet total from an HVALS reply (values that are not counts are ignored)."""
    total = 0
    for value in reply if isinstance(reply, list) else []:
        try:
            n = int(value)
        except (TypeError, ValueError):
            continue
        if n > 0:
            total += n
    return total
