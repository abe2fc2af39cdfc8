"""The PostgreSQL back end: one ledger shared by every runner and workstation of a team.

**Connections.** One connection per `PostgresLedger` (autocommit; transactions are explicit),
session time zone UTC, `lock_timeout` = `LOCK_TIMEOUT_S` (a writer never waits forever for a
stuck one) and `idle_in_transaction_session_timeout`, so a client that vanished mid-transaction
cannot hold a budget's lock for long.

**Admission** is one READ COMMITTED transaction that first takes transaction-level advisory
locks, on the run id and then on the budget name (`pg_advisory_xact_lock(namespace,
hashtext(name))`, always in that order, so two admissions cannot deadlock), then reads what the
budget has left in one statement (one snapshot taken *after* the lock was granted, so it sees
every admission committed before), then inserts the run. Admissions to one budget therefore
queue up, whatever machine they come from; other budgets are not held up. Locks are held until
COMMIT or ROLLBACK, and the server releases them when a connection dies.

**Retries.** A transaction that fails because its connection was lost (server restart,
`pg_terminate_backend`, network), or on a serialization failure or deadlock, is run again from
the start on a new connection, for up to `RETRY_S`. Losing the connection before COMMIT means
nothing was committed (the server rolls the transaction back). Losing it *during* COMMIT leaves
the outcome unknown; the retry is then marked (`Tx.retry`) and every write is idempotent: a
run found open with this call's owner and moment is this call's own admission, returned as
such; spend already recorded with this call's amount and moment is this call's. So a retry
never reserves twice and never half-writes.

**Run journals** (`PostgresJournals`) live in the `journals` table; a run's lock is a
session-level advisory lock held on a connection of its own for as long as a process drives
the run, released by the server if that process dies.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from costguard.errors import LedgerError
from costguard.ledger.interface import Ledger
from costguard.ledger.migrations import MIGRATIONS, Migration, Schema, refuse_unknown
from costguard.ledger.sql import Row, Tx

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

MISSING_DRIVER = 'the PostgreSQL ledger needs psycopg: pip install "costguard[postgres]"'
RETRY_S = 30.0
"""How long a transaction is retried after lost connections or serialization failures."""
CONNECT_TIMEOUT_S = 10
"""How long one connection attempt may take."""
LOCK_TIMEOUT_S = 30.0
"""How long a write waits for another process's lock on the same budget or run."""
IDLE_IN_TRANSACTION_S = 60.0
"""The server ends a session that sits idle inside a transaction this long (a vanished client)."""

NAMESPACE: dict[str, int] = {
    "run": 0x43470001,
    "budget": 0x43470002,
    "migrate": 0x43470003,
    "journal": 0x43470004,
}
"""First key of costguard's two-key advisory locks (the second is `hashtext(name)`)."""

_FATAL_SQLSTATES = ("28", "3D")
"""Errors not worth retrying: authentication (28xxx), unknown database (3D000)."""
_STARTUP_TRANSIENT = (
    "starting up",
    "shutting down",
    "in recovery mode",
    "not yet accepting connections",
    "too many clients",
    "remaining connection slots",
)
"""FATAL answers to a new connection that go away by themselves (a restart, a full server)."""


def _refused_for_good(exc: Exception) -> bool:
    """Whether a failed connection attempt was answered with a lasting FATAL (bad password,
    unknown database or role, no pg_hba entry), as opposed to a server that is away for now.

    libpq reports these as text without a SQLSTATE, so the text is what is left to read.
    """
    text = str(exc)
    return "FATAL:" in text and not any(phrase in text for phrase in _STARTUP_TRANSIENT)


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, for messages and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _require_driver() -> None:
    """Raise the one-line install hint when psycopg is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise LedgerError(MISSING_DRIVER) from exc


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's `%s` (and `%` escaped)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _application_name() -> str:
    return f"costguard {socket.gethostname()} pid {os.getpid()}"[:63]


class _PgTx:
    """`Tx` over a psycopg connection: money as NUMERIC (Decimal), moments as TIMESTAMPTZ."""

    def __init__(self, conn: psycopg.Connection[Row], *, retry: bool) -> None:
        self.conn = conn
        self.retry = retry

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self.conn.execute(_pg(sql), params).fetchall()

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return self.conn.execute(_pg(sql), params).fetchone()

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self.conn.execute(_pg(sql), params).rowcount

    def lock(self, kind: Literal["run", "budget"], key: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (NAMESPACE[kind], key))

    def money(self, amount: Decimal) -> object:
        return amount

    def moment(self, at: datetime) -> object:
        return at


def open_postgres(url: str, *, migrate: bool = True) -> PostgresLedger:
    """Connect to the ledger at `url` and migrate it (unless `migrate` is False).

    Raises:
        LedgerError: psycopg is not installed, the server cannot be reached (after retrying
            for `RETRY_S`), the credentials or database are wrong, or a newer costguard wrote
            the ledger.
    """
    _require_driver()
    ledger = PostgresLedger(url)
    try:
        if migrate:
            ledger.migrate()
            ledger._remember_identity()
        else:
            ledger.applied_migrations()  # connect now: a bad URL fails here
    except BaseException:
        ledger.close()
        raise
    return ledger


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database. Get one with `open_ledger("postgresql://...")`."""

    backend = "postgresql"

    def __init__(self, url: str) -> None:
        """Remember where the database is; nothing connects until the first call."""
        self.url = url
        self.location = redact(url)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Row] | None = None
        self._journals: PostgresJournals | None = None

    # -- connections ------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Row]:
        """A new connection set up for the ledger (UTC, lock and idle timeouts)."""
        _require_driver()
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.rows import dict_row

        given = conninfo_to_dict(self.url)
        extra: dict[str, Any] = {}
        if "application_name" not in given:
            extra["application_name"] = _application_name()
        if "connect_timeout" not in given:
            extra["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            conn: psycopg.Connection[Row] = psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, **extra
            )
        except psycopg.OperationalError as exc:
            if _refused_for_good(exc):
                raise self._fail(f"cannot connect: {describe(exc)}") from exc
            raise
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_S * 1000)}")
            conn.execute(
                f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_S * 1000)}"
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    def _drop(self) -> None:
        """Forget a connection that broke (the server has rolled back whatever it held)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def backend_pid(self) -> int:
        """The server process of this ledger's connection (for tests and diagnostics)."""
        with self._lock:
            return self._connection().info.backend_pid

    def close(self) -> None:
        """Close the connections (the ledger's and the run-lock connection, if any)."""
        with self._lock:
            if self._journals is not None:
                self._journals.close()
            self._drop()

    # -- transactions -----------------------------------------------------------------------

    def _commit(self, conn: psycopg.Connection[Row]) -> None:
        """COMMIT (a method of its own so tests can lose the connection right here)."""
        conn.execute("COMMIT")

    def _transaction(self, begin: str, work: Callable[[Tx], T]) -> T:
        _require_driver()
        import psycopg

        with self._lock:
            deadline = time.monotonic() + RETRY_S
            delay = 0.05
            maybe_committed = False
            while True:
                committing = False
                try:
                    conn = self._connection()
                    conn.execute(begin)
                    try:
                        result = work(_PgTx(conn, retry=maybe_committed))
                        committing = True
                        self._commit(conn)
                    except BaseException:
                        if not committing:
                            self._rollback(conn)
                        raise
                except psycopg.Error as exc:
                    if not self._transient(exc):
                        raise self._fail(describe(exc)) from exc
                    maybe_committed = maybe_committed or committing
                    if self._conn is not None and (self._conn.broken or self._conn.closed):
                        self._drop()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        msg = f"gave up after retrying for {RETRY_S:g} s: {describe(exc)}"
                        raise self._fail(msg) from exc
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, 1.0)
                else:
                    return result

    def _rollback(self, conn: psycopg.Connection[Row]) -> None:
        if conn.closed or conn.broken:
            return
        try:
            conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone; the server rolled back
            self._drop()

    def _transient(self, exc: Exception) -> bool:
        """Whether running the transaction again may succeed."""
        from psycopg import errors

        if isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
            return False
        if isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected):
            return True
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate.startswith(_FATAL_SQLSTATES):
            return False
        if isinstance(exc, errors.OperationalError) and (
            self._conn is None or self._conn.closed or self._conn.broken
        ):
            return True
        lost = errors.AdminShutdown | errors.CrashShutdown | errors.CannotConnectNow
        return isinstance(exc, lost)

    def _write(self, work: Callable[[Tx], T]) -> T:
        return self._transaction("BEGIN", work)

    def _read(self, work: Callable[[Tx], T]) -> T:
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", work)

    # -- migrations -------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations this ledger lacks, oldest first, in one transaction."""
        known = {fn.__name__ for fn in MIGRATIONS}
        recorded = set(self.applied_migrations())
        refuse_unknown(recorded - known, self.location)
        if recorded >= known:
            return []
        return self._write(lambda db: apply_migrations(db, MIGRATIONS, self.location))

    def applied_migrations(self) -> list[str]:
        """The names of the migrations the ledger records, oldest first."""

        def work(db: Tx) -> list[str]:
            present = db.one("SELECT to_regclass('_migrations') IS NOT NULL AS present")
            if present is None or not present["present"]:
                return []
            return [r["name"] for r in db.rows("SELECT name FROM _migrations ORDER BY name")]

        return self._read(work)

    # -- shared run journals ----------------------------------------------------------------

    @property
    def journals(self) -> PostgresJournals:
        """Run journals and run locks in this database."""
        with self._lock:
            if self._journals is None:
                self._journals = PostgresJournals(self)
            return self._journals


def apply_migrations(db: Tx, migrations: Sequence[Migration], where: str) -> list[str]:
    """Apply the `migrations` not yet recorded, inside the caller's write transaction.

    An advisory lock makes concurrent first uses wait for each other: one applies, the others
    then find everything recorded.
    """
    assert isinstance(db, _PgTx)
    conn = db.conn
    conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (NAMESPACE["migrate"],))
    conn.execute(
        'CREATE TABLE IF NOT EXISTS _migrations (name TEXT COLLATE "C" PRIMARY KEY, '
        "applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row["name"] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
    refuse_unknown(done - {fn.__name__ for fn in migrations}, where)
    schema = Schema("postgresql", conn.execute)
    applied = []
    for fn in migrations:
        if fn.__name__ in done:
            continue
        fn(schema)
        conn.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (%s, now())", (fn.__name__,)
        )
        applied.append(fn.__name__)
    return applied


def describe(exc: Exception) -> str:
    """A psycopg error as one line."""
    from psycopg import errors

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, errors.LockNotAvailable):
        return f"{text}: another process kept it busy (waited up to {LOCK_TIMEOUT_S:g} s)"
    return text


class PostgresJournals:
    """`JournalStore` in the ledger's database.

    Journals are read through the ledger's connection. Run locks are session-level advisory
    locks on a connection of their own, and a locked run's journal is written through that
    same connection: if it was lost (and with it the lock), the lock is taken again before
    writing, or the write is refused. Every write also checks the version it last saw, so a
    journal changed by someone else is never overwritten.
    """

    def __init__(self, ledger: PostgresLedger) -> None:
        """Journals of `ledger`'s database; the lock connection opens on the first lock."""
        self._ledger = ledger
        self.location = ledger.location
        self._conn: psycopg.Connection[Row] | None = None
        self._held: set[str] = set()
        self._versions: dict[str, int] = {}
        self._lock = threading.RLock()

    def close(self) -> None:
        """Release every run lock (closing their connection)."""
        with self._lock:
            self._held.clear()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def _lock_connection(self) -> psycopg.Connection[Row]:
        """The run-lock connection; when it was lost, a new one that takes the locks again."""
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        lost = set(self._held)
        self._conn = None
        self._held.clear()
        conn = self._ledger.connect()
        self._conn = conn
        for run_id in sorted(lost):
            holder = self._try_lock(conn, run_id)
            if holder is not None:
                msg = (
                    f"lost the lock on run {run_id} (connection to the ledger dropped) and "
                    f"{holder} has it now; stop here and let that process finish the run"
                )
                raise LedgerError(f"ledger {self.location}: {msg}")
        return conn

    def _try_lock(self, conn: psycopg.Connection[Row], run_id: str) -> str | None:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got",
            (NAMESPACE["journal"], run_id),
        ).fetchone()
        if row is not None and row["got"]:
            self._held.add(run_id)
            return None
        holder = conn.execute(
            "SELECT a.application_name, a.client_addr::text AS addr, a.pid "
            "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
            "AND l.objid = hashtext(%s)::oid AND l.objsubid = 2",
            (NAMESPACE["journal"], run_id),
        ).fetchone()
        if holder is None:
            return "another process"
        where = f" at {holder['addr']}" if holder["addr"] else ""
        name = holder["application_name"] or "a client"
        return f"{name}{where} (server pid {holder['pid']})"

    def _retrying(self, what: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `what` on the lock connection, again on a new one if the connection is lost."""
        import psycopg

        deadline = time.monotonic() + RETRY_S
        delay = 0.05
        while True:
            try:
                return what(self._lock_connection())
            except psycopg.Error as exc:
                conn = self._conn
                if conn is not None and not (conn.closed or conn.broken):
                    raise LedgerError(f"ledger {self.location}: {describe(exc)}") from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = f"gave up after retrying for {RETRY_S:g} s: {describe(exc)}"
                    raise LedgerError(f"ledger {self.location}: {msg}") from exc
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    def lock_run(self, run_id: str) -> str | None:
        """Take the run's lock (session-level advisory lock) without waiting."""
        with self._lock:
            if run_id in self._held:
                return None
            return self._retrying(lambda conn: self._try_lock(conn, run_id))

    def unlock_run(self, run_id: str) -> None:
        """Release the run's lock."""
        with self._lock:
            if run_id not in self._held:
                return
            self._held.discard(run_id)
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                return
            with contextlib.suppress(Exception):
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (NAMESPACE["journal"], run_id)
                )

    def read_journal(self, run_id: str) -> dict[str, Any] | None:
        """The stored journal (remembering its version for the next write), or None."""
        row = self._ledger._read(
            lambda db: db.one("SELECT data, version FROM journals WHERE run_id = ?", (run_id,))
        )
        if row is None:
            self._versions.pop(run_id, None)
            return None
        self._versions[run_id] = int(row["version"])
        data: dict[str, Any] = row["data"]
        return data

    def write_journal(self, run_id: str, data: dict[str, Any]) -> None:
        """Insert or update the journal, checking its version; retried if the connection drops.

        Raises:
            LedgerError: someone else wrote the journal since this process last read or wrote
                it, or the lock was lost to another process.
        """
        from psycopg.types.json import Jsonb

        with self._lock:
            expected = self._versions.get(run_id)
            payload = Jsonb(data)
            who = _application_name()

            def write(conn: psycopg.Connection[Row]) -> None:
                if expected is None:
                    row = conn.execute(
                        "INSERT INTO journals (run_id, data, version, updated_at, updated_by) "
                        "VALUES (%s, %s, 1, now(), %s) ON CONFLICT (run_id) DO NOTHING "
                        "RETURNING version",
                        (run_id, payload, who),
                    ).fetchone()
                else:
                    row = conn.execute(
                        "UPDATE journals SET data = %s, version = version + 1, "
                        "updated_at = now(), updated_by = %s "
                        "WHERE run_id = %s AND version = %s RETURNING version",
                        (payload, who, run_id, expected),
                    ).fetchone()
                if row is None:
                    now = conn.execute(
                        "SELECT version, data = %s AS same FROM journals WHERE run_id = %s",
                        (payload, run_id),
                    ).fetchone()
                    if now is not None and now["same"] and now["version"] == (expected or 0) + 1:
                        row = now  # an earlier attempt wrote it before its connection dropped
                    else:
                        msg = (
                            f"the journal of run {run_id} was changed by another process "
                            "since this one read it; run the command again"
                        )
                        raise LedgerError(f"ledger {self.location}: {msg}")
                self._versions[run_id] = int(row["version"])

            if run_id in self._held:
                self._retrying(write)
            else:
                self._ledger._write(lambda db: write(db.conn))  # type: ignore[attr-defined]

    def delete_journal(self, run_id: str) -> None:
        """Forget the run's journal."""
        self._ledger._write(lambda db: db.run("DELETE FROM journals WHERE run_id = ?", (run_id,)))
        self._versions.pop(run_id, None)

    def all_journals(self) -> list[dict[str, Any]]:
        """Every stored journal, most recently written first."""
        rows = self._ledger._read(
            lambda db: db.rows("SELECT data FROM journals ORDER BY updated_at DESC, run_id")
        )
        return [row["data"] for row in rows]


_URL = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def is_url(location: object) -> bool:
    """Whether `location` names a PostgreSQL ledger (`postgresql://` or `postgres://`)."""
    return isinstance(location, str) and bool(_URL.match(location.strip()))
