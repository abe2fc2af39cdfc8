"""Where a run's journal lives when it is shared by machines: the interface the runner uses.

A local run keeps `journal.json` in its folder and locks it with a lock file (`RunDir`). When
the ledger is shared (PostgreSQL), the ledger also provides a `JournalStore`: journals are rows
beside the budgets, and a run's lock is held by the database for the process that drives it,
so `costguard collect RUN` can finish a run on another machine. Work files (downloads,
simulator state) stay in the local run folder either way.
"""

from __future__ import annotations

from typing import Any, Protocol


class JournalStore(Protocol):
    """Run journals and run locks kept in a shared database."""

    location: str
    """Where the journals are, for messages (the ledger's URL without its password)."""

    def lock_run(self, run_id: str) -> str | None:
        """Take the run's lock for this process without waiting.

        Returns None when taken, else who holds it (a phrase for the message). The lock is
        released by `unlock_run`, or by the database when this process goes away.
        """
        ...

    def unlock_run(self, run_id: str) -> None:
        """Release the run's lock (nothing happens when it is not held)."""
        ...

    def read_journal(self, run_id: str) -> dict[str, Any] | None:
        """The run's journal as stored, or None."""
        ...

    def write_journal(self, run_id: str, data: dict[str, Any]) -> None:
        """Store the run's journal, atomically; refuse when someone else changed it meanwhile."""
        ...

    def delete_journal(self, run_id: str) -> None:
        """Forget the run's journal (a run refused before it sent anything)."""
        ...

    def all_journals(self) -> list[dict[str, Any]]:
        """Every stored journal, most recently written first."""
        ...
