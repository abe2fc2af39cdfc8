"""`costguard ledger migrate|history|export`: the ledger's schema, its runs, and finance's CSV.

The ledger is `--ledger PATH|URL`, else `COSTGUARD_LEDGER_URL`, else `COSTGUARD_LEDGER`, else
`<COSTGUARD_HOME>/ledger.sqlite3` (see `costguard budget`). Money is printed exactly (decimal
strings in JSON and CSV; rounded to 4 places only in tables). Imports the ledger lazily.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from costguard.api.setup import open_configured_ledger
from costguard.cli.common import (
    LedgerOpt,
    OutputOpt,
    SinceOpt,
    SummaryOutput,
    WideOpt,
    parse_moment,
)
from costguard.cli.output import emit

if TYPE_CHECKING:
    from costguard.ledger import Charge, Run

ledger_app = typer.Typer(
    help="The ledger itself: schema migrations, the history of every run, a CSV for finance.",
    no_args_is_help=True,
)


class ExportOpt(StrEnum):
    """--what for export."""

    charges = "charges"
    runs = "runs"


UntilOpt = Annotated[
    str | None,
    typer.Option("--until", metavar="WHEN", help="Before this ISO date or time (UTC)."),
]


class ExportOutputOpt(StrEnum):
    """--output for export."""

    csv = "csv"
    json = "json"


@ledger_app.command()
def migrate(
    ledger: LedgerOpt = None,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
) -> None:
    """Upgrade the ledger's schema to this costguard's (also done on first use); say what ran.

    A ledger written by an older costguard is upgraded in one transaction, never recreated; one
    written by a newer costguard is refused (exit 5).

    Example: costguard ledger migrate --ledger postgresql://ci@db.internal/costguard
    """
    with open_configured_ledger(ledger, migrate=False) as book:
        applied = book.migrate()
        names = book.applied_migrations()
        where = book.location
    if output is SummaryOutput.json:
        emit({"ledger": where, "applied": applied, "migrations": names})
        return
    if applied:
        typer.echo(f"ledger {where}: applied {', '.join(applied)}")
    typer.echo(f"ledger {where}: schema current ({len(names)} migrations, last {names[-1]})")


def _run_record(run: Run) -> dict[str, Any]:
    from costguard.money import plain

    meta = run.meta
    return {
        "run_id": run.run_id,
        "created": run.created.isoformat(),
        "closed": None if run.settled is None else run.settled.isoformat(),
        "owner": run.owner,
        "budget": run.budget,
        "status": run.status,
        "expected_usd": meta.get("expected_usd"),
        "estimate_usd": plain(run.estimate),
        "max_usd": None if run.max_usd is None else plain(run.max_usd),
        "reserved_usd": plain(run.reserved),
        "actual_usd": plain(run.spent),
        "parts": run.parts,
        "rate_cards": list(meta.get("rate_cards") or []),
        "mode": meta.get("mode"),
        "queue": meta.get("queue"),
        "reason": run.reason,
        "close_reason": run.close_reason,
        "rehearsal": run.rehearsal,
    }


def _charge_record(charge: Charge) -> dict[str, Any]:
    from costguard.money import plain

    return {
        "recorded": charge.recorded.isoformat(),
        "run_id": charge.run_id,
        "part_id": charge.part_id,
        "amount_usd": plain(charge.amount),
        "budget": charge.budget,
        "owner": charge.owner,
        "run_status": charge.status,
        "rate_cards": list(charge.meta.get("rate_cards") or []),
        "mode": charge.meta.get("mode"),
        "queue": charge.meta.get("queue"),
    }


def _csv(records: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = dict(record)
        row["rate_cards"] = " ".join(row.get("rate_cards") or [])
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


RUN_COLUMNS = [
    "run_id",
    "created",
    "closed",
    "owner",
    "budget",
    "status",
    "expected_usd",
    "estimate_usd",
    "max_usd",
    "reserved_usd",
    "actual_usd",
    "parts",
    "rate_cards",
    "mode",
    "queue",
    "reason",
    "close_reason",
    "rehearsal",
]
CHARGE_COLUMNS = [
    "recorded",
    "run_id",
    "part_id",
    "amount_usd",
    "budget",
    "owner",
    "run_status",
    "rate_cards",
    "mode",
    "queue",
]


def _history_table(runs: list[Run], *, wide: bool) -> str:
    from costguard.cli import table
    from costguard.cli.table import Column
    from costguard.money import usd_together

    columns = [
        Column("run"),
        Column("created (UTC)"),
        Column("owner"),
        Column("budget"),
        Column("status"),
        Column("estimate", right=True),
        Column("reserved", right=True),
        Column("actual", right=True),
        Column("rate cards", wide=True),
    ]
    rows = [
        [
            r.run_id,
            r.created.strftime("%Y-%m-%d %H:%M"),
            r.owner,
            r.budget or "-",
            f"{r.status} (rehearsal)" if r.rehearsal else r.status,
            *usd_together(r.estimate, r.reserved, r.spent),
            ", ".join(r.meta.get("rate_cards") or []) or "-",
        ]
        for r in runs
    ]
    return table.render(columns, rows, wide=wide)


@ledger_app.command()
def history(
    *,
    since: SinceOpt = None,
    until: UntilOpt = None,
    budget: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only runs charged to this budget.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option(metavar="WHO", help="Only runs with this owner.")
    ] = None,
    output: Annotated[OutputOpt, typer.Option(help="table, json or csv.")] = OutputOpt.table,
    ledger: LedgerOpt = None,
    wide: WideOpt = False,
) -> None:
    """Every run, oldest first: its estimate, what it still reserves, its actual cost, its
    status and the rate cards it was priced with (in the table with --wide).

    Estimate is the maximum cost the run reserved when admitted; actual is what its parts
    recorded. Refused runs are listed too (they reserved nothing), and so are rehearsals
    (`run --simulate`), marked as such: they never count as real money, in the totals below
    the table, in `budget show` or in `ledger export`.

    Example: costguard ledger history --since 30d --output csv
    """
    start = parse_moment(since, "--since")
    end = parse_moment(until, "--until")
    with open_configured_ledger(ledger) as book:
        runs = book.history(since=start, until=end, budget=budget, owner=owner)
        where = book.location
    if output is OutputOpt.json:
        emit({"ledger": where, "runs": [_run_record(r) for r in runs]})
        return
    if output is OutputOpt.csv:
        typer.echo(_csv([_run_record(r) for r in runs], RUN_COLUMNS), nl=False)
        return
    if not runs:
        typer.echo(f"no runs in ledger {where}")
        return
    from costguard.money import ZERO, usd_together

    typer.echo(_history_table(runs, wide=wide))
    real = [r for r in runs if not r.rehearsal]
    estimate = sum((r.estimate for r in real if r.status != "refused"), ZERO)
    actual = sum((r.spent for r in real), ZERO)
    rehearsals = len(runs) - len(real)
    also = f" (and {rehearsals} rehearsal{'s' if rehearsals != 1 else ''}, not counted)"
    from costguard.cli.table import wrap

    estimated, spent = usd_together(estimate, actual)
    total = (
        f"{len(real)} runs{also if rehearsals else ''}; estimated {estimated} (admitted), "
        f"actual {spent}; ledger {where}"
    )
    for line in wrap(total, wide=wide):
        typer.echo(line)


@ledger_app.command()
def export(
    *,
    since: SinceOpt = None,
    until: UntilOpt = None,
    what: Annotated[
        ExportOpt,
        typer.Option(
            "--what",
            help="charges: one line per recorded cost, dated when it was billed; "
            "runs: one line per run (as history).",
        ),
    ] = ExportOpt.charges,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write the CSV (or JSON) here (default: stdout)."
        ),
    ] = None,
    output: Annotated[
        ExportOutputOpt,
        typer.Option(help="csv, or json: {ledger, charges|runs: [...]} with the same fields."),
    ] = ExportOutputOpt.csv,
    ledger: LedgerOpt = None,
) -> None:
    """A CSV for finance: every recorded cost in the window, with its run, budget and owner.

    Rehearsals (`run --simulate`) are left out: they cost nothing real.

    Charges are dated when they were recorded (when the provider billed them), so a month's
    export adds up to what that month's budget counted as spent. Amounts are exact decimals.

    Example: costguard ledger export --since 2026-03-01 --until 2026-04-01 --out march.csv
    """
    start = parse_moment(since, "--since")
    end = parse_moment(until, "--until")
    with open_configured_ledger(ledger) as book:
        if what is ExportOpt.runs:
            records = [
                _run_record(r) for r in book.history(since=start, until=end, rehearsals=False)
            ]
            columns = RUN_COLUMNS
        else:
            records = [_charge_record(c) for c in book.charges(since=start, until=end)]
            columns = CHARGE_COLUMNS
        where = book.location
    count = len(records)
    if output is ExportOutputOpt.json:
        document = {"ledger": where, what.value: records}
        if out is None:
            emit(document)
            return
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = _csv(records, columns)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from costguard.execution.files import write_atomic

    write_atomic(out, text.encode())
    typer.echo(f"wrote {count} {what.value} to {out}", err=True)
