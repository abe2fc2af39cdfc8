"""The SQLite back end: one file on this machine, shared by its processes (WAL, busy timeout).

Write transactions are `BEGIN IMMEDIATE`: they hold the database's one write lock from their
first statement, so every writer is serialised and `Tx.lock` has nothing to add.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar

from costguard.errors import LedgerError
from costguard.ledger.interface import Ledger
from costguard.ledger.migrations import MIGRATIONS, Migration, Schema, refuse_unknown
from costguard.ledger.sql import Row, Tx, dec_text, ts_text

BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's write transaction before failing."""

T = TypeVar("T")


class _SqliteTx:
    """`Tx` over a sqlite3 connection: money as exact decimal TEXT, moments as ISO UTC TEXT."""

    retry = False

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return [dict(row) for row in self._db.execute(sql, params)]

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else dict(row)

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def lock(self, kind: Literal["run", "budget"], key: str) -> None:
        """Nothing to do: `BEGIN IMMEDIATE` already holds the database's write lock."""

    def money(self, amount: Decimal) -> object:
        return dec_text(amount)

    def moment(self, at: datetime) -> object:
        return ts_text(at)


def describe(exc: sqlite3.Error) -> str:
    """An SQLite error as a message; a busy database says who to blame and how long we waited."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"{text}: another process kept it busy (waited up to {BUSY_TIMEOUT_S:g} s)"
    return text


def open_sqlite(path: Path, *, migrate: bool = True) -> SqliteLedger:
    """Open (creating it and its folder if needed) and migrate the SQLite ledger at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"ledger {path}: cannot create its folder: {exc.strerror or exc}"
        raise LedgerError(msg) from exc
    try:
        db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        msg = f"ledger {path}: cannot open: {exc}"
        raise LedgerError(msg) from exc
    ledger = SqliteLedger(db, path)
    try:
        ledger._configure()
        ledger._file = _file_id(path)  # the file exists now (journal_mode = WAL wrote it)
        if migrate:
            ledger.migrate()
            ledger._remember_identity()
    except BaseException:
        db.close()
        raise
    return ledger


class SqliteLedger(Ledger):
    """The ledger in one SQLite file. Get one with `open_ledger(path)`."""

    backend = "sqlite"

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        """Wrap an open connection; `open_ledger` configures and migrates it."""
        self._db = db
        self._lock = threading.RLock()
        self.path = path
        self.location = str(path)
        self._file = _file_id(path)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _configure(self) -> None:
        self._db.row_factory = sqlite3.Row
        with self._errors():
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")

    def migrate(self) -> list[str]:
        """Apply the migrations this ledger lacks, oldest first; return their names."""
        with self._lock, self._errors():
            return apply_migrations(self._db, MIGRATIONS, self.path)

    def applied_migrations(self) -> list[str]:
        """The names of the migrations the ledger records, oldest first."""

        def work(db: Tx) -> list[str]:
            present = db.one(
                "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' "
                "AND name = '_migrations'"
            )
            if present is None:
                return []
            return [r["name"] for r in db.rows("SELECT name FROM _migrations ORDER BY name")]

        return self._read(work)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._fail(describe(exc)) from exc

    def _transaction(self, begin: str, work: Callable[[Tx], T]) -> T:
        with self._lock, self._errors():
            self._check_file()
            self._db.execute(begin)
            try:
                result = work(_SqliteTx(self._db))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _check_file(self) -> None:
        """The file at `path` is still the one this connection has open.

        A ledger file deleted (or replaced by another file) while open stays readable and
        writable through the open connection, so without this check what a run records would
        go to a file nobody will ever read again.
        """
        now = _file_id(self.path)
        if now != self._file:
            what = "was deleted" if now is None else "was replaced by another file"
            msg = f"{what} while this process had it open; nothing was recorded"
            raise self._fail(msg)

    def _write(self, work: Callable[[Tx], T]) -> T:
        """A write transaction: it holds the write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE", work)

    def _read(self, work: Callable[[Tx], T]) -> T:
        """A read transaction: one consistent snapshot for several queries."""
        return self._transaction("BEGIN", work)


def apply_migrations(
    db: sqlite3.Connection, migrations: Sequence[Migration], path: Path
) -> list[str]:
    """Apply the `migrations` not yet recorded, with their records, in one write transaction.

    A ledger that is already current is only read: opening it takes no write lock.
    """
    known = [fn.__name__ for fn in migrations]
    has_table = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if has_table is not None:
        recorded = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        refuse_unknown(recorded - set(known), str(path))
        if recorded >= set(known):
            return []
    applied: list[str] = []
    schema = Schema("sqlite", db.execute)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations "
            "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        refuse_unknown(done - set(known), str(path))
        for fn in migrations:
            if fn.__name__ in done:
                continue
            fn(schema)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, ts_text(datetime.now(UTC))),
            )
            applied.append(fn.__name__)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return applied


def _file_id(path: Path) -> tuple[int, int] | None:
    """The file's (device, inode), or None when there is no file at `path`."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
