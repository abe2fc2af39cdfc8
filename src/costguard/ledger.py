"""The ledger: budgets, each run's reservation and its actual spend, shared across processes.

One SQLite file (PostgreSQL later, behind the same `Ledger` interface) holds three things:

- **budgets**: a limit in USD per period (`day`, `week`, `month` or `none`; see below);
- **runs**: one row per run id, with the maximum cost admitted for it (its *estimate*, which is
  what it reserves while open), who started it, its status and free-form `meta`;
- **spend**: the actual cost of each finished part of a run (a provider job or a request batch),
  one row per `(run_id, part_id)`, stamped with when it was recorded.

**What a budget has left.** For a budget and the period window containing `at`::

    spent     = sum of spend recorded in the window by runs charged to the budget
    reserved  = sum over the budget's open runs of max(estimate - all spend of the run, 0)
    remaining = limit - (reserved + spent)

So while a run is open it counts `max(estimate, spent so far)`: its reservation until its spend
passes it, then its spend. Once settled or released it counts its recorded spend only, and what
it reserved beyond that is free again. Spend counts in the window in which it was *recorded*
(that is when the provider bills it); an open run's unspent reservation counts in every window
that ends after the run was admitted, because it may still be spent there. `remaining` goes
negative when actual spend passes the limit; nothing is admitted then.

**Periods** are UTC: `day` is the calendar day, `week` the ISO week from Monday 00:00, `month`
the calendar month, `none` all time. Windows are half-open: `[start, end)`.

**Admission** (`Ledger.admit`) is one write transaction (`BEGIN IMMEDIATE`): read what the
budget has left, check, insert the run. Writers are serialised, so two processes that together
would pass the budget never both get in. It is idempotent per run id: admitting a run that is
already open returns its admission again and reserves nothing more. `record_spend` is
idempotent per `(run_id, part_id)`; `settle` and `release` close a run once and then do nothing.

**Storage decisions.** Money is stored as exact decimal TEXT (`"12.345"`: every digit, no
exponent), never REAL, and summed in Python as `Decimal`: SQLite's `SUM()` over TEXT goes
through floating point, and integer micro-dollars would round per-token costs (a
$0.075/1M-token rate is 0.075 micro-dollars per token). On PostgreSQL the same columns become
`NUMERIC`. Timestamps are fixed-width ISO-8601 UTC TEXT (`2026-03-01T00:00:00.000000+00:00`), so
text order is time order (`TIMESTAMPTZ` on PostgreSQL). The SQL is plain: no `INSERT OR REPLACE`,
no rowids, no date functions; upserts use `INSERT ... ON CONFLICT (...) DO ...`, which both
databases accept. The only SQLite-specific parts are the connection set-up (WAL, busy timeout,
foreign keys) and `BEGIN IMMEDIATE`, which PostgreSQL replaces with a transaction that first
takes `pg_advisory_xact_lock` (or runs SERIALIZABLE and retries).

**Migrations** follow llm's pattern: `MIGRATIONS` is an ordered list of functions registered
with `@migration`; `_migrations` records the names applied. Opening a ledger applies the
missing ones together with their records in one write transaction (DDL is transactional in
both databases), so an upgrade is all or nothing and two processes never both apply one. A
ledger that records a migration this version does not know was written by a newer costguard:
it is refused, never recreated.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, Literal, get_args

from costguard.budget import check
from costguard.errors import LedgerError
from costguard.money import ZERO, usd

__all__ = [
    "BUSY_TIMEOUT_S",
    "LEDGER_FILENAME",
    "MIGRATIONS",
    "PERIODS",
    "Admission",
    "Budget",
    "BudgetStatus",
    "Ledger",
    "Period",
    "PeriodSpend",
    "Run",
    "default_path",
    "migration",
    "open_ledger",
    "period_window",
]

Period = Literal["day", "week", "month", "none"]
PERIODS: tuple[Period, ...] = get_args(Period)

LEDGER_FILENAME = "ledger.sqlite3"
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's write transaction before failing."""

OPEN = "open"
REFUSED = "refused"
RELEASED = "released"
_NOT_SETTLE_STATUSES = (OPEN, REFUSED)


# --- periods -------------------------------------------------------------------------------


def period_window(period: Period, at: datetime) -> tuple[datetime | None, datetime | None]:
    """The UTC window `[start, end)` of `period` that contains `at`; `(None, None)` for none.

    Raises:
        ValueError: `at` is naive, or `period` is not one of `PERIODS`.
    """
    if at.utcoffset() is None:
        msg = f"at must be timezone-aware, got {at.isoformat()}"
        raise ValueError(msg)
    moment = at.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=moment.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        if start.month == 12:
            return start, start.replace(year=start.year + 1, month=1)
        return start, start.replace(month=start.month + 1)
    if period == "none":
        return None, None
    msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
    raise ValueError(msg)


def _window_phrase(period: Period, start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "in total"
    last: date = (end - timedelta(days=1)).date()
    if period == "day":
        return f"today ({start.date()} UTC)"
    this = {"week": "this week", "month": "this month"}.get(period, "this period")
    return f"{this} ({start.date()} to {last} UTC)"


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """A named limit per period."""

    name: str
    limit: Decimal
    period: Period
    updated: datetime


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """What a budget has used and has left in the period window containing a moment."""

    name: str
    limit: Decimal
    period: Period
    period_start: datetime | None
    """Start of the window (inclusive, UTC); None for period `none`."""
    period_end: datetime | None
    """End of the window (exclusive, UTC); None for period `none`."""
    reserved: Decimal
    """Unspent part of the open runs' reservations: sum of max(estimate - spent, 0)."""
    spent: Decimal
    """Actual spend recorded in the window."""
    remaining: Decimal
    """limit - reserved - spent; negative when spend passed the limit."""
    open_runs: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `Ledger.admit`: may the run go, and against what."""

    run_id: str
    admitted: bool
    needed: Decimal
    """The run's maximum cost: what it reserves when admitted."""
    remaining: Decimal | None
    """What the budget had left before this run; None when no budget applied."""
    shortfall: Decimal
    """How much more room the run would need (0 when admitted)."""
    reason: str
    budget: str | None
    """The budget the run is charged to (it may not exist; then only max_usd applied)."""
    existing: bool = False
    """True when the run was already open: the earlier admission, nothing more reserved."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run as the ledger holds it."""

    run_id: str
    budget: str | None
    estimate: Decimal
    """The maximum cost asked at admission."""
    max_usd: Decimal | None
    reserved: Decimal
    """What it holds beyond its spend: max(estimate - spent, 0) while open, else 0."""
    spent: Decimal
    """All actual spend recorded for the run."""
    parts: int
    """How many parts have recorded spend."""
    status: str
    """`open`, `refused`, `released`, or the status it was settled with."""
    owner: str
    created: datetime
    settled: datetime | None
    """When the run was closed (settled, released or refused)."""
    reason: str
    """Why it was admitted or refused."""
    close_reason: str
    meta: dict[str, Any]
    remaining_at_admission: Decimal | None
    """What its budget had left when it was admitted; None when no budget applied."""

    @property
    def open(self) -> bool:
        """Whether the run still holds its reservation."""
        return self.status == OPEN

    @property
    def counted(self) -> Decimal:
        """What the run counts against its budget now: reserved + spent.

        That is max(estimate, spent) while open and spent once closed.
        """
        return self.reserved + self.spent


@dataclass(frozen=True, slots=True)
class PeriodSpend:
    """Actual spend recorded in one period window."""

    start: datetime | None
    end: datetime | None
    spent: Decimal
    runs: int
    """How many distinct runs recorded spend in the window."""


# --- migrations ----------------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []
"""Every schema migration, oldest first. Never edit or reorder one that has shipped."""


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; its `__name__` is what `_migrations` records."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    """Budgets, runs and their spend."""
    db.execute(
        """
        CREATE TABLE budgets (
            name TEXT PRIMARY KEY,
            limit_usd TEXT NOT NULL,
            period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'none')),
            updated_at TEXT NOT NULL
        )
        """
    )
    # `budget` is no foreign key: a run may name a budget that is not set (yet).
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            budget TEXT,
            estimate_usd TEXT NOT NULL,
            max_usd TEXT,
            remaining_usd TEXT,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_at TEXT NOT NULL,
            closed_at TEXT,
            reason TEXT NOT NULL DEFAULT '',
            close_reason TEXT NOT NULL DEFAULT '',
            meta TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute(
        """
        CREATE TABLE spend (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            part_id TEXT NOT NULL,
            amount_usd TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (run_id, part_id)
        )
        """
    )


@migration
def m002_window_indexes(db: sqlite3.Connection) -> None:
    """Indexes for the period-window sums and the open-run scan done on every admission."""
    db.execute("CREATE INDEX spend_recorded_at ON spend (recorded_at)")
    db.execute("CREATE INDEX runs_budget_status ON runs (budget, status)")
    db.execute("CREATE INDEX runs_created_at ON runs (created_at)")


# --- SQL -----------------------------------------------------------------------------------

_SELECT_RUN = (
    "SELECT r.run_id, r.budget, r.estimate_usd, r.max_usd, r.remaining_usd, r.status, r.owner, "
    "r.created_at, r.closed_at, r.reason, r.close_reason, r.meta, s.amount_usd "
    "FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id WHERE r.run_id = ?"
)
_SELECT_RUNS = (
    "SELECT r.run_id, r.budget, r.estimate_usd, r.max_usd, r.remaining_usd, r.status, r.owner, "
    "r.created_at, r.closed_at, r.reason, r.close_reason, r.meta, s.amount_usd "
    "FROM (SELECT * FROM runs ORDER BY created_at DESC, run_id DESC LIMIT ?) AS r "
    "LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "ORDER BY r.created_at DESC, r.run_id DESC"
)
_SELECT_RUNS_WITH_STATUS = (
    "SELECT r.run_id, r.budget, r.estimate_usd, r.max_usd, r.remaining_usd, r.status, r.owner, "
    "r.created_at, r.closed_at, r.reason, r.close_reason, r.meta, s.amount_usd "
    "FROM (SELECT * FROM runs WHERE status = ? ORDER BY created_at DESC, run_id DESC LIMIT ?) "
    "AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "ORDER BY r.created_at DESC, r.run_id DESC"
)
_SPENT_IN_WINDOW = (
    "SELECT s.amount_usd FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
    "WHERE r.budget = ? AND s.recorded_at >= ? AND s.recorded_at < ?"
)
_OPEN_RUNS = (
    "SELECT r.run_id, r.estimate_usd, s.amount_usd "
    "FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "WHERE r.budget = ? AND r.status = 'open' AND r.created_at < ?"
)
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, budget, estimate_usd, max_usd, remaining_usd, status, owner, "
    "created_at, closed_at, reason, close_reason, meta) "
    "VALUES (:run_id, :budget, :estimate_usd, :max_usd, :remaining_usd, :status, :owner, "
    ":created_at, :closed_at, :reason, '', :meta) "
    "ON CONFLICT (run_id) DO UPDATE SET budget = excluded.budget, "
    "estimate_usd = excluded.estimate_usd, max_usd = excluded.max_usd, "
    "remaining_usd = excluded.remaining_usd, status = excluded.status, owner = excluded.owner, "
    "created_at = excluded.created_at, closed_at = excluded.closed_at, "
    "reason = excluded.reason, close_reason = excluded.close_reason, meta = excluded.meta"
)
_UPSERT_BUDGET = (
    "INSERT INTO budgets (name, limit_usd, period, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET limit_usd = excluded.limit_usd, "
    "period = excluded.period, updated_at = excluded.updated_at"
)

_MIN_TS = datetime.min.replace(tzinfo=UTC).isoformat(timespec="microseconds")
_MAX_TS = datetime.max.replace(tzinfo=UTC).isoformat(timespec="microseconds")


def _ts(moment: datetime) -> str:
    """Fixed-width UTC text: text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dec(amount: Decimal) -> str:
    """Exact decimal text, no exponent: every digit kept (no context rounding), `-0` as `0`."""
    text = format(amount, "f")
    return text.removeprefix("-") if amount.is_zero() else text


def _from_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _opt_decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return _dec(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    msg = f"{type(value).__name__} is not JSON"
    raise TypeError(msg)


# --- the ledger ----------------------------------------------------------------------------


def default_path(home: str | Path | None = None) -> Path:
    """`<home>/ledger.sqlite3`; home defaults to `COSTGUARD_HOME`, then the user data dir."""
    base = str(home) if home not in (None, "") else os.environ.get("COSTGUARD_HOME", "")
    if not base:
        from platformdirs import user_data_dir

        base = user_data_dir("costguard")
    return Path(base).expanduser() / LEDGER_FILENAME


def open_ledger(location: str | Path | None = None) -> Ledger:
    """Open (creating it and its folder if needed) and migrate the ledger at `location`.

    Args:
        location: the SQLite file; None or "" means `default_path()`.

    Raises:
        LedgerError: the folder cannot be created, the file is no SQLite database, it stays
            locked for `BUSY_TIMEOUT_S`, or it was written by a newer costguard.
    """
    path = default_path() if location in (None, "") else Path(str(location)).expanduser()
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
    ledger = Ledger(db, path)
    try:
        ledger._configure()
        ledger.migrate()
    except BaseException:
        db.close()
        raise
    return ledger


class Ledger:
    """Budgets, runs and spend in one database. Get one with `open_ledger`; close it after.

    Every moment passed in (`at`) must be timezone-aware; it is stored in UTC. One `Ledger`
    may be shared by threads (the runner records sync spend from a pool): its calls are
    serialised on one connection. Processes each open their own.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        """Wrap an open connection; `open_ledger` configures and migrates it."""
        self._db = db
        self._lock = threading.RLock()
        self.path = path

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        """Use as a context manager that closes the ledger."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the ledger."""
        self.close()

    def __repr__(self) -> str:
        """`Ledger('/path/ledger.sqlite3')`."""
        return f"Ledger({str(self.path)!r})"

    def _configure(self) -> None:
        self._db.row_factory = sqlite3.Row
        with self._errors():
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")

    def migrate(self) -> list[str]:
        """Apply the migrations this ledger lacks, oldest first; return their names.

        Raises:
            LedgerError: the ledger records a migration this costguard does not know.
        """
        with self._lock, self._errors():
            return _apply_migrations(self._db, MIGRATIONS, self.path)

    # -- plumbing -----------------------------------------------------------------------------

    def _fail(self, message: str) -> LedgerError:
        return LedgerError(f"ledger {self.path}: {message}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._fail(_describe(exc)) from exc

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self._db.execute(begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: it holds the write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        return self._transaction("BEGIN")

    def _utc(self, at: datetime, what: str = "at") -> datetime:
        if not isinstance(at, datetime) or at.utcoffset() is None:
            shown = at.isoformat() if isinstance(at, datetime) else repr(at)
            msg = f"{what} must be a timezone-aware datetime, got {shown}"
            raise self._fail(msg)
        return at.astimezone(UTC)

    def _money(self, value: Decimal | int, what: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            msg = f"{what} must be a Decimal, got {type(value).__name__} {value!r}"
            raise self._fail(msg)
        amount = Decimal(value)
        if not amount.is_finite() or amount < 0:
            msg = f"{what} must be a finite amount >= 0, got {value}"
            raise self._fail(msg)
        return amount

    def _text(self, value: str, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            msg = f"{what} must be a non-empty string, got {value!r}"
            raise self._fail(msg)
        return value

    def _meta(self, meta: Mapping[str, Any] | None) -> str:
        try:
            return json.dumps(
                dict(meta or {}), sort_keys=True, allow_nan=False, default=_json_default
            )
        except (TypeError, ValueError) as exc:
            msg = f"meta must be JSON (str, number, bool, None, list, dict, Decimal, Path): {exc}"
            raise self._fail(msg) from exc

    # -- budgets ------------------------------------------------------------------------------

    def set_budget(
        self,
        name: str = "default",
        *,
        usd: Decimal,
        period: Period = "month",
        at: datetime | None = None,
    ) -> Budget:
        """Create or change the budget `name`: `usd` per `period` (UTC windows).

        Changing a budget takes effect at once for the current window; runs already admitted
        keep their reservations.
        """
        name = self._text(name, "budget name")
        limit = self._money(usd, "usd")
        if period not in PERIODS:
            msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
            raise self._fail(msg)
        when = self._utc(at) if at is not None else datetime.now(UTC)
        with self._write() as db:
            db.execute(_UPSERT_BUDGET, (name, _dec(limit), period, _ts(when)))
        return Budget(name, limit, period, when)

    def budgets(self) -> list[Budget]:
        """Every budget, by name."""
        with self._read() as db:
            rows = db.execute(
                "SELECT name, limit_usd, period, updated_at FROM budgets ORDER BY name"
            ).fetchall()
        return [_budget(row) for row in rows]

    def status(self, name: str = "default", *, at: datetime) -> BudgetStatus:
        """What budget `name` has used and left in its window containing `at`.

        Raises:
            LedgerError: no budget has that name.
        """
        when = self._utc(at)
        with self._read() as db:
            row = db.execute(
                "SELECT name, limit_usd, period, updated_at FROM budgets WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                msg = (
                    f"no budget named {name!r}; "
                    f"set one with 'costguard budget set --name {name} --usd AMOUNT'"
                )
                raise self._fail(msg)
            return _status(db, _budget(row), when)

    def statuses(self, *, at: datetime) -> list[BudgetStatus]:
        """`status` of every budget, by name, from one snapshot."""
        when = self._utc(at)
        with self._read() as db:
            rows = db.execute(
                "SELECT name, limit_usd, period, updated_at FROM budgets ORDER BY name"
            ).fetchall()
            return [_status(db, _budget(row), when) for row in rows]

    # -- runs -----------------------------------------------------------------------------

    def admit(
        self,
        run_id: str,
        amount: Decimal,
        *,
        budget: str | None = "default",
        max_usd: Decimal | None = None,
        owner: str,
        at: datetime,
        meta: Mapping[str, Any] | None = None,
    ) -> Admission:
        """Reserve `amount` (the run's maximum cost) for `run_id` if it fits, in one step.

        The run fits when `amount <= max_usd` (if given) and `amount <=` what budget `budget`
        has left in its window containing `at` (if a budget of that name is set; with none,
        only `max_usd` applies). Either way the run is recorded: `open` holding `amount`, or
        `refused` holding nothing.

        Idempotent per run id: a run already open gets its earlier admission back
        (`existing=True`) and nothing more is reserved. A refused run may be admitted again
        (the budget may have grown); a closed one may not.

        Raises:
            LedgerError: the run is already settled or released, or an argument is invalid.
        """
        run_id = self._text(run_id, "run id")
        needed = self._money(amount, "amount")
        cap = None if max_usd is None else self._money(max_usd, "max_usd")
        owner = self._text(owner, "owner")
        when = self._utc(at)
        meta_json = self._meta(meta)
        if budget is not None:
            budget = self._text(budget, "budget name")
        with self._write() as db:
            row = db.execute(
                "SELECT status, budget, estimate_usd, remaining_usd, reason, created_at "
                "FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is not None and row["status"] == OPEN:
                return Admission(
                    run_id=run_id,
                    admitted=True,
                    needed=Decimal(row["estimate_usd"]),
                    remaining=_opt_decimal(row["remaining_usd"]),
                    shortfall=ZERO,
                    reason=f"already admitted at {row['created_at']}; nothing more reserved",
                    budget=row["budget"],
                    existing=True,
                )
            if row is not None and row["status"] != REFUSED:
                msg = (
                    f"run {run_id!r} is already closed ({row['status']}); "
                    "admit it again under a new run id"
                )
                raise self._fail(msg)
            found = None
            if budget is not None:
                budget_row = db.execute(
                    "SELECT name, limit_usd, period, updated_at FROM budgets WHERE name = ?",
                    (budget,),
                ).fetchone()
                found = None if budget_row is None else _status(db, _budget(budget_row), when)
            admitted, shortfall, reason = _decide(needed, cap, budget, found)
            db.execute(
                _UPSERT_RUN,
                {
                    "run_id": run_id,
                    "budget": budget,
                    "estimate_usd": _dec(needed),
                    "max_usd": None if cap is None else _dec(cap),
                    "remaining_usd": None if found is None else _dec(found.remaining),
                    "status": OPEN if admitted else REFUSED,
                    "owner": owner,
                    "created_at": _ts(when),
                    "closed_at": None if admitted else _ts(when),
                    "reason": reason,
                    "meta": meta_json,
                },
            )
        return Admission(
            run_id=run_id,
            admitted=admitted,
            needed=needed,
            remaining=None if found is None else found.remaining,
            shortfall=shortfall,
            reason=reason,
            budget=budget,
        )

    def record_spend(self, run_id: str, part_id: str, amount: Decimal, *, at: datetime) -> bool:
        """Record the actual cost of one finished part of a run; True if it was new.

        Idempotent per `(run_id, part_id)`: recording the same part again with the same amount
        changes nothing and returns False. Spend may be recorded while the run is open and
        after it closed (a late part still cost money); it counts in the window containing
        `at`.

        Raises:
            LedgerError: the run is unknown or was refused, or the part was already recorded
                with a different amount.
        """
        run_id = self._text(run_id, "run id")
        part_id = self._text(part_id, "part id")
        cost = self._money(amount, "amount")
        when = self._utc(at)
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._fail(f"no run {run_id!r}; admit it before recording its spend")
            if row["status"] == REFUSED:
                raise self._fail(f"run {run_id!r} was refused; it cannot have spent anything")
            before = db.execute(
                "SELECT amount_usd FROM spend WHERE run_id = ? AND part_id = ?",
                (run_id, part_id),
            ).fetchone()
            if before is not None:
                if Decimal(before["amount_usd"]) != cost:
                    msg = (
                        f"part {part_id!r} of run {run_id!r} is already recorded as "
                        f"${before['amount_usd']}, not ${_dec(cost)}"
                    )
                    raise self._fail(msg)
                return False
            db.execute(
                "INSERT INTO spend (run_id, part_id, amount_usd, recorded_at) VALUES (?, ?, ?, ?)",
                (run_id, part_id, _dec(cost), _ts(when)),
            )
        return True

    def settle(self, run_id: str, *, status: str, at: datetime) -> Run:
        """Close an open run with `status` (e.g. `completed`, `failed`); return it.

        What it reserved beyond its recorded spend stops counting. Idempotent: closing a run
        that is already closed changes nothing (the first status stays) and returns it.

        Raises:
            LedgerError: the run is unknown, or `status` is `open` or `refused`.
        """
        status = self._text(status, "status")
        if status in _NOT_SETTLE_STATUSES:
            msg = f"cannot settle with status {status!r}; use e.g. completed, failed, cancelled"
            raise self._fail(msg)
        return self._close(run_id, status=status, at=at, reason="")

    def release(self, run_id: str, *, at: datetime, reason: str) -> Run:
        """Close a run refused or cancelled before it submitted anything; status `released`.

        Its reservation is freed; any spend it did record still counts. Idempotent like
        `settle`.
        """
        return self._close(run_id, status=RELEASED, at=at, reason=self._text(reason, "reason"))

    def _close(self, run_id: str, *, status: str, at: datetime, reason: str) -> Run:
        run_id = self._text(run_id, "run id")
        when = self._utc(at)
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, closed_at = ?, close_reason = ? "
                "WHERE run_id = ? AND status = 'open'",
                (status, _ts(when), reason, run_id),
            )
            found = _runs_from(db.execute(_SELECT_RUN, (run_id,)))
        if not found:
            raise self._fail(f"no run {run_id!r}")
        return found[0]

    # -- queries ----------------------------------------------------------------------------

    def run(self, run_id: str) -> Run | None:
        """The run `run_id`, or None."""
        with self._read() as db:
            found = _runs_from(db.execute(_SELECT_RUN, (run_id,)))
        return found[0] if found else None

    def runs(self, *, limit: int = 50, status: str | None = None) -> list[Run]:
        """The latest `limit` runs (only those with `status`, if given), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise self._fail(f"limit must be a whole number >= 1, got {limit!r}")
        with self._read() as db:
            if status is None:
                return _runs_from(db.execute(_SELECT_RUNS, (limit,)))
            return _runs_from(db.execute(_SELECT_RUNS_WITH_STATUS, (status, limit)))

    def spend_by(
        self, budget: str | None = "default", period: Period = "month"
    ) -> list[PeriodSpend]:
        """Actual spend per `period` window (UTC), oldest first; windows without spend omitted.

        Args:
            budget: only runs charged to this budget; None for every run.
            period: the window size (`none`: one window over all time).
        """
        if period not in PERIODS:
            msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
            raise self._fail(msg)
        query = (
            "SELECT s.run_id, s.amount_usd, s.recorded_at FROM spend AS s "
            "JOIN runs AS r ON r.run_id = s.run_id "
        )
        with self._read() as db:
            if budget is None:
                rows = db.execute(query + "ORDER BY s.recorded_at").fetchall()
            else:
                rows = db.execute(
                    query + "WHERE r.budget = ? ORDER BY s.recorded_at", (budget,)
                ).fetchall()
        windows: dict[tuple[datetime | None, datetime | None], tuple[Decimal, set[str]]] = {}
        for row in rows:
            key = period_window(period, _from_ts(row["recorded_at"]))
            total, run_ids = windows.get(key, (ZERO, set()))
            run_ids.add(row["run_id"])
            windows[key] = (total + Decimal(row["amount_usd"]), run_ids)
        return [
            PeriodSpend(start, end, total, len(run_ids))
            for (start, end), (total, run_ids) in windows.items()
        ]


# --- helpers over rows ---------------------------------------------------------------------


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"{text}: another process kept it busy (waited up to {BUSY_TIMEOUT_S:g} s)"
    return text


def _budget(row: sqlite3.Row) -> Budget:
    return Budget(
        name=row["name"],
        limit=Decimal(row["limit_usd"]),
        period=row["period"],
        updated=_from_ts(row["updated_at"]),
    )


def _status(db: sqlite3.Connection, budget: Budget, at: datetime) -> BudgetStatus:
    start, end = period_window(budget.period, at)
    start_ts = _MIN_TS if start is None else _ts(start)
    end_ts = _MAX_TS if end is None else _ts(end)
    spent = sum(
        (Decimal(r[0]) for r in db.execute(_SPENT_IN_WINDOW, (budget.name, start_ts, end_ts))),
        ZERO,
    )
    held: dict[str, tuple[Decimal, Decimal]] = {}
    for run_id, estimate, amount in db.execute(_OPEN_RUNS, (budget.name, end_ts)):
        reserved, used = held.get(run_id, (Decimal(estimate), ZERO))
        held[run_id] = (reserved, used if amount is None else used + Decimal(amount))
    reserved_total = sum((max(r - u, ZERO) for r, u in held.values()), ZERO)
    return BudgetStatus(
        name=budget.name,
        limit=budget.limit,
        period=budget.period,
        period_start=start,
        period_end=end,
        reserved=reserved_total,
        spent=spent,
        remaining=budget.limit - reserved_total - spent,
        open_runs=len(held),
    )


def _decide(
    needed: Decimal, cap: Decimal | None, budget: str | None, found: BudgetStatus | None
) -> tuple[bool, Decimal, str]:
    """Check `needed` against `max_usd` and the budget; (admitted, shortfall, reason)."""
    refusals: list[str] = []
    shortfall = ZERO
    if cap is not None:
        decision = check(needed, cap)
        if not decision.fits:
            shortfall = max(shortfall, decision.shortfall)
            refusals.append(
                f"needs {usd(needed)}, more than max_usd {usd(cap)} by {usd(decision.shortfall)}"
            )
    window = ""
    if found is not None:
        window = _window_phrase(found.period, found.period_start, found.period_end)
        decision = check(needed, found.remaining)
        if not decision.fits:
            shortfall = max(shortfall, decision.shortfall)
            refusals.append(
                f"needs {usd(needed)}, but budget {found.name!r} ({usd(found.limit)}) has "
                f"{usd(found.remaining)} left {window}; short by {usd(decision.shortfall)}"
            )
    if refusals:
        return False, shortfall, "; ".join(refusals)
    if found is not None:
        reason = (
            f"fits: needs {usd(needed)} of the {usd(found.remaining)} "
            f"budget {found.name!r} has left {window}"
        )
    elif budget is not None:
        reason = f"admitted: no budget named {budget!r} is set"
    else:
        reason = "admitted: charged to no budget"
    if cap is not None:
        reason += f" (max_usd {usd(cap)})"
    return True, ZERO, reason


def _runs_from(rows: Iterable[sqlite3.Row]) -> list[Run]:
    """Fold `run columns + one spend amount` rows (grouped by run, in order) into runs."""
    first: dict[str, sqlite3.Row] = {}
    spent: dict[str, list[Decimal]] = {}
    for row in rows:
        run_id = row["run_id"]
        if run_id not in first:
            first[run_id] = row
            spent[run_id] = []
        if row["amount_usd"] is not None:
            spent[run_id].append(Decimal(row["amount_usd"]))
    return [_run(row, spent[run_id]) for run_id, row in first.items()]


def _run(row: sqlite3.Row, amounts: Sequence[Decimal]) -> Run:
    estimate = Decimal(row["estimate_usd"])
    status = row["status"]
    closed = row["closed_at"]
    spent = sum(amounts, ZERO)
    return Run(
        run_id=row["run_id"],
        budget=row["budget"],
        estimate=estimate,
        max_usd=_opt_decimal(row["max_usd"]),
        reserved=max(estimate - spent, ZERO) if status == OPEN else ZERO,
        spent=spent,
        parts=len(amounts),
        status=status,
        owner=row["owner"],
        created=_from_ts(row["created_at"]),
        settled=None if closed is None else _from_ts(closed),
        reason=row["reason"],
        close_reason=row["close_reason"],
        meta=json.loads(row["meta"]),
        remaining_at_admission=_opt_decimal(row["remaining_usd"]),
    )


def _refuse_unknown(unknown: set[str], path: Path) -> None:
    if unknown:
        msg = (
            f"ledger {path}: written by a newer costguard (unknown migrations: "
            f"{', '.join(sorted(unknown))}); upgrade costguard or use another ledger file"
        )
        raise LedgerError(msg)


def _apply_migrations(
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
        _refuse_unknown(recorded - set(known), path)
        if recorded >= set(known):
            return []
    applied: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations "
            "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        _refuse_unknown(done - set(known), path)
        for fn in migrations:
            if fn.__name__ in done:
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, _ts(datetime.now(UTC))),
            )
            applied.append(fn.__name__)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return applied
