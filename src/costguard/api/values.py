"""Dates and amounts as the CLI and the Python API take them: one parser for each, so
`--max-usd 12.50` and `max_usd="12.50"` mean the same and are refused with the same words."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from costguard.errors import UsageError
from costguard.money import MAX_USD, ZERO, usd_exact


def as_date(value: dt.date | str | None, what: str = "as_of") -> dt.date:
    """`as_of` as a date: a `date`, an ISO `YYYY-MM-DD` string, or None for today (UTC)."""
    if value is None:
        return dt.datetime.now(tz=dt.UTC).date()
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: {value!r} is not a date (YYYY-MM-DD)") from None


def as_usd(value: Decimal | int | str | float, what: str) -> Decimal:
    """An amount in USD, exactly: a `Decimal`, an int, a string like `"12.50"`, or a float
    taken as written (`2.5` is 2.5, never 2.4999...). 0 to costguard's largest amount.

    Raises:
        UsageError: `value` is no amount, negative, or too large; naming `what`.
    """
    if isinstance(value, bool):
        amount = Decimal("NaN")
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | float):
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    else:
        try:
            amount = Decimal(str(value).strip().removeprefix("$").replace(",", "").replace("_", ""))
        except InvalidOperation:
            amount = Decimal("NaN")
    if not amount.is_finite() or not ZERO <= amount <= MAX_USD:
        msg = (
            f"{what}: {value!r} is not an amount in USD; give one from 0 to "
            f"{usd_exact(MAX_USD)}, like 500 or 12.50"
        )
        raise UsageError(msg)
    return amount
