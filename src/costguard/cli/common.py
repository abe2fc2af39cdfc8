"""Pieces every CLI module shares: option types and the parsing of dates, amounts and cards.

Kept apart so `cli.py` and the command modules beside it (`run_cli.py`, ...) declare each
option once; imports stay light (`--help` must not load pydantic models or YAML).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.errors import UsageError
from costguard.money import MAX_USD, ZERO, usd_exact

if TYPE_CHECKING:
    from costguard.ledger import Ledger
    from costguard.pricing.engine import RateBook


class OutputOpt(StrEnum):
    """--output."""

    table = "table"
    json = "json"
    csv = "csv"


class SummaryOutput(StrEnum):
    """--output for commands that print a report (no csv)."""

    table = "table"
    json = "json"


class FormatOpt(StrEnum):
    """--format."""

    costguard = "costguard"
    gemini = "gemini"
    openai = "openai"


PricingOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--pricing",
        help="Extra rate-card folder (<provider>/<YYYY-MM-DD>.yaml); wins over shipped cards "
        "for the same provider and date. Repeatable. Also COSTGUARD_PRICING_DIR.",
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Price with the cards in force on this date (YYYY-MM-DD). Default: today."
    ),
]
FormatOption = Annotated[
    FormatOpt | None,
    typer.Option("--format", help="Queue format; detected from the first line if omitted."),
]


def parse_as_of(value: str | None) -> dt.date:
    """`--as-of` as a date (today, UTC, when not given)."""
    if value is None:
        return dt.datetime.now(tz=dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        msg = f"--as-of: {value!r} is not a date (YYYY-MM-DD)"
        raise UsageError(msg) from None


def parse_usd(value: str, option: str) -> Decimal:
    """A USD amount given on the command line, exactly: 0 to `MAX_USD` (`$`, `,`, `_` allowed)."""
    text = value.strip().removeprefix("$").replace(",", "").replace("_", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or not ZERO <= amount <= MAX_USD:
        msg = (
            f"{option}: {value!r} is not an amount in USD; give one from 0 to "
            f"{usd_exact(MAX_USD)}, like 500 or 12.50"
        )
        raise UsageError(msg)
    return amount


def load_rate_book(pricing: list[Path] | None) -> RateBook:
    """Shipped cards, then COSTGUARD_PRICING_DIR, then each --pricing folder (later wins)."""
    from costguard.cli.settings import Settings
    from costguard.pricing.loader import load_book

    return load_book([*Settings().pricing_dirs(), *(pricing or [])])


LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="Ledger file, or postgresql://... URL of a shared ledger (default: "
        "COSTGUARD_LEDGER_URL, else COSTGUARD_LEDGER, else <COSTGUARD_HOME>/ledger.sqlite3).",
    ),
]


def open_cli_ledger(location: str | None, *, migrate: bool = True) -> Ledger:
    """The ledger a command names: `--ledger`, else `COSTGUARD_LEDGER_URL`, else
    `COSTGUARD_LEDGER`, else `<COSTGUARD_HOME>/ledger.sqlite3`."""
    from costguard.cli.settings import Settings
    from costguard.ledger import default_path, open_ledger

    settings = Settings()
    chosen = settings.ledger_location(location)
    where = chosen if chosen is not None else default_path(settings.home)
    return open_ledger(where, migrate=migrate)
