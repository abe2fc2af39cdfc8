"""`costguard report`: a run's HTML report (or its facts as JSON), also written after `run`.

`write_run_report` is what `run` and `collect` call once they end, unless `--no-report`: a
report that cannot be written is a warning there, never a failed run (the images are saved).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.api.setup import load_rate_book, open_configured_ledger, report_page
from costguard.cli.common import (
    LedgerOpt,
    PricingOpt,
    RunArg,
    resolve_run,
    same_ledger,
    shared_journals,
)
from costguard.cli.output import emit, fail
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.execution.journal import Journal
    from costguard.ledger import Ledger
    from costguard.pricing.engine import RateBook

"""From this many images on, say that thumbnails are being made (it takes seconds)."""


class ReportOutput(StrEnum):
    """--output of `report`."""

    html = "html"
    json = "json"


NoReportOpt = Annotated[
    bool,
    typer.Option(
        "--no-report",
        help="Do not write report.html (and its thumbs/) in the output folder at the end.",
    ),
]


def report(
    run_id: RunArg,
    output: Annotated[
        ReportOutput,
        typer.Option(
            help="html: write report.html in the run's output folder and print its path; "
            "json: print the facts the page is made from (writes nothing)."
        ),
    ] = ReportOutput.html,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the browser once written.")
    ] = False,
    pricing: PricingOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    """Write a run's report: contact sheet, cost against the estimate, spend over time, retry.

    The page is self-contained (no network) and sits in the run's output folder beside the
    images it shows (thumbnails in thumbs/); it never replaces a file costguard did not write.

    Example: costguard report last --open
    """
    from costguard.execution.rundir import RunDir
    from costguard.report.build import report_facts
    from costguard.resources import home_dir

    if open_page and output == ReportOutput.json:
        msg = "--open opens the page it writes; --output json writes none: give one of them"
        raise UsageError(msg)

    with shared_journals(ledger) as store:
        rundir = RunDir(home_dir() / "runs" / resolve_run(run_id, store), store=store)
        rundir.require()
        journal = rundir.load()
    book = load_rate_book(pricing)
    with open_configured_ledger(ledger) as opened:
        same_ledger(journal, opened)
        if output == ReportOutput.json:
            emit(report_facts(journal, book, opened, now=dt.datetime.now(dt.UTC)))
            return
        page = report_page(journal, book, opened, note=lambda text: typer.echo(text, err=True))
    typer.echo(str(page))
    if open_page:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            typer.echo(f"no browser to open here; open {page} yourself", err=True)


def write_run_report(journal: Journal, book: RateBook, ledger: Ledger) -> Path | None:
    """The report at the end of `run` / `collect`: its path, or None with a warning on stderr
    when it could not be written (the run's results are not affected). Ctrl-C exits 130,
    saying the run is done."""
    from costguard.api.setup import write_report

    try:
        return write_report(journal, book, ledger, note=lambda text: typer.echo(text, err=True))
    except KeyboardInterrupt:  # the run itself is done: say so, not that jobs keep running
        msg = (
            f"interrupted while writing the report: run {journal.run_id} itself is done "
            f"(`costguard status {journal.run_id}`); `costguard report {journal.run_id}` writes "
            "the report"
        )
        raise fail(130, "interrupted", msg, prefix="", run_id=journal.run_id) from None
