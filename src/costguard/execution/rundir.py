"""A run's folder: its journal, its lock and its work files.

- `journal.json`: the run's plan and every part's progress (`journal.py`). Rewritten atomically
  (temp file, fsync, rename) on every transition, that is *before* each external step, so a
  restarted run knows what it may have done.
- a lock file, so two processes never drive the same run at once.
- `parts/<part>/`: per-part work files (job input files, downloaded results).

When the ledger is shared (PostgreSQL), `RunDir` is given the ledger's `JournalStore`: the
journal is then a row in the ledger and the lock is held by the database, so the run can be
collected from another machine; the folder still holds the run's work files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from costguard.errors import CostguardError, LedgerError
from costguard.execution.files import write_atomic
from costguard.execution.journal import Journal, JournalError, journal_from

if TYPE_CHECKING:
    from costguard.ledger.journals import JournalStore


class RunBusyError(CostguardError):
    """Another process is driving this run."""

    exit_code = 2
    kind = "run_busy"


class RunDir:
    """A run's folder: journal, lock, per-part work files, simulator state.

    With a `store` (a shared ledger's), the journal and the lock live there instead.
    """

    def __init__(self, path: Path, store: JournalStore | None = None) -> None:
        self.path = path
        self.journal_path = path / "journal.json"
        self.store = store
        self._lock: TextIO | None = None

    @property
    def exists(self) -> bool:
        if self.store is not None:
            return self.store.read_journal(self.path.name) is not None
        return self.journal_path.is_file()

    def require(self) -> None:
        """Raise LedgerError (exit 5: no such run) unless the run exists."""
        if self.exists:
            return
        where = (
            f"in ledger {self.store.location}"
            if self.store is not None
            else f"under {self.path.parent}"
        )
        msg = f"no run {self.path.name!r} {where} (see `costguard runs`)"
        raise LedgerError(msg)

    def workdir(self, part_id: str) -> Path:
        return self.path / "parts" / part_id

    def discard_work(self, part_id: str) -> None:
        """Delete a collected part's raw files (job input, downloaded results)."""
        shutil.rmtree(self.workdir(part_id), ignore_errors=True)

    @property
    def simulator_state(self) -> Path:
        return self.path / "simulator.json"

    def lock(self) -> None:
        """Take the run's lock, or fail at once naming the process that holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.store is not None:
            holder = self.store.lock_run(self.path.name)
            if holder is not None:
                msg = f"run {self.path.name} is being driven by {holder}; wait for it or stop it"
                raise RunBusyError(msg)
            return
        handle = (self.path / "lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            msg = f"run {self.path.name} is being driven by pid {holder}; wait for it or stop it"
            raise RunBusyError(msg) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self.store is not None:
            self.store.unlock_run(self.path.name)
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        """Remove a run folder that never got a journal (bad input, refused): lock, then folder.

        Call it while holding the lock; the folder is left alone if anything else is in it.
        """
        (self.path / "lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def forget(self) -> None:
        """Remove the journal and the lock file of a run refused before it sent anything."""
        if self.store is not None:
            self.store.delete_journal(self.path.name)
        for leftover in (self.journal_path, self.path / "lock"):
            leftover.unlink(missing_ok=True)

    def load(self) -> Journal:
        """The run's journal, bound to this folder: its transitions save themselves here."""
        return self._read().bind(self.save)

    def _read(self) -> Journal:
        if self.store is not None:
            raw = self.store.read_journal(self.path.name)
            if raw is None:
                msg = f"no journal of run {self.path.name} in ledger {self.store.location}"
                raise JournalError(msg)
            try:
                return journal_from(raw)
            except (ValueError, TypeError) as exc:
                msg = f"ledger {self.store.location}: unreadable journal of {self.path.name}: {exc}"
                raise JournalError(msg) from exc
        try:
            return journal_from(json.loads(self.journal_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            msg = f"{self.journal_path}: unreadable run journal: {exc}"
            raise JournalError(msg) from exc

    def save(self, journal: Journal) -> None:
        """Write the journal atomically and durably; its later transitions save here too."""
        journal.bind(self.save)
        if self.store is not None:
            self.store.write_journal(self.path.name, asdict(journal))
            return
        write_atomic(self.journal_path, json.dumps(asdict(journal), indent=1).encode())
