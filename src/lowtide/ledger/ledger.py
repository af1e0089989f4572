"""The command ledger: counts every command lowtide writes to a Redis connection.

The counting connection (:mod:`lowtide.redis.connection`) calls :meth:`Ledger.record` with the
names of the commands it has just written, each labelled with the :class:`Attribution` that was
current when the command was packed. Lua scripts report the commands they ran and the gateway
adds them with :meth:`Ledger.record_inner`.

The hot path is one dict lookup and one integer addition per command, and no clock read while a
timer of the running event loop watches for the next minute (see :meth:`Ledger.record`). Each
row keeps references to the running totals it feeds (its (component, command, family) group and
its tenant's billed units). A row counted since the last *fold* is listed once; every view that
reads those totals first folds the listed rows into them (under a lock: metrics may read from
another thread), and a record that would list more than ``_MAX_LISTED`` rows folds them itself.
So the views health and metrics read (:meth:`Ledger.totals`, :meth:`Ledger.groups`,
:meth:`Ledger.top_tenants`, :meth:`Ledger.tenant_rows`) never walk the rows, only at most
``_MAX_LISTED`` of them counted since the last fold; per-command totals are summed from the
groups, whose number is bounded by the code (components, commands, key families), not by
tenants. Only :meth:`Ledger.snapshot` copies and sorts every row.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from lowtide.clock import Clock, SystemClock
from lowtide.context import Attribution
from lowtide.ledger.providers import BillingProfile, billing_profile
from lowtide.ledger.snapshot import (
    MIN_PROJECTION_S,
    LedgerRow,
    LedgerSnapshot,
    LedgerTotals,
    MinuteBucket,
)

__all__ = ["OTHER_TENANT", "Group", "Ledger"]

#: tenant label used once the ledger holds ``max_rows`` distinct rows
OTHER_TENANT: Final = "~other"
_MINUTES_KEPT: Final = 60
#: rows listed for the next fold at most (about): the record that lists one more folds them, so
#: a view never folds more than this many rows (~0.2 ms), however many rows a workload touches
_MAX_LISTED: Final = 1024
_PROJECTION_WINDOW_S: Final = 600.0

_Key = tuple[str, Attribution]
#: (component, command, key family, whether the commands had a tenant)
Group = tuple[str, str, str, bool]


class _Total:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Tenant:
    """One tenant's billed units under the ledger's profile, and its rows."""

    __slots__ = ("billed", "rows")

    def __init__(self) -> None:
        self.billed = 0
        self.rows: list[tuple[_Key, _Row]] = []


class _Row:
    """One ledger row's count and the running totals every command of it adds to: ``folded``
    of its ``n`` commands are in them; ``dirty`` while it is listed for the next fold."""

    __slots__ = ("dirty", "folded", "group", "n", "tenant", "units")

    def __init__(self, group: _Total, tenant: _Tenant | None, units: int) -> None:
        self.n = 0
        self.folded = 0
        self.dirty = False
        self.group = group
        self.tenant = tenant
        self.units = units


def _row_order(kv: tuple[_Key, int]) -> tuple[int, str, str, str, str]:
    (name, att), n = kv
    return (-n, name, att.component, att.family, att.tenant or "")


class Ledger:
    """Counts commands by (component, command, key family, tenant) and projects their cost.

    Memory is bounded: at most ``max_rows`` distinct rows are kept exactly; past that, new
    tenants are counted under ``~other`` (totals stay exact).
    """

    def __init__(
        self,
        profile: BillingProfile | None = None,
        *,
        instance: str = "-",
        provider: str = "redis",
        clock: Clock | None = None,
        max_rows: int = 50_000,
    ) -> None:
        self._profile = profile or billing_profile("redis")
        self.instance = instance
        self.provider = provider
        self._clock = clock or SystemClock()
        self._now = self._clock.monotonic
        self._max_rows = max_rows
        self._rows: dict[_Key, _Row] = {}
        # running totals, each fed by the rows that reference it when they are folded
        self._groups: dict[Group, _Total] = {}
        self._tenants: dict[str, _Tenant] = {}
        #: rows counted since the last fold (each once); only ever appended to by records, and
        #: only cut from the front by a fold, which holds ``_lock``
        self._dirty: list[_Row] = []
        self._lock = threading.Lock()
        self._inner: int = 0
        self._generation = 0
        # cumulative per-command totals at the first record of each minute: per-minute series
        # come from differences, so the hot path updates one dict entry per command
        self._marks: dict[int, dict[str, int]] = {}
        self._minute: int | None = None
        self._next_minute = -math.inf  # monotonic time at which the next minute starts
        #: read the clock at the next record (a new minute may have started); False while a
        #: timer of the running event loop is set to say when the next minute starts
        self._look = True
        self._woken = False  # a timer fired (perhaps a little early): set the next one
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        #: whether a loop timer can stand in for the clock (a clock moving at real speed)
        self._timed = isinstance(self._clock, SystemClock)
        self._started = self._clock.monotonic()
        self._wall_offset = self._clock.time() - self._started

    @property
    def profile(self) -> BillingProfile:
        """The billing profile the running billed totals use."""
        return self._profile

    @profile.setter
    def profile(self, profile: BillingProfile) -> None:
        with self._lock:
            self._fold()
            self._profile = profile
            for t in list(self._tenants.values()):
                t.billed = 0
            for (name, _), row in list(self._rows.items()):
                row.units = profile.units(name)
                if row.tenant is not None:
                    row.tenant.billed += row.units * row.folded

    @property
    def generation(self) -> int:
        """How many times :meth:`reset` ran: counters read before and after do not compare."""
        return self._generation

    # -- hot path -------------------------------------------------------------------------
    def record(self, entries: Sequence[tuple[str, Attribution]]) -> None:
        """Count commands just written to a connection: ``(command name, attribution)`` pairs.

        The per-minute marks are taken at the first record of each minute. With the system clock
        and a running event loop, the clock is read only at the first record after a loop timer
        said the next minute started (records in the same loop iteration as that moment count in
        the minute before); otherwise (no running loop, an injected clock) at every record.
        """
        if self._look:
            self._tick()
        rows = self._rows
        if len(entries) == 1:  # a send of one command, the commonest, without the loop (~20 ns)
            entry = entries[0]
            row = rows.get(entry)
            if row is None:
                row = self._new_row(entry)
            row.n += 1
            if not row.dirty:  # its first command since the last fold
                self._list(row)
            return
        for entry in entries:
            row = rows.get(entry)
            if row is None:
                row = self._new_row(entry)
            row.n += 1
            if not row.dirty:
                self._list(row)

    def record_inner(self, commands: Mapping[str, int], attribution: Attribution) -> None:
        """Count commands a Lua script ran with ``redis.call`` (the server counts them too)."""
        entries: list[tuple[str, Attribution]] = []
        for name, n in commands.items():
            entries.extend([(name, attribution)] * n)
            self._inner += n
        self.record(entries)

    def _new_row(self, entry: _Key) -> _Row:
        if len(self._rows) >= self._max_rows:
            name, att = entry
            entry = name, Attribution(att.component, att.family, OTHER_TENANT)
            row = self._rows.get(entry)
            if row is not None:
                return row
        name, att = entry
        group_key = (att.component, name, att.family, att.tenant is not None)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Total()
        tenant: _Tenant | None = None
        if att.tenant is not None:
            tenant = self._tenants.get(att.tenant)
            if tenant is None:
                tenant = self._tenants[att.tenant] = _Tenant()
        row = self._rows[entry] = _Row(group, tenant, self._profile.units(name))
        if tenant is not None:
            tenant.rows.append((entry, row))
        return row

    def _list(self, row: _Row) -> None:
        row.dirty = True
        dirty = self._dirty
        dirty.append(row)
        if len(dirty) >= _MAX_LISTED and self._lock.acquire(blocking=False):
            try:  # (a view folding right now in another thread does it instead)
                self._fold()
            finally:
                self._lock.release()

    def _fold(self) -> None:
        """Add what the listed rows counted since the last fold to their group's and tenant's
        totals. The caller holds ``_lock``. A record may run meanwhile in another thread: it only
        raises ``row.n``, marks a row and appends it to ``_dirty``."""
        dirty = self._dirty
        k = len(dirty)
        if not k:
            return
        batch = dirty[:k]
        del dirty[:k]  # rows appended meanwhile stay listed
        for row in batch:
            row.dirty = False  # before reading n: a command counted after this lists it again
            n = row.n
            added = n - row.folded
            row.folded = n
            row.group.n += added
            tenant = row.tenant
            if tenant is not None:
                tenant.billed += added * row.units

    def _folded(self) -> None:
        """Bring the running totals up to every command recorded so far (views call it)."""
        with self._lock:
            self._fold()

    def _tick(self) -> None:
        now = self._now()
        if now >= self._next_minute:
            self._roll(now)
        elif not self._woken:
            return  # within the minute, no timer: nothing more until the next one
        self._woken = False
        if not self._timed:
            return
        try:  # once a minute at most (or when a timer fired early)
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop in this thread: the clock is read at every record
        if self._timer is not None and self._timer_loop is loop:
            self._timer.cancel()  # after a reset: one timer at a time
        self._timer = loop.call_later(self._next_minute - now, self._wake)
        self._timer_loop = loop
        self._look = False

    def _wake(self) -> None:
        self._timer = None
        self._woken = True
        self._look = True

    def _roll(self, now: float) -> None:
        """The first record of a new minute: mark the totals it starts from."""
        minute = int(now // 60)
        self._next_minute = (minute + 1) * 60.0
        if minute == self._minute:
            return
        self._minute = minute
        self._folded()
        self._marks[minute] = self._by_command()
        for old in [m for m in self._marks if m <= minute - _MINUTES_KEPT]:
            del self._marks[old]

    def _by_command(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, name, _, _), t in list(self._groups.items()):
            out[name] = out.get(name, 0) + t.n
        return out

    def _resolve(self, profile: BillingProfile | str | None) -> BillingProfile:
        if isinstance(profile, str):
            return billing_profile(profile, self._profile.read_regions)
        return profile or self._profile

    # -- views that never walk the rows ---------------------------------------------------
    @property
    def total(self) -> int:
        """Commands counted so far."""
        self._folded()
        return sum(t.n for t in list(self._groups.values()))

    def totals(self, profile: BillingProfile | str | None = None) -> LedgerTotals:
        """Totals and projection billed under ``profile`` (default: the ledger's), no rows.

        Costs O(distinct commands x minutes kept), whatever the number of rows or tenants.
        """
        prof = self._resolve(profile)
        self._folded()
        return LedgerTotals(**self._summary(prof, self._by_command()))

    def _summary(self, prof: BillingProfile, by_command: dict[str, int]) -> dict[str, Any]:
        """The fields :class:`LedgerTotals` and :class:`LedgerSnapshot` share."""
        now = self._clock.monotonic()
        per_minute, span, per_day, billed_per_day = self._projection(prof, by_command, now)
        return {
            "instance": self.instance,
            "provider": self.provider,
            "profile": prof.name,
            "taken_at": self._clock.time(),
            "elapsed_s": now - self._started,
            "total": sum(by_command.values()),
            "billed": prof.billed(by_command),
            "script_inner": self._inner,
            "by_command": by_command,
            "per_minute": per_minute,
            "projection_s": span,
            "per_day": per_day,
            "billed_per_day": billed_per_day,
            "usd_per_month": None if billed_per_day is None else prof.usd(billed_per_day * 30),
        }

    def groups(self) -> dict[Group, int]:
        """Commands by (component, command, key family, had a tenant): no tenant dimension.

        Bounded by the code's components, commands and key families (families never hold
        ids), not by the number of tenants.
        """
        self._folded()
        return {g: t.n for g, t in list(self._groups.items())}

    def top_tenants(self, n: int, *, exclude: Collection[str] = ()) -> list[tuple[str, int]]:
        """The ``n`` tenants with the most billed units (ledger profile), heaviest first.

        Tenants in ``exclude`` and tenants with no billed unit are left out; ties go to the
        greater tenant id. One pass over a per-tenant total (``heapq.nlargest``), no sort.
        """
        if n <= 0:
            return []
        self._folded()
        candidates = (
            (t, s.billed)
            for t, s in list(self._tenants.items())
            if s.billed > 0 and t not in exclude
        )
        return heapq.nlargest(n, candidates, key=lambda kv: (kv[1], kv[0]))

    def tenant_rows(self, tenant: str) -> dict[tuple[str, str, str], int]:
        """Commands of one tenant by (component, command, key family): that tenant's rows only."""
        t = self._tenants.get(tenant)
        if t is None:
            return {}
        return {(att.component, name, att.family): row.n for (name, att), row in list(t.rows)}

    def billed_by_tenant(self, profile: BillingProfile | None = None) -> dict[str, int]:
        """Billed units so far per tenant (commands with no tenant are left out)."""
        prof = profile or self._profile
        if prof == self._profile:
            self._folded()
            return {t: s.billed for t, s in list(self._tenants.items()) if s.billed}
        units: dict[str, int] = {}
        out: dict[str, int] = {}
        for (name, att), row in list(self._rows.items()):
            tenant = att.tenant
            if tenant is None:
                continue
            u = units.get(name)
            if u is None:
                u = units[name] = prof.units(name)
            if u:
                out[tenant] = out.get(tenant, 0) + u * row.n
        return out

    def reset(self) -> None:
        """Forget every count and restart the projection window."""
        with self._lock:
            self._dirty.clear()
        self._rows.clear()
        self._groups.clear()
        self._tenants.clear()
        self._marks.clear()
        self._minute = None
        self._next_minute = -math.inf
        self._look = True
        self._inner = 0
        self._generation += 1
        self._started = self._clock.monotonic()

    def _projection(
        self, prof: BillingProfile, by_command: dict[str, int], now: float
    ) -> tuple[tuple[MinuteBucket, ...], float, float | None, float | None]:
        """Per-minute buckets, the seconds the rates rest on, and commands and billed units per
        day at the recent rate (None before :data:`MIN_PROJECTION_S` seconds of counting)."""
        marks = sorted(self._marks.items())
        buckets: list[tuple[int, dict[str, int]]] = []
        for i, (m, mark) in enumerate(marks):
            nxt = marks[i + 1][1] if i + 1 < len(marks) else by_command
            buckets.append(
                (m, {k: v - mark.get(k, 0) for k, v in nxt.items() if v - mark.get(k, 0)})
            )
        per_minute = tuple(
            MinuteBucket(
                start=m * 60 + self._wall_offset, commands=sum(b.values()), billed=prof.billed(b)
            )
            for m, b in buckets
        )
        first_minute = int(max(self._started, now - _PROJECTION_WINDOW_S) // 60)
        recent_cmds = sum(
            mb.commands for (m, _), mb in zip(buckets, per_minute, strict=True) if m >= first_minute
        )
        recent_billed = sum(
            mb.billed for (m, _), mb in zip(buckets, per_minute, strict=True) if m >= first_minute
        )
        # the window is whole minutes from first_minute, but never before the ledger started
        span = max(now - max(self._started, first_minute * 60.0), 0.0)
        if span < MIN_PROJECTION_S:
            return per_minute, span, None, None
        return per_minute, span, recent_cmds / span * 86_400, recent_billed / span * 86_400

    # -- the full copy --------------------------------------------------------------------
    def snapshot(self, profile: BillingProfile | str | None = None) -> LedgerSnapshot:
        """A frozen copy of every row, billed under ``profile`` (default: the ledger's).

        Walks and sorts every row: for health and metrics use :meth:`totals`,
        :meth:`groups` and :meth:`top_tenants`, which do not.
        """
        prof = self._resolve(profile)
        counts = [(key, row.n) for key, row in list(self._rows.items())]
        by_command: dict[str, int] = {}
        by_component: dict[str, int] = {}
        by_family: dict[str, int] = {}
        by_tenant: dict[str, int] = {}
        rows: list[LedgerRow] = []
        for (name, att), n in sorted(counts, key=_row_order):
            by_command[name] = by_command.get(name, 0) + n
            by_component[att.component] = by_component.get(att.component, 0) + n
            by_family[att.family] = by_family.get(att.family, 0) + n
            t = "-" if att.tenant is None else att.tenant
            by_tenant[t] = by_tenant.get(t, 0) + n
            rows.append(
                LedgerRow(att.component, name, att.family, att.tenant, n, prof.units(name) * n)
            )
        return LedgerSnapshot(
            **self._summary(prof, by_command),
            by_component=by_component,
            by_family=by_family,
            by_tenant=by_tenant,
            rows=tuple(rows),
        )
