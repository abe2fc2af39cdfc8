"""Decimal USD helpers. Money is Decimal end to end; rounding happens only for display."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
MAX_USD = Decimal(1_000_000_000)
"""The largest amount costguard takes anywhere (a budget, --max-usd, a ledger entry): USD 1e9.

Anything larger is refused as bad input rather than stored: no real image queue costs more, and
an amount like 1e309 would be stored exactly but break every sum and display that follows.
"""


def per_mtok(tokens: int, rate_per_million: Decimal) -> Decimal:
    """Exact cost of `tokens` at `rate_per_million` USD per 1M tokens."""
    return Decimal(tokens) * rate_per_million / MILLION


def usd(amount: Decimal, places: int = 4) -> str:
    """Format for display: `$1.2346`. Never feed the result back into arithmetic."""
    quantum = Decimal(1).scaleb(-places)
    return f"${amount.quantize(quantum, rounding=ROUND_HALF_UP):,}"


def plain(amount: Decimal) -> str:
    """Exact decimal string for machine output (JSON, CSV), normalised without exponent."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def usd_exact(amount: Decimal) -> str:
    """`$` and the exact amount, at least to the cent (for limits and shortfalls)."""
    text = plain(amount)
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"
