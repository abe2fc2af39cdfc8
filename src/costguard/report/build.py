"""Make a run's report: its facts, the budget's spend from the ledger, thumbnails, the page.

`report_facts` is what `costguard report RUN --output json` prints; `write_report` writes
`report.html` (and its `thumbs/` folder) in the run's output folder, at the end of every
`run` / `collect` and on `costguard report`.

Like every file costguard adds to an output folder, neither ever replaces a file costguard
did not write: a `report.html` that is not this run's page (its `costguard-run` meta names the
run) or a `thumbs/` folder without this run's marker is left alone, and the report goes beside
it (`report.costguard-2.html`, `thumbs.costguard-2/`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from costguard.errors import LedgerError, OutputError
from costguard.execution.files import write_atomic
from costguard.execution.journal import Journal
from costguard.ledger import Ledger
from costguard.pricing.engine import RateBook
from costguard.report.chart import spend_chart
from costguard.report.facts import gather
from costguard.report.page import RUN_META, render
from costguard.report.spend import SpendSeries, run_lifetime, spend_series
from costguard.report.thumbs import make_thumbnails

PAGE = ("report", ".html")
THUMBS = ("thumbs", "")
THUMBS_MARKER = ".costguard-thumbs"
"""The file in a thumbnail folder naming the run that made it."""


def report_facts(
    journal: Journal, book: RateBook, ledger: Ledger | None, *, now: dt.datetime
) -> dict[str, Any]:
    """Every fact the report shows, as JSON (`report --output json`).

    Raises:
        OutputError: the output folder is not there (its facts would read as nothing
            collected).
    """
    _output_folder(journal)
    facts = gather(journal, book, now=now)
    facts["spend"] = spend_facts(journal, ledger, now=now)[0]
    return facts


def write_report(
    journal: Journal,
    book: RateBook,
    ledger: Ledger | None,
    *,
    now: dt.datetime,
    version: str,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the run's report page and thumbnails in its output folder; return the page's path.

    Raises:
        OutputError: the output folder is not there, or cannot be written.
    """
    out = _output_folder(journal)
    facts = gather(journal, book, now=now)
    facts["spend"], series = spend_facts(journal, ledger, now=now)
    chart = spend_chart(series) if series is not None else None
    try:
        page = claim(out, PAGE, lambda path: _page_of(path, journal.run_id))
        folder = claim(out, THUMBS, lambda path: _thumbs_of(path, journal.run_id))
        if not folder.is_dir():
            folder.mkdir(parents=True)
            write_atomic(folder / THUMBS_MARKER, journal.run_id.encode() + b"\n")
        names = (name for image in facts["images"] for name in image["files"])
        thumbs = make_thumbnails(out, names, folder, workers=workers, progress=progress)
        html = render(facts, thumbs=thumbs, chart=chart, version=version)
        write_atomic(page, html.encode("utf-8"))
    except OSError as exc:
        msg = f"{out}: cannot write the report: {exc.strerror or exc}"
        raise OutputError(msg) from exc
    return page


def _output_folder(journal: Journal) -> Path:
    """The run's output folder; it must be there (a report never makes an empty one)."""
    out = Path(journal.out)
    if not out.is_dir():
        msg = (
            f"{out}: the output folder of run {journal.run_id} is not there (nothing collected "
            "yet, or it was moved or deleted): no report"
        )
        raise OutputError(msg)
    return out


def claim(out: Path, name: tuple[str, str], ours: Callable[[Path], bool]) -> Path:
    """The path for one of costguard's report files in `out`: `stem + suffix` when absent or
    already this run's (`ours`), else the first `stem.costguard-K + suffix` that is."""
    stem, suffix = name
    k = 1
    while True:
        path = out / (f"{stem}{suffix}" if k == 1 else f"{stem}.costguard-{k}{suffix}")
        if not path.exists() and not path.is_symlink():
            return path
        if ours(path):
            return path
        k += 1


def _page_of(path: Path, run_id: str) -> bool:
    """Whether `path` is a report page costguard wrote for `run_id`."""
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(1024)
    return f'<meta name="{RUN_META}" content="{escape(run_id)}">'.encode() in head


def _thumbs_of(path: Path, run_id: str) -> bool:
    """Whether `path` is a thumbnail folder costguard made for `run_id`."""
    marker = path / THUMBS_MARKER
    if path.is_symlink() or not path.is_dir() or not marker.is_file():
        return False
    return marker.read_text(encoding="utf-8", errors="replace").strip() == run_id


def spend_facts(
    journal: Journal, ledger: Ledger | None, *, now: dt.datetime
) -> tuple[dict[str, Any], SpendSeries | None]:
    """The budget's spend over time (`SpendSeries.as_json`, with a `note` where one helps)
    and its series for the chart; a note alone when the ledger has nothing to show.

    The window is the budget's window in which the run closed (or now, while it is open): the
    current one ends now, a past one at its end. A run charged to no budget, or to one that is
    not set, is shown alone over its lifetime against its `--max-usd`.
    """
    if ledger is None:
        return {"note": "No ledger was given: the budget's spend is not known."}, None
    run = ledger.run(journal.run_id)
    if run is None:
        return {"note": f"The ledger has no record of run {journal.run_id}."}, None
    notes: list[str] = []
    series = None
    if run.budget is not None:
        at = now if run.open or run.settled is None else min(run.settled, now)
        try:
            status = ledger.status(run.budget, at=at)
        except LedgerError:
            notes.append(f"Budget {run.budget!r} is not set: only --max-usd capped this run.")
        else:
            start, period_end = status.period_start, status.period_end
            end = now if period_end is None or period_end > now else period_end
            found = ledger.activity(run.budget, since=start, until=end, run_id=run.run_id)
            series = spend_series(
                found,
                start=start,
                end=end,
                limit=status.limit,
                run_id=run.run_id,
                window_end=period_end,
            )
    if series is None:
        found = ledger.activity(None, run_id=run.run_id)
        start, end = run_lifetime(found, run.run_id, now=now)
        series = spend_series(found, start=start, end=end, limit=run.max_usd, run_id=run.run_id)
        if run.budget is None:
            notes.append("Charged to no budget: the run's own spend against its --max-usd.")
    if run.rehearsal:
        notes.append("A rehearsal: its would-be spend is shown apart and counts in no budget.")
    facts = series.as_json()
    if notes:
        facts["note"] = " ".join(notes)
    return facts, series
