"""Pure budget policy: does a maximum cost fit a limit, and by how much does it miss."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of checking a maximum cost against a limit."""

    limit: Decimal
    needed: Decimal
    fits: bool
    shortfall: Decimal
    """How much the maximum passes the limit (0 when it fits)."""


def check(needed: Decimal, limit: Decimal) -> Decision:
    """Admit `needed` (a maximum cost) under `limit` only if it cannot pass it."""
    fits = needed <= limit
    return Decision(limit, needed, fits, Decimal(0) if fits else needed - limit)
