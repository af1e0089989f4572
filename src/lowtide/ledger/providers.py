"""Billing profiles: which commands a provider charges for, and at what price."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from lowtide.errors import ConfigError

__all__ = ["BillingProfile", "billing_profile", "profile_for_provider"]


@dataclass(frozen=True, slots=True)
class BillingProfile:
    """How one provider turns commands into billed units and dollars."""

    name: str
    description: str
    usd_per_100k: float
    free: frozenset[str]
    writes_per_region: bool
    writes: frozenset[str]
    read_regions: int = 0

    def units(self, command: str) -> int:
        """Billed units for one ``command`` (server naming)."""
        if command in self.free or command.split("|", 1)[0] in self.free:
            return 0
        if self.writes_per_region and command in self.writes:
            return 1 + self.read_regions
        return 1

    def billed(self, by_command: Mapping[str, int]) -> int:
        """Billed units for a count of commands by name."""
        return sum(self.units(cmd) * n for cmd, n in by_command.items())

    def usd(self, units: float) -> float:
        """Dollars for ``units`` billed units."""
        return units * self.usd_per_100k / 100_000

    def with_regions(self, read_regions: int) -> BillingProfile:
        """This profile for a database with ``read_regions`` read regions."""
        return BillingProfile(
            self.name,
            self.description,
            self.usd_per_100k,
            self.free,
            self.writes_per_region,
            self.writes,
            read_regions,
        )


@cache
def _load() -> dict[str, object]:
    text = resources.files("lowtide.ledger").joinpath("providers.toml").read_text("utf-8")
    return tomllib.loads(text)


def billing_profile(name: str, read_regions: int = 0) -> BillingProfile:
    """The billing profile called ``name`` (``redis`` or ``upstash``)."""
    data = _load()
    raw = data.get(name)
    if name == "writes" or not isinstance(raw, dict):
        raise ConfigError(f"unknown billing profile {name!r}")
    writes_table = data.get("writes")
    if not isinstance(writes_table, dict):
        raise ConfigError("providers.toml has no [writes] table")
    return BillingProfile(
        name=name,
        description=str(raw["description"]),
        usd_per_100k=float(raw["usd_per_100k"]),
        free=frozenset(str(c) for c in raw["free"]),
        writes_per_region=bool(raw["writes_per_region"]),
        writes=frozenset(str(c) for c in writes_table["commands"]),
        read_regions=read_regions,
    )


def profile_for_provider(provider: str, read_regions: int = 0) -> BillingProfile:
    """The billing profile that applies to a server of kind ``provider``."""
    return billing_profile("upstash" if provider == "upstash" else "redis", read_regions)
