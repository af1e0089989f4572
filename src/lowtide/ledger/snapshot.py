"""The ledger's frozen, exportable view."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = [
    "MIN_PROJECTION_S",
    "LedgerRow",
    "LedgerSnapshot",
    "LedgerTotals",
    "MinuteBucket",
    "rounded",
]

#: seconds of counting before the ledger projects per-day figures: a rate read over the first
#: seconds after start turns a handful of start-up commands into hundreds of thousands a day
MIN_PROJECTION_S: Final = 60.0


def rounded(value: float | None, digits: int) -> float | None:
    """``round(value, digits)`` of a projection; None (no projection yet) stays None."""
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Commands counted for one (component, command, key family, tenant)."""

    component: str
    command: str
    family: str
    tenant: str | None
    count: int
    billed: int


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    """Commands and billed units sent during one wall-clock minute."""

    start: float
    commands: int
    billed: int


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """The ledger's running totals and projection, without its rows.

    What ``lt.health()`` reports. Reading it costs the same with 10 or 50,000 ledger rows: it
    comes from per-command totals the ledger keeps as it counts (see
    :meth:`~lowtide.ledger.Ledger.totals`).
    """

    instance: str
    provider: str
    profile: str
    taken_at: float
    elapsed_s: float
    total: int
    billed: int
    script_inner: int
    by_command: dict[str, int]
    per_minute: tuple[MinuteBucket, ...]
    #: seconds of counting the projections rest on (the last 10 minutes at most)
    projection_s: float
    #: projected commands per day at the recent rate; None until :data:`MIN_PROJECTION_S`
    per_day: float | None
    #: projected billed units per day at the recent rate (None as ``per_day``)
    billed_per_day: float | None
    #: projected dollars per 30-day month under the billing profile (None as ``per_day``)
    usd_per_month: float | None


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """What lowtide has sent to Redis since the ledger started (or was reset).

    ``by_command`` uses the server's naming (``get``, ``client|tracking``) and includes
    connection set-up, health checks, retries and the commands Lua scripts ran, so for a
    process that is the server's only client it equals the delta of ``INFO commandstats``
    (``calls + rejected_calls``).
    """

    instance: str
    provider: str
    profile: str
    taken_at: float
    elapsed_s: float
    total: int
    billed: int
    script_inner: int
    by_command: dict[str, int]
    by_component: dict[str, int]
    by_family: dict[str, int]
    by_tenant: dict[str, int]
    rows: tuple[LedgerRow, ...]
    per_minute: tuple[MinuteBucket, ...]
    #: seconds of counting the projections rest on (the last 10 minutes at most)
    projection_s: float
    #: projected commands per day at the recent rate; None until :data:`MIN_PROJECTION_S`
    per_day: float | None
    #: projected billed units per day at the recent rate (None as ``per_day``)
    billed_per_day: float | None
    #: projected dollars per 30-day month under the billing profile (None as ``per_day``)
    usd_per_month: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tenants without a tenant are shown as ``"-"``)."""
        d = asdict(self)
        d["rows"] = [dict(r, tenant="-" if r["tenant"] is None else r["tenant"]) for r in d["rows"]]
        return d
