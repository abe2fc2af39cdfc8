"""Pieces every CLI module shares: option types and the parsing of dates, amounts and cards.

Kept apart so `cli.py` and the command modules beside it (`run_cli.py`, ...) declare each
option once; imports stay light (`--help` must not load pydantic models or YAML).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.api.setup import open_configured_ledger
from costguard.api.values import as_date, as_usd
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.execution.journal import Journal
    from costguard.ledger import Ledger
    from costguard.ledger.journals import JournalStore
    from costguard.pricing.calibration import Calibration


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
        metavar="DIR",
        help="Extra rate-card folder (<provider>/<YYYY-MM-DD>.yaml); wins over shipped cards "
        "for the same provider and date. Repeatable. Also COSTGUARD_PRICING_DIR.",
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="Price with the cards in force on this date (YYYY-MM-DD). Default: today.",
    ),
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide", help="Show every column and note in full (tables fit 100 columns otherwise)."
    ),
]
FormatOption = Annotated[
    FormatOpt | None,
    typer.Option("--format", help="Queue format; detected from the first line if omitted."),
]


def parse_as_of(value: str | None) -> dt.date:
    """`--as-of` as a date (today, UTC, when not given)."""
    return as_date(value, "--as-of")


def parse_usd(value: str, option: str) -> Decimal:
    """A USD amount given on the command line, exactly: 0 to `MAX_USD` (`$`, `,`, `_` allowed)."""
    return as_usd(value, option)


LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        metavar="PATH|URL",
        help="Ledger file, or postgresql://... URL of a shared ledger (default: "
        "COSTGUARD_LEDGER_URL, else COSTGUARD_LEDGER, else <COSTGUARD_HOME>/ledger.sqlite3).",
    ),
]


_AGO = re.compile(r"^(\d+)\s*([dhw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str | None, option: str) -> dt.datetime | None:
    """An ISO date or time (UTC unless it has an offset), or a span back from now: 7d, 12h, 2w."""
    if value is None:
        return None
    text = value.strip()
    ago = _AGO.match(text)
    if ago:
        span = dt.timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
        return dt.datetime.now(dt.UTC) - span
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = (
            f"{option}: {value!r} is not an ISO date or time or a span like 7d; "
            "give one like 2026-03-01, 2026-03-01T09:00Z or 30d"
        )
        raise UsageError(msg) from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=dt.UTC)


SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="From this ISO date or time (UTC), or a span back from now (7d, 12h, 2w).",
    ),
]
CalibratedOpt = Annotated[
    bool | None,
    typer.Option(
        "--calibrated/--no-calibrated",
        help="Price thinking, input images and prompts from what real runs in the ledger "
        "reported (`costguard calibrate`) where it has enough requests, else from the card. "
        "Default: COSTGUARD_CALIBRATED (off).",
        show_default=False,
    ),
]


def calibration_wanted(flag: bool | None) -> bool:
    """`--calibrated` (or `--no-calibrated`) if given, else the `COSTGUARD_CALIBRATED` setting."""
    from costguard.api.settings import Settings

    return flag if flag is not None else Settings().calibrated_default()


def calibration_for(flag: bool | None, location: str | None) -> Calibration | None:
    """The calibration an estimate prices with when `--calibrated` (or the setting) asks for
    one, read from the ledger `location` names (which must exist); else None."""
    if not calibration_wanted(flag):
        return None
    with open_calibration_ledger(location) as ledger:
        return load_calibration(ledger)


def load_calibration(ledger: Ledger, since: str | None = None) -> Calibration:
    """What `ledger`'s real runs teach since `since` (else `COSTGUARD_CALIBRATION_SINCE`)."""
    from costguard.api.settings import Settings

    if since is not None:
        return ledger.calibration(since=parse_moment(since, "--since"))
    setting = Settings().calibration_since
    return ledger.calibration(since=parse_moment(setting, "COSTGUARD_CALIBRATION_SINCE"))


def open_calibration_ledger(location: str | None) -> Ledger:
    """The ledger a calibration reads (`--ledger`, else the settings), which must exist.

    A ledger file that is not there is an error, not an empty calibration: an estimate asked
    to be calibrated is never quietly priced from the card instead.
    """
    require_ledger(location)
    return open_configured_ledger(location)


def require_ledger(location: str | None) -> None:
    """Refuse a ledger file that does not exist (calibration never starts from an empty one).

    Raises:
        LedgerError: the location is no valid ledger location, or names no ledger file.
    """
    from costguard.api.settings import Settings
    from costguard.errors import LedgerError
    from costguard.ledger import default_path, resolve_location

    settings = Settings()
    chosen = settings.ledger_location(location)
    where = resolve_location(chosen if chosen is not None else default_path(settings.home))
    if isinstance(where, Path) and not where.is_file():
        msg = (
            f"ledger {where}: no such ledger; calibration learns from the runs a ledger recorded "
            "(give it with --ledger, COSTGUARD_LEDGER_URL or COSTGUARD_LEDGER)"
        )
        raise LedgerError(msg)


@contextlib.contextmanager
def shared_journals(location: str | None) -> Iterator[JournalStore | None]:
    """The shared ledger's journal store (PostgreSQL), or None: journals are in the home."""
    from costguard.api.settings import Settings
    from costguard.ledger import is_url

    if not is_url(Settings().ledger_location(location)):
        yield None
        return
    with open_configured_ledger(location) as book:
        yield book.journals


def same_ledger(journal: Journal, ledger: Ledger) -> None:
    """Refuse a ledger other than the one run `journal` was admitted in (its spend is there).

    Raises:
        LedgerError: another ledger (exit 5), saying how to give the right one.
    """
    from costguard.errors import LedgerError

    if journal.ledger is not None and journal.ledger != ledger.identity:
        msg = (
            f"ledger {ledger.location} is not the ledger run {journal.run_id} was admitted in "
            f"(identity {ledger.identity}, not {journal.ledger}); give that ledger (--ledger or "
            "COSTGUARD_LEDGER_URL)"
        )
        raise LedgerError(msg)


def resolve_run(text: str, store: JournalStore | None) -> str:
    """The run id a RUN argument names: an id, a unique prefix of one, or `last`.

    Raises:
        UsageError: an ambiguous prefix (the runs it matches are named; exit 2).
        LedgerError: no such run (exit 5).
    """
    from costguard.execution.catalog import resolve
    from costguard.resources import home_dir

    return resolve(text, home_dir(), store)


def complete_run(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of a RUN argument: this home's run ids (and `last`), newest first."""
    from costguard.errors import CostguardError
    from costguard.execution.catalog import LAST, journals
    from costguard.resources import home_dir

    try:
        found = [
            (j.run_id, f"{j.status}, {j.created[:16].replace('T', ' ')}")
            for j in journals(home_dir(), None)
            if j.run_id.startswith(incomplete)
        ]
    except (CostguardError, OSError):  # completion never fails a shell: it offers nothing
        found = []
    last = [(LAST, "the most recent run")] if LAST.startswith(incomplete) else []
    return [*found, *last]


RunArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="Run id, a unique prefix of one (run-b507, b507), or `last` (see `costguard runs`).",
        autocompletion=complete_run,
        show_default=False,
    ),
]


SizeOpt = Annotated[str | None, typer.Option(metavar="SIZE", help="Size for lines that name none.")]
QualityOpt = Annotated[
    str | None, typer.Option(metavar="QUALITY", help="Quality for lines that name none.")
]
AspectRatioOpt = Annotated[
    str | None, typer.Option(metavar="RATIO", help="Aspect ratio for lines that name none.")
]
