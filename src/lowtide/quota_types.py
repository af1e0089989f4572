"""The quota component's public types: periods, plan lookups, events and options."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Literal, NamedTuple, TypedDict

__all__ = ["Period", "PlanOf", "QuotaEvent", "QuotasKwargs"]

#: the length of a quota period
Period = Literal["hour", "day", "month"]
#: a tenant's plan name (or None: no plan, unlimited), plain or awaited
PlanOf = Callable[[str], "str | Awaitable[str | None] | None"]


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
