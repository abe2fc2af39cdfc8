"""`costguard runs rm RUN...` and `costguard runs prune OLDER_THAN`: remove finished runs.

What goes: a finished run's journal (its row in a shared ledger too) and its run folder under
the home (lock, simulator state, work files kept with --keep-raw). What stays: the ledger's
record of the run and its spend (`ledger history`, `ledger export`, `budget show`, calibration
read them), and the output folder with its images, `manifest.jsonl` and `retry.jsonl`, which
are the user's. A run still in flight, or one whose parts are not all collected, is never
removed. The logic is `run/catalog.py`; this module parses, asks and renders.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from costguard.api.setup import open_configured_ledger
from costguard.cli.common import (
    LedgerOpt,
    SummaryOutput,
    complete_run,
    parse_moment,
)
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.execution.catalog import Kept, Removed
    from costguard.execution.journal import Journal
    from costguard.ledger.journals import JournalStore
    from costguard.ledger.records import Run

DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Only list what would be removed; remove nothing."),
]
OutputOpt = Annotated[SummaryOutput, typer.Option(help="table or json.")]
STAYS = (
    "their output folders (images, manifest.jsonl, retry.jsonl) stay where they are, and the "
    "ledger keeps their run records and spend (`costguard ledger history`)"
)


def _ledger_location(ctx: typer.Context, ledger: str | None) -> str | None:
    """`--ledger` given to this command, else to `costguard runs` before it."""
    if ledger is not None or ctx.parent is None:
        return ledger
    given = ctx.parent.params.get("ledger")
    return given if isinstance(given, str) else None


@contextlib.contextmanager
def _catalog(
    location: str | None,
) -> Iterator[tuple[JournalStore | None, Callable[[str], Run | None]]]:
    """The shared ledger's journal store (None: journals are in the home) and the ledger's
    record of a run. A ledger file not made yet holds no records, and is not created here."""
    from costguard.api.settings import Settings
    from costguard.ledger import default_path, resolve_location

    settings = Settings()
    chosen = settings.ledger_location(location)
    where = resolve_location(chosen if chosen is not None else default_path(settings.home))
    if isinstance(where, Path) and not where.is_file():
        yield None, lambda _run_id: None
        return
    with open_configured_ledger(location) as book:
        yield book.journals, book.run


def rm(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN",
            help="Runs to remove: ids, unique prefixes of ids, or `last`.",
            autocompletion=complete_run,
            show_default=False,
        ),
    ],
    dry_run: DryRunOpt = False,
    output: OutputOpt = SummaryOutput.table,
    ledger: LedgerOpt = None,
) -> None:
    """Remove finished runs' journals and run folders (never their images or ledger records).

    A run is finished when every part is collected (a cancelled run too, once collected) or
    when it was released (the provider accepted nothing). Naming a run still in flight, or
    one not fully collected, removes nothing (exit 2).

    Example: costguard runs rm run-b507 last --dry-run
    """
    from costguard.execution.catalog import remove, resolve, sort_out
    from costguard.resources import home_dir

    home = home_dir()
    with _catalog(_ledger_location(ctx, ledger)) as (store, record):
        chosen = list(dict.fromkeys(resolve(text, home, store) for text in run_ids))
        loaded = [_journal(home, store, run_id) for run_id in chosen]
        finished, kept = sort_out(loaded, record)
        if kept:
            for run in kept:
                typer.echo(f"error: run {run.run_id} is not finished: {run.reason}", err=True)
            msg = f"removed nothing: {len(kept)} of the runs named {_are(len(kept))} not finished"
            raise UsageError(msg)
        removed = (
            [_would_go(j) for j in finished]
            if dry_run
            else [remove(home, store, j.run_id, record) for j in finished]
        )
    _show(removed, [], dry_run=dry_run, output=output)


def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Argument(
            metavar="OLDER_THAN",
            help="Remove finished runs started before this: a span back from now (30d, 12h, "
            "2w) or an ISO date or time (2026-03-01, UTC).",
            show_default=False,
        ),
    ],
    dry_run: DryRunOpt = False,
    output: OutputOpt = SummaryOutput.table,
    ledger: LedgerOpt = None,
) -> None:
    """Remove the journals and run folders of finished runs started before OLDER_THAN.

    Runs still in flight, or not fully collected, are kept and listed with the reason. Images
    and the ledger's records are never removed.

    Example: costguard runs prune 30d --dry-run
    """
    from costguard.execution.catalog import created_at, journals, remove, sort_out
    from costguard.execution.rundir import RunBusyError
    from costguard.resources import home_dir

    cutoff = parse_moment(older_than, "OLDER_THAN")
    assert cutoff is not None  # parse_moment returns None only for None
    home = home_dir()
    removed: list[Removed] = []
    with _catalog(_ledger_location(ctx, ledger)) as (store, record):
        old = [j for j in journals(home, store) if created_at(j) < cutoff]
        finished, kept = sort_out(old, record)
        for journal in finished:
            if dry_run:
                removed.append(_would_go(journal))
                continue
            try:
                removed.append(remove(home, store, journal.run_id, record))
            except (RunBusyError, UsageError) as exc:  # taken, or changed, since it was listed
                kept.append(_kept(journal, str(exc)))
    _show(removed, kept, dry_run=dry_run, output=output)


def _journal(home: Path, store: JournalStore | None, run_id: str) -> Journal:
    from costguard.execution.catalog import runs_root
    from costguard.execution.rundir import RunDir

    return RunDir(runs_root(home) / run_id, store=store).load()


def _would_go(journal: Journal) -> Removed:
    from costguard.execution.catalog import Removed, finished_status

    return Removed(journal.run_id, journal.created, finished_status(journal), journal.out)


def _kept(journal: Journal, reason: str) -> Kept:
    from costguard.execution.catalog import Kept

    return Kept(journal.run_id, journal.created, journal.status, reason)


def _when(created: str) -> str:
    """A journal's `created` as `2026-11-26 10:02` (UTC)."""
    return created[:16].replace("T", " ")


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _show(removed: list[Removed], kept: list[Kept], *, dry_run: bool, output: str) -> None:
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "removed": [
                        {
                            "run": r.run_id,
                            "created": r.created,
                            "status": r.status,
                            "out": r.out,
                            "left": None if r.left is None else str(r.left),
                        }
                        for r in removed
                    ],
                    "kept": [
                        {
                            "run": k.run_id,
                            "created": k.created,
                            "status": k.status,
                            "reason": k.reason,
                        }
                        for k in kept
                    ],
                },
                indent=2,
            )
        )
        return
    verb = "would remove" if dry_run else "removed"
    for gone in removed:
        typer.echo(
            f"{verb} {gone.run_id} ({_when(gone.created)}, {gone.status}); "
            f"images stay in {gone.out}"
        )
        if gone.left is not None:
            typer.echo(f"  could not delete all of {gone.left}; remove it by hand", err=True)
    for stays in kept:
        typer.echo(f"kept {stays.run_id} ({_when(stays.created)}): {stays.reason}")
    count = len(removed)
    if count:
        typer.echo(
            f"{verb} {count} finished run{'s' if count != 1 else ''} (journal and run folder); "
            f"{STAYS}"
        )
    else:
        typer.echo("no finished runs to remove")
