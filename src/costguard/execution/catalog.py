"""The runs a home holds: listed, found by a unique prefix of their id or `last`, and removed.

A run is its folder `<home>/runs/<run id>/` with `journal.json` in it, or, with a shared ledger
(`JournalStore`), a journal row in the ledger (the folder then holds only work files).

- `journals` lists them, newest first; `resolve` turns what a user typed (`run-b50721029934`,
  a unique prefix `run-b507` or `b507`, or `last`: the most recent run started in this home)
  into a run id: an ambiguous prefix is a `UsageError` naming the matches (exit 2), an unknown
  one a `LedgerError` (exit 5, as for an unknown run id).
- `why_kept` says whether a run is finished: every part collected (also a cancelled run, once
  collected), or released (the provider accepted nothing and the ledger gave its reservation
  back). `remove` deletes a finished run's journal and folder under its lock. Nothing else is
  touched: the ledger keeps the run's record and spend, and the output folder keeps its
  images, `manifest.jsonl` and `retry.jsonl` (they are the user's).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costguard.errors import LedgerError, UsageError
from costguard.execution.journal import Journal, JournalError, journal_from
from costguard.execution.rundir import RunDir

if TYPE_CHECKING:
    from costguard.ledger.journals import JournalStore
    from costguard.ledger.records import Run

LAST = "last"
"""What `resolve` reads as the most recent run started in this home."""
ID_PREFIX = "run-"
SHOWN_MATCHES = 10
"""How many runs an ambiguous prefix's message names (then how many more)."""


def runs_root(home: Path) -> Path:
    """Where the run folders are: `<home>/runs`."""
    return home / "runs"


def journals(home: Path, store: JournalStore | None) -> list[Journal]:
    """Every run's journal (the shared ledger's with a `store`), newest first.

    Journals that cannot be read are left out (`costguard status RUN` names the problem).
    """
    found: list[Journal] = []
    if store is not None:
        for raw in store.all_journals():
            with contextlib.suppress(ValueError, TypeError):
                found.append(journal_from(raw))
    else:
        root = runs_root(home)
        for path in sorted(root.glob("*/journal.json")) if root.is_dir() else []:
            with contextlib.suppress(JournalError):
                found.append(RunDir(path.parent).load())
    found.sort(key=lambda j: (j.created, j.run_id), reverse=True)
    return found


def resolve(text: str, home: Path, store: JournalStore | None) -> str:
    """The run id `text` means: itself, `last`, or the one run whose id starts with it.

    A prefix may leave out `run-` (`b507` for `run-b507...`).

    Raises:
        UsageError: the prefix matches several runs (they are named).
        LedgerError: no run matches (or, for `last`, no run was started in this home).
    """
    root = runs_root(home)
    if text == LAST:
        return _last(home, store)
    plain = text not in ("", ".", "..") and "/" not in text and "\\" not in text
    if plain and RunDir(root / text, store).exists:
        return text
    every = journals(home, store)
    matches = [j for j in every if j.run_id.startswith((text, ID_PREFIX + text))]
    if len(matches) == 1:
        return matches[0].run_id
    where = f"in ledger {store.location}" if store is not None else f"under {root}"
    if not matches:
        msg = f"no run {text!r} {where} (see `costguard runs`)"
        raise LedgerError(msg)
    shown = ", ".join(
        f"{j.run_id} ({j.created[:16].replace('T', ' ')}, {j.status})"
        for j in matches[:SHOWN_MATCHES]
    )
    more = f" and {len(matches) - SHOWN_MATCHES} more" if len(matches) > SHOWN_MATCHES else ""
    msg = f"run {text!r} is ambiguous: {len(matches)} runs {where} start with it: {shown}{more}"
    raise UsageError(msg)


def _last(home: Path, store: JournalStore | None) -> str:
    """The most recently started run whose folder is in this home (with a shared ledger, the
    newest one this machine drove)."""
    root = runs_root(home)
    for journal in journals(home, store):
        if store is None or (root / journal.run_id).is_dir():
            return journal.run_id
    msg = f"no runs yet under {root}: `last` is the most recent run started here"
    raise LedgerError(msg)


def why_kept(journal: Journal, record: Run | None) -> str | None:
    """None when the run is finished (may be removed), else why it must stay.

    `record` is the ledger's record of the run (None: the ledger has none).
    """
    if journal.status == "collected" and journal.collected_all:
        return None
    running = [p.id for p in journal.parts if p.awaiting_job]
    if running:
        return (
            f"still running at the provider ({', '.join(running)}): "
            f"`costguard collect {journal.run_id}`, or `costguard cancel` it first"
        )
    if journal.status == "planned" and not any(p.job_id for p in journal.parts):
        if record is not None and not record.open:
            return None  # released (or refused): nothing was sent, nothing is reserved
        if record is not None:
            return "admitted by the ledger but not yet sent: run the same command to resume it"
        return "not admitted yet (being started, or stopped before admission)"
    return (
        f"not every part is collected yet ({journal.status}): `costguard collect {journal.run_id}`"
    )


def finished_status(journal: Journal) -> str:
    """How a finished run ended, for listings: `collected`, `cancelled` or `released`."""
    if journal.status == "planned":
        return "released"
    if any(p.job_state == "terminal:cancelled" for p in journal.parts):
        return "cancelled"
    return "collected"


@dataclass(frozen=True, slots=True)
class Removed:
    """A finished run whose journal and folder were removed (or would be, in a dry run)."""

    run_id: str
    created: str
    status: str
    """`collected`, `cancelled` or `released`."""
    out: str
    """Its output folder, which stays."""
    left: Path | None = None
    """Part of the run folder that could not be deleted (None: all of it went)."""


@dataclass(frozen=True, slots=True)
class Kept:
    """A run `prune` or `rm` leaves alone, and why."""

    run_id: str
    created: str
    status: str
    reason: str


def created_at(journal: Journal) -> dt.datetime:
    """When the run was started (UTC)."""
    moment = dt.datetime.fromisoformat(journal.created)
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=dt.UTC)


def sort_out(
    candidates: list[Journal], record: Callable[[str], Run | None]
) -> tuple[list[Journal], list[Kept]]:
    """The finished runs among `candidates`, and the others with why they stay."""
    finished: list[Journal] = []
    kept: list[Kept] = []
    for journal in candidates:
        reason = why_kept(journal, record(journal.run_id))
        if reason is None:
            finished.append(journal)
        else:
            kept.append(Kept(journal.run_id, journal.created, journal.status, reason))
    return finished, kept


def remove(
    home: Path, store: JournalStore | None, run_id: str, record: Callable[[str], Run | None]
) -> Removed:
    """Delete a finished run's journal (its shared-ledger row too) and run folder.

    Done under the run's lock, checking again that it is finished; the ledger's records and
    the output folder are left as they are.

    Raises:
        RunBusyError: another process is driving the run.
        UsageError: the run is not finished (why is said).
    """
    rundir = RunDir(runs_root(home) / run_id, store)
    rundir.lock()
    try:
        journal = rundir.load()
        reason = why_kept(journal, record(run_id))
        if reason is not None:
            msg = f"run {run_id} is not finished: {reason}"
            raise UsageError(msg)
        status = finished_status(journal)
        if store is not None:
            store.delete_journal(run_id)
        else:
            rundir.journal_path.unlink()
        shutil.rmtree(rundir.path, ignore_errors=True)
    finally:
        rundir.unlock()
    left = rundir.path if rundir.path.exists() else None
    return Removed(run_id, journal.created, status, journal.out, left)
