"""The command ledger: what lowtide sent to Redis, by whom, for which tenant, at what cost."""

from lowtide.ledger.ledger import OTHER_TENANT, Ledger
from lowtide.ledger.naming import command_name, known_name
from lowtide.ledger.providers import BillingProfile, billing_profile, profile_for_provider
from lowtide.ledger.snapshot import (
    MIN_PROJECTION_S,
    LedgerRow,
    LedgerSnapshot,
    LedgerTotals,
    MinuteBucket,
)

__all__ = [
    "MIN_PROJECTION_S",
    "OTHER_TENANT",
    "BillingProfile",
    "Ledger",
    "LedgerRow",
    "LedgerSnapshot",
    "LedgerTotals",
    "MinuteBucket",
    "billing_profile",
    "command_name",
    "known_name",
    "profile_for_provider",
]
