"""The command ledger: counts every command lowtide writes to a Redis connection.

The counting connection (:mod:`lowtide.redis.connection`) calls :meth:`Ledger.record` with the
names of the commands it has just written, each labelled with the :class:`Attribution` that was
current when the command was packed. Lua scripts report the commands they ran and the gateway
adds them with :meth:`Ledger.record_inner`. Billing is applied at snapshot time, so the hot path
is two dict updates per command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from lowtide.clock import Clock, SystemClock
from lowtide.context import Attribution
from lowtide.ledger.providers import BillingProfile, billing_profile
from lowtide.ledger.snapshot import LedgerRow, LedgerSnapshot, MinuteBucket

__all__ = ["OTHER_TENANT", "Ledger"]

#: tenant label used once the ledger holds ``max_rows`` distinct rows
OTHER_TENANT: Final = "~other"
_MINUTES_KEPT: Final = 60
_PROJECTION_WINDOW_S: Final = 600.0

_Key = tuple[str, Attribution]


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
        self.profile = profile or billing_profile("redis")
        self.instance = instance
        self.provider = provider
        self._clock = clock or SystemClock()
        self._now = self._clock.monotonic
        self._max_rows = max_rows
        self._counts: dict[_Key, int] = {}
        self._inner: int = 0
        # cumulative per-command totals at the first record of each minute: per-minute series
        # come from differences, so the hot path updates one dict entry per command
        self._marks: dict[int, dict[str, int]] = {}
        self._minute: int | None = None
        self._started = self._clock.monotonic()
        self._wall_offset = self._clock.time() - self._started

    # -- hot path -------------------------------------------------------------------------
    def record(self, entries: Iterable[tuple[str, Attribution]]) -> None:
        """Count commands just written to a connection: ``(command name, attribution)`` pairs."""
        minute = int(self._now() // 60)
        if minute != self._minute:
            self._roll(minute)
        counts = self._counts
        for entry in entries:
            try:
                counts[entry] += 1
            except KeyError:
                if len(counts) >= self._max_rows:
                    entry = self._fold(entry)
                    counts[entry] = counts.get(entry, 0) + 1
                else:
                    counts[entry] = 1

    def record_inner(self, commands: Mapping[str, int], attribution: Attribution) -> None:
        """Count commands a Lua script ran with ``redis.call`` (the server counts them too)."""
        entries: list[tuple[str, Attribution]] = []
        for name, n in commands.items():
            entries.extend([(name, attribution)] * n)
            self._inner += n
        self.record(entries)

    def _fold(self, entry: _Key) -> _Key:
        name, att = entry
        return name, Attribution(att.component, att.family, OTHER_TENANT)

    def _roll(self, minute: int) -> None:
        self._minute = minute
        self._marks[minute] = self._by_command()
        for old in [m for m in self._marks if m <= minute - _MINUTES_KEPT]:
            del self._marks[old]

    def _by_command(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (name, _), n in self._counts.items():
            out[name] = out.get(name, 0) + n
        return out

    # -- views ----------------------------------------------------------------------------
    def billed_by_tenant(self, profile: BillingProfile | None = None) -> dict[str, int]:
        """Billed units so far per tenant (commands with no tenant are left out)."""
        prof = profile or self.profile
        units: dict[str, int] = {}
        out: dict[str, int] = {}
        for (name, att), n in list(self._counts.items()):
            tenant = att.tenant
            if tenant is None:
                continue
            u = units.get(name)
            if u is None:
                u = units[name] = prof.units(name)
            if u:
                out[tenant] = out.get(tenant, 0) + u * n
        return out

    @property
    def total(self) -> int:
        """Commands counted so far."""
        return sum(self._counts.values())

    def reset(self) -> None:
        """Forget every count and restart the projection window."""
        self._counts.clear()
        self._marks.clear()
        self._minute = None
        self._inner = 0
        self._started = self._clock.monotonic()

    def snapshot(self, profile: BillingProfile | str | None = None) -> LedgerSnapshot:
        """A frozen copy of the counts, billed under ``profile`` (default: the ledger's)."""
        prof = (
            billing_profile(profile, self.profile.read_regions)
            if isinstance(profile, str)
            else profile or self.profile
        )
        now = self._clock.monotonic()
        by_command: dict[str, int] = {}
        by_component: dict[str, int] = {}
        by_family: dict[str, int] = {}
        by_tenant: dict[str, int] = {}
        rows: list[LedgerRow] = []
        for (name, att), n in sorted(self._counts.items(), key=_row_order):
            by_command[name] = by_command.get(name, 0) + n
            by_component[att.component] = by_component.get(att.component, 0) + n
            by_family[att.family] = by_family.get(att.family, 0) + n
            t = "-" if att.tenant is None else att.tenant
            by_tenant[t] = by_tenant.get(t, 0) + n
            rows.append(
                LedgerRow(att.component, name, att.family, att.tenant, n, prof.units(name) * n)
            )
        total = sum(by_command.values())
        billed = prof.billed(by_command)

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
        span = max(now - max(self._started, first_minute * 60.0), 1.0)
        per_day = recent_cmds / span * 86_400
        billed_per_day = recent_billed / span * 86_400
        return LedgerSnapshot(
            instance=self.instance,
            provider=self.provider,
            profile=prof.name,
            taken_at=self._clock.time(),
            elapsed_s=now - self._started,
            total=total,
            billed=billed,
            script_inner=self._inner,
            by_command=by_command,
            by_component=by_component,
            by_family=by_family,
            by_tenant=by_tenant,
            rows=tuple(rows),
            per_minute=per_minute,
            per_day=per_day,
            billed_per_day=billed_per_day,
            usd_per_month=prof.usd(billed_per_day * 30),
        )
