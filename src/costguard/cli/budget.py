"""`costguard budget set|show`: the budgets kept in the ledger. Imports the ledger lazily.

The ledger is `--ledger PATH|URL`, else `COSTGUARD_LEDGER_URL` (a shared PostgreSQL ledger),
else `COSTGUARD_LEDGER`, else `<COSTGUARD_HOME or the user data directory>/ledger.sqlite3`.
Library errors propagate to `costguard.cli.app.run`, which prints them and exits with their code
(a `LedgerError` exits 5).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.api.setup import open_configured_ledger
from costguard.cli.common import LedgerOpt, parse_usd
from costguard.cli.output import emit
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.ledger import BudgetStatus

budget_app = typer.Typer(
    help="Budgets in the ledger: a USD limit per day, week, month or in total, across runs.",
    no_args_is_help=True,
)

PERIOD_PHRASE = {
    "day": "per day (UTC)",
    "week": "per ISO week (UTC, from Monday)",
    "month": "per calendar month (UTC)",
    "none": "in total (never resets)",
}


class PeriodOpt(StrEnum):
    """--period."""

    day = "day"
    week = "week"
    month = "month"
    none = "none"


class ShowOutputOpt(StrEnum):
    """--output for show."""

    table = "table"
    json = "json"


def _moment(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        msg = f"--at: {value!r} is not an ISO date or time; give one like 2026-03-15T12:00Z"
        raise UsageError(msg) from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=dt.UTC)


def _window(status: BudgetStatus) -> str:
    start, end = status.period_start, status.period_end
    if start is None or end is None:
        return "all time"
    last = (end - dt.timedelta(days=1)).date()
    return str(last) if start.date() == last else f"{start.date()}..{last}"


def _status_json(status: BudgetStatus) -> dict[str, object]:
    from costguard.money import plain

    return {
        "name": status.name,
        "limit": plain(status.limit),
        "period": status.period,
        "period_start": None if status.period_start is None else status.period_start.isoformat(),
        "period_end": None if status.period_end is None else status.period_end.isoformat(),
        "reserved": plain(status.reserved),
        "spent": plain(status.spent),
        "remaining": plain(status.remaining),
        "open_runs": status.open_runs,
        "owners": [
            {
                "owner": u.owner,
                "reserved": plain(u.reserved),
                "spent": plain(u.spent),
                "counted": plain(u.counted),
                "open_runs": u.open_runs,
                "runs": u.runs,
            }
            for u in status.owners
        ],
    }


def _table(statuses: list[BudgetStatus]) -> str:
    from costguard.cli import table
    from costguard.cli.table import Column
    from costguard.money import usd_together

    columns = [
        Column("budget"),
        Column("limit", right=True),
        Column("period"),
        Column("window (UTC)"),
        Column("reserved", right=True),
        Column("spent", right=True),
        Column("remaining", right=True),
        Column("open runs", right=True),
    ]
    rows = []
    for s in statuses:
        limit, reserved, spent, remaining = usd_together(
            s.limit, s.reserved, s.spent, s.remaining, given=[s.limit]
        )
        rows.append(
            [s.name, limit, s.period, _window(s), reserved, spent, remaining, f"{s.open_runs:,}"]
        )
    return table.render(columns, rows)


def _owner_table(statuses: list[BudgetStatus]) -> str:
    """Each budget's window split by owner (only owners with something reserved or spent)."""
    from costguard.cli import table
    from costguard.cli.table import Column
    from costguard.money import usd_together

    columns = [
        Column("budget"),
        Column("owner"),
        Column("runs", right=True),
        Column("open runs", right=True),
        Column("reserved", right=True),
        Column("spent", right=True),
        Column("counted", right=True),
    ]
    rows = [
        [
            s.name,
            u.owner,
            f"{u.runs:,}",
            f"{u.open_runs:,}",
            *usd_together(u.reserved, u.spent, u.counted),
        ]
        for s in statuses
        for u in s.owners
    ]
    return table.render(columns, rows)


@budget_app.command("set")
def set_budget(
    *,
    usd: Annotated[
        str, typer.Option("--usd", metavar="USD", help="The limit in USD, e.g. 500 or 12.50.")
    ],
    period: Annotated[
        PeriodOpt, typer.Option(help="Window the limit applies to; none: in total.")
    ] = PeriodOpt.month,
    name: Annotated[
        str, typer.Option(metavar="NAME", help="Budget name (runs charge `default`).")
    ] = "default",
    output: Annotated[ShowOutputOpt, typer.Option(help="table or json.")] = ShowOutputOpt.table,
    ledger: LedgerOpt = None,
) -> None:
    """Create or change a budget: a limit in USD per period, shared by every run and process.

    Example: costguard budget set --usd 500 --period month
    """
    from costguard.money import usd_exact

    limit = parse_usd(usd, "--usd")
    if not name.strip():
        msg = "--name: give a budget name, e.g. default"
        raise UsageError(msg)
    with open_configured_ledger(ledger) as book:
        budget = book.set_budget(name, usd=limit, period=period.value)
        if output is ShowOutputOpt.json:
            from costguard.money import plain

            document = {"name": budget.name, "limit": plain(budget.limit), "period": budget.period}
            emit({"ledger": book.location, "budget": document})
            return
        typer.echo(
            f"budget {budget.name!r}: {usd_exact(budget.limit)} {PERIOD_PHRASE[budget.period]} "
            f"(ledger {book.location})"
        )


@budget_app.command()
def show(
    *,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only this budget (default: all).")
    ] = None,
    output: Annotated[ShowOutputOpt, typer.Option(help="table or json.")] = ShowOutputOpt.table,
    at: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Show the windows containing this ISO date or time (UTC); default now.",
        ),
    ] = None,
    ledger: LedgerOpt = None,
) -> None:
    """Show each budget's limit, current window, what is reserved and spent in it, and what remains.

    Reserved is what open runs hold beyond what they have spent; remaining is
    limit - reserved - spent. A second table splits each window by owner (the user or CI job
    that started the runs: `costguard run --owner`, or COSTGUARD_OWNER).

    Example: costguard budget show --output json
    """
    moment = _moment(at)
    with open_configured_ledger(ledger) as book:
        statuses = [book.status(name, at=moment)] if name is not None else book.statuses(at=moment)
        path = book.location
    if output is ShowOutputOpt.json:
        document = {
            "ledger": path,
            "at": moment.astimezone(dt.UTC).isoformat(),
            "budgets": [_status_json(s) for s in statuses],
        }
        emit(document)
        return
    if not statuses:
        typer.echo(f"no budgets in ledger {path}; set one with: costguard budget set --usd 500")
        return
    typer.echo(_table(statuses))
    if any(s.owners for s in statuses):
        typer.echo("\nby owner:")
        typer.echo(_owner_table(statuses))
    typer.echo(f"ledger: {path}")
