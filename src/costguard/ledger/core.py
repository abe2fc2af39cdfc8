"""The ledger's interface and everything both back ends share: records, periods, schema, rules.

`Ledger` holds the rules (what a budget has left, when a run is admitted, idempotency) and the
SQL, written once in the subset SQLite and PostgreSQL both accept. A back end supplies only
transactions (`Tx`): how to begin, lock, bind money and moments, and retry. See the package
docstring for the model.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar, get_args

from costguard.errors import LedgerError
from costguard.money import ZERO, usd
from costguard.pricing.budget import check

if TYPE_CHECKING:
    from costguard.ledger.journals import JournalStore

Period = Literal["day", "week", "month", "none"]
PERIODS: tuple[Period, ...] = get_args(Period)

OPEN = "open"
REFUSED = "refused"
RELEASED = "released"
_NOT_SETTLE_STATUSES = (OPEN, REFUSED)

T = TypeVar("T")


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
class OwnerUsage:
    """What one owner's runs use of a budget in a window."""

    owner: str
    reserved: Decimal
    """Unspent part of the owner's open runs' reservations."""
    spent: Decimal
    """Actual spend of the owner's runs recorded in the window."""
    open_runs: int
    runs: int
    """Runs that hold a reservation or recorded spend in the window."""

    @property
    def counted(self) -> Decimal:
        """reserved + spent: the owner's share of what the budget has used."""
        return self.reserved + self.spent


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
    owners: tuple[OwnerUsage, ...] = ()
    """The same split by the runs' owners, most counted first."""


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


@dataclass(frozen=True, slots=True)
class Charge:
    """One recorded spend (a part of a run), with the run it belongs to: a line for finance."""

    recorded: datetime
    run_id: str
    part_id: str
    amount: Decimal
    budget: str | None
    owner: str
    status: str
    """The run's status now."""
    meta: dict[str, Any]
    """The run's meta (queue, mode, rate cards)."""


# --- schema --------------------------------------------------------------------------------

Dialect = Literal["sqlite", "postgresql"]

COLUMN_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"text": "TEXT", "money": "TEXT", "moment": "TEXT", "json": "TEXT"},
    "postgresql": {
        "text": 'TEXT COLLATE "C"',
        "money": "NUMERIC",
        "moment": "TIMESTAMPTZ",
        "json": "JSONB",
    },
}
"""What the migrations' `{text}`, `{money}`, `{moment}` and `{json}` become per database.

Text is compared byte by byte on both (`COLLATE "C"`: SQLite's order), money is exact decimal
(`NUMERIC`, or decimal TEXT summed in Python), moments are UTC instants.
"""


class Schema:
    """What a migration gets: the dialect and `execute(ddl)` with the column types filled in."""

    def __init__(self, dialect: Dialect, execute: Callable[[str], object]) -> None:
        """Wrap a back end's statement runner."""
        self.dialect = dialect
        self._execute = execute

    def execute(self, ddl: str) -> None:
        """Run `ddl` after replacing `{text}`, `{money}`, `{moment}`, `{json}` (`{{` for `{`)."""
        self._execute(ddl.format(**COLUMN_TYPES[self.dialect]))


Migration = Callable[[Schema], None]
MIGRATIONS: list[Migration] = []
"""Every schema migration, oldest first. Never edit or reorder one that has shipped."""


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; its `__name__` is what `_migrations` records."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: Schema) -> None:
    """Budgets, runs and their spend."""
    db.execute(
        """
        CREATE TABLE budgets (
            name {text} PRIMARY KEY,
            limit_usd {money} NOT NULL,
            period {text} NOT NULL CHECK (period IN ('day', 'week', 'month', 'none')),
            updated_at {moment} NOT NULL
        )
        """
    )
    # `budget` is no foreign key: a run may name a budget that is not set (yet).
    db.execute(
        """
        CREATE TABLE runs (
            run_id {text} PRIMARY KEY,
            budget {text},
            estimate_usd {money} NOT NULL,
            max_usd {money},
            remaining_usd {money},
            status {text} NOT NULL,
            owner {text} NOT NULL,
            created_at {moment} NOT NULL,
            closed_at {moment},
            reason {text} NOT NULL DEFAULT '',
            close_reason {text} NOT NULL DEFAULT '',
            meta {json} NOT NULL DEFAULT '{{}}'
        )
        """
    )
    db.execute(
        """
        CREATE TABLE spend (
            run_id {text} NOT NULL REFERENCES runs (run_id),
            part_id {text} NOT NULL,
            amount_usd {money} NOT NULL,
            recorded_at {moment} NOT NULL,
            PRIMARY KEY (run_id, part_id)
        )
        """
    )


@migration
def m002_window_indexes(db: Schema) -> None:
    """Indexes for the period-window sums and the open-run scan done on every admission."""
    db.execute("CREATE INDEX spend_recorded_at ON spend (recorded_at)")
    db.execute("CREATE INDEX runs_budget_status ON runs (budget, status)")
    db.execute("CREATE INDEX runs_created_at ON runs (created_at)")


@migration
def m003_run_journals(db: Schema) -> None:
    """Run journals kept in the ledger, so another machine can collect a run.

    Used when the ledger is shared (PostgreSQL); a local ledger's runs keep `journal.json`
    beside their work files. `version` grows with every write, so a writer that lost its run
    lock cannot overwrite a newer journal.
    """
    db.execute(
        """
        CREATE TABLE journals (
            run_id {text} PRIMARY KEY,
            data {json} NOT NULL,
            version INTEGER NOT NULL,
            updated_at {moment} NOT NULL,
            updated_by {text} NOT NULL DEFAULT ''
        )
        """
    )


def refuse_unknown(unknown: set[str], where: str) -> None:
    """Refuse a ledger that records migrations this costguard does not know."""
    if unknown:
        msg = (
            f"ledger {where}: written by a newer costguard (unknown migrations: "
            f"{', '.join(sorted(unknown))}); upgrade costguard or use another ledger"
        )
        raise LedgerError(msg)


# --- SQL -----------------------------------------------------------------------------------
# `?` placeholders; the PostgreSQL back end turns them into `%s`.

_RUN_COLUMNS = (
    "r.run_id, r.budget, r.estimate_usd, r.max_usd, r.remaining_usd, r.status, r.owner, "
    "r.created_at, r.closed_at, r.reason, r.close_reason, r.meta, s.amount_usd"
)
# S608: the f-strings below only join constant fragments; every value is a bound parameter.
_SELECT_RUN = (
    f"SELECT {_RUN_COLUMNS} FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "  # noqa: S608
    "WHERE r.run_id = ?"
)
_SELECT_RUNS = (
    f"SELECT {_RUN_COLUMNS} "  # noqa: S608
    "FROM (SELECT * FROM runs ORDER BY created_at DESC, run_id DESC LIMIT ?) AS r "
    "LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "ORDER BY r.created_at DESC, r.run_id DESC"
)
_SELECT_RUNS_WITH_STATUS = (
    f"SELECT {_RUN_COLUMNS} "  # noqa: S608
    "FROM (SELECT * FROM runs WHERE status = ? ORDER BY created_at DESC, run_id DESC LIMIT ?) "
    "AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "ORDER BY r.created_at DESC, r.run_id DESC"
)
_USAGE_IN_WINDOW = (
    "SELECT 'spent' AS kind, r.run_id, r.owner, NULL AS estimate_usd, s.amount_usd "
    "FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
    "WHERE r.budget = ? AND s.recorded_at >= ? AND s.recorded_at < ? "
    "UNION ALL "
    "SELECT 'open' AS kind, r.run_id, r.owner, r.estimate_usd, s.amount_usd "
    "FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "WHERE r.budget = ? AND r.status = 'open' AND r.created_at < ?"
)
"""Spend in the window and the open runs with all their spend, in one statement.

One statement reads one snapshot on both databases, so a run settled between two reads can
never be missed by both (PostgreSQL's READ COMMITTED takes a snapshot per statement).
"""
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, budget, estimate_usd, max_usd, remaining_usd, status, owner, "
    "created_at, closed_at, reason, close_reason, meta) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?) "
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
_SELECT_BUDGET = "SELECT name, limit_usd, period, updated_at FROM budgets WHERE name = ?"
_SELECT_BUDGETS = "SELECT name, limit_usd, period, updated_at FROM budgets ORDER BY name"

MIN_MOMENT = datetime(1, 1, 2, tzinfo=UTC)
"""Before any moment the ledger holds (a window with no start)."""
MAX_MOMENT = datetime(9999, 12, 30, tzinfo=UTC)
"""After any moment the ledger holds (a window with no end)."""


def dec_text(amount: Decimal) -> str:
    """Exact decimal text, no exponent: every digit kept (no context rounding), `-0` as `0`."""
    text = format(amount, "f")
    return text.removeprefix("-") if amount.is_zero() else text


def ts_text(moment: datetime) -> str:
    """Fixed-width UTC text: text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _moment(value: datetime | str) -> datetime:
    """A stored moment (TEXT on SQLite, a datetime on PostgreSQL) in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value).astimezone(UTC)


def _opt_decimal(value: Decimal | str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _meta_of(value: dict[str, Any] | str) -> dict[str, Any]:
    """Stored meta (TEXT on SQLite, JSONB already decoded on PostgreSQL)."""
    return value if isinstance(value, dict) else dict(json.loads(value))


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return dec_text(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    msg = f"{type(value).__name__} is not JSON"
    raise TypeError(msg)


Row = dict[str, Any]


class Tx(Protocol):
    """One transaction, as a back end gives it to the shared rules."""

    retry: bool
    """True when an earlier attempt of this same call may have committed (its connection was
    lost during COMMIT): what this attempt finds may be its own earlier work."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run a query; every row as a dict by column name."""
        ...

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """Run a query; its first row or None."""
        ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def lock(self, kind: Literal["run", "budget"], key: str) -> None:
        """Hold a lock on one run or budget until the transaction ends.

        SQLite's write transaction already holds the whole database; PostgreSQL takes a
        transaction-level advisory lock, so writers of the same run or budget queue up.
        """
        ...

    def money(self, amount: Decimal) -> object:
        """`amount` as the database stores money."""
        ...

    def moment(self, at: datetime) -> object:
        """`at` as the database stores moments."""
        ...


# --- the interface -------------------------------------------------------------------------


class Ledger(ABC):
    """Budgets, runs and spend in one database. Get one with `open_ledger`; close it after.

    Every moment passed in (`at`) must be timezone-aware; it is stored in UTC. One `Ledger`
    may be shared by threads (the runner records sync spend from a pool): its calls are
    serialised on one connection. Processes each open their own.

    Back ends: `SqliteLedger` (a file on this machine) and `PostgresLedger` (a server shared by
    many machines). They implement `_write`, `_read`, `migrate` and `close`; the rules are here.
    """

    backend: Dialect
    location: str
    """Where the ledger is, for messages: the file, or the URL without its password."""

    # -- lifecycle --------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the connection(s)."""

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply the migrations this ledger lacks, oldest first; return their names.

        Raises:
            LedgerError: the ledger records a migration this costguard does not know.
        """

    @abstractmethod
    def applied_migrations(self) -> list[str]:
        """The names of the migrations the ledger records, oldest first."""

    @property
    def journals(self) -> JournalStore | None:
        """Where run journals live when the ledger is shared; None: beside the run's files."""
        return None

    def __enter__(self) -> Self:
        """Use as a context manager that closes the ledger."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the ledger."""
        self.close()

    def __repr__(self) -> str:
        """`SqliteLedger('/path/ledger.sqlite3')`."""
        return f"{type(self).__name__}({self.location!r})"

    # -- transactions (back ends) -----------------------------------------------------------

    @abstractmethod
    def _write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one write transaction and commit; roll back if it raises.

        A back end may run `work` again (after a serialization failure or a lost connection),
        so `work` must only touch the database and its own locals.
        """

    @abstractmethod
    def _read(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one read transaction: one consistent snapshot for several queries."""

    # -- plumbing ---------------------------------------------------------------------------

    def _fail(self, message: str) -> LedgerError:
        return LedgerError(f"ledger {self.location}: {message}")

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
        if "\x00" in value:
            raise self._fail(f"{what} must not contain NUL characters, got {value!r}")
        return value

    def _meta(self, meta: Mapping[str, Any] | None) -> str:
        try:
            text = json.dumps(
                dict(meta or {}), sort_keys=True, allow_nan=False, default=_json_default
            )
        except (TypeError, ValueError) as exc:
            msg = f"meta must be JSON (str, number, bool, None, list, dict, Decimal, Path): {exc}"
            raise self._fail(msg) from exc
        if "\\u0000" in text:
            raise self._fail("meta must not contain NUL characters")
        return text

    def _period(self, period: str) -> Period:
        if period not in PERIODS:
            msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
            raise self._fail(msg)
        return period

    # -- budgets ----------------------------------------------------------------------------

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
        period = self._period(period)
        when = self._utc(at) if at is not None else datetime.now(UTC)

        def work(db: Tx) -> None:
            db.run(_UPSERT_BUDGET, (name, db.money(limit), period, db.moment(when)))

        self._write(work)
        return Budget(name, limit, period, when)

    def budgets(self) -> list[Budget]:
        """Every budget, by name."""
        return self._read(lambda db: [_budget(row) for row in db.rows(_SELECT_BUDGETS)])

    def status(self, name: str = "default", *, at: datetime) -> BudgetStatus:
        """What budget `name` has used and left in its window containing `at`.

        Raises:
            LedgerError: no budget has that name.
        """
        when = self._utc(at)

        def work(db: Tx) -> BudgetStatus:
            row = db.one(_SELECT_BUDGET, (name,))
            if row is None:
                msg = (
                    f"no budget named {name!r}; "
                    f"set one with 'costguard budget set --name {name} --usd AMOUNT'"
                )
                raise self._fail(msg)
            return _status(db, _budget(row), when)

        return self._read(work)

    def statuses(self, *, at: datetime) -> list[BudgetStatus]:
        """`status` of every budget, by name, from one snapshot."""
        when = self._utc(at)
        return self._read(
            lambda db: [_status(db, _budget(row), when) for row in db.rows(_SELECT_BUDGETS)]
        )

    # -- runs -------------------------------------------------------------------------------

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

        def work(db: Tx) -> Admission:
            db.lock("run", run_id)
            row = db.one(
                "SELECT status, budget, estimate_usd, remaining_usd, reason, owner, created_at "
                "FROM runs WHERE run_id = ?",
                (run_id,),
            )
            if row is not None and row["status"] == OPEN:
                mine = db.retry and _moment(row["created_at"]) == when and row["owner"] == owner
                return Admission(
                    run_id=run_id,
                    admitted=True,
                    needed=Decimal(row["estimate_usd"]),
                    remaining=_opt_decimal(row["remaining_usd"]),
                    shortfall=ZERO,
                    reason=row["reason"]
                    if mine
                    else (
                        f"already admitted at {ts_text(_moment(row['created_at']))}; "
                        "nothing more reserved"
                    ),
                    budget=row["budget"],
                    existing=not mine,
                )
            if row is not None and row["status"] != REFUSED:
                msg = (
                    f"run {run_id!r} is already closed ({row['status']}); "
                    "admit it again under a new run id"
                )
                raise self._fail(msg)
            found = None
            if budget is not None:
                db.lock("budget", budget)
                budget_row = db.one(_SELECT_BUDGET, (budget,))
                found = None if budget_row is None else _status(db, _budget(budget_row), when)
            admitted, shortfall, reason = _decide(needed, cap, budget, found)
            db.run(
                _UPSERT_RUN,
                (
                    run_id,
                    budget,
                    db.money(needed),
                    None if cap is None else db.money(cap),
                    None if found is None else db.money(found.remaining),
                    OPEN if admitted else REFUSED,
                    owner,
                    db.moment(when),
                    None if admitted else db.moment(when),
                    reason,
                    meta_json,
                ),
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

        return self._write(work)

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

        def work(db: Tx) -> bool:
            db.lock("run", run_id)
            row = db.one("SELECT status FROM runs WHERE run_id = ?", (run_id,))
            if row is None:
                raise self._fail(f"no run {run_id!r}; admit it before recording its spend")
            if row["status"] == REFUSED:
                raise self._fail(f"run {run_id!r} was refused; it cannot have spent anything")
            before = db.one(
                "SELECT amount_usd, recorded_at FROM spend WHERE run_id = ? AND part_id = ?",
                (run_id, part_id),
            )
            if before is not None:
                if Decimal(before["amount_usd"]) != cost:
                    msg = (
                        f"part {part_id!r} of run {run_id!r} is already recorded as "
                        f"${dec_text(Decimal(before['amount_usd']))}, not ${dec_text(cost)}"
                    )
                    raise self._fail(msg)
                return db.retry and _moment(before["recorded_at"]) == when
            db.run(
                "INSERT INTO spend (run_id, part_id, amount_usd, recorded_at) VALUES (?, ?, ?, ?)",
                (run_id, part_id, db.money(cost), db.moment(when)),
            )
            return True

        return self._write(work)

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

        def work(db: Tx) -> list[Run]:
            db.lock("run", run_id)
            db.run(
                "UPDATE runs SET status = ?, closed_at = ?, close_reason = ? "
                "WHERE run_id = ? AND status = 'open'",
                (status, db.moment(when), reason, run_id),
            )
            return _runs_from(db.rows(_SELECT_RUN, (run_id,)))

        found = self._write(work)
        if not found:
            raise self._fail(f"no run {run_id!r}")
        return found[0]

    # -- queries ----------------------------------------------------------------------------

    def run(self, run_id: str) -> Run | None:
        """The run `run_id`, or None."""
        found = self._read(lambda db: _runs_from(db.rows(_SELECT_RUN, (run_id,))))
        return found[0] if found else None

    def runs(self, *, limit: int = 50, status: str | None = None) -> list[Run]:
        """The latest `limit` runs (only those with `status`, if given), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise self._fail(f"limit must be a whole number >= 1, got {limit!r}")
        if status is None:
            return self._read(lambda db: _runs_from(db.rows(_SELECT_RUNS, (limit,))))
        return self._read(lambda db: _runs_from(db.rows(_SELECT_RUNS_WITH_STATUS, (status, limit))))

    def history(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        budget: str | None = None,
        owner: str | None = None,
    ) -> list[Run]:
        """Every run admitted (or refused) in `[since, until)`, oldest first.

        Args:
            since: only runs created at or after this moment.
            until: only runs created before this moment.
            budget: only runs charged to this budget.
            owner: only runs with this owner.
        """
        start = MIN_MOMENT if since is None else self._utc(since, "since")
        end = MAX_MOMENT if until is None else self._utc(until, "until")
        where = ["created_at >= ?", "created_at < ?"]
        extra: list[str] = []
        if budget is not None:
            where.append("budget = ?")
            extra.append(budget)
        if owner is not None:
            where.append("owner = ?")
            extra.append(owner)
        fragments = " AND ".join(where)  # fixed fragments; every value is a bound parameter
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM (SELECT * FROM runs WHERE {fragments}) AS r "  # noqa: S608
            "LEFT JOIN spend AS s ON s.run_id = r.run_id ORDER BY r.created_at, r.run_id"
        )
        return self._read(
            lambda db: _runs_from(db.rows(sql, (db.moment(start), db.moment(end), *extra)))
        )

    def charges(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Charge]:
        """Every spend recorded in `[since, until)` with its run, in the order recorded."""
        start = MIN_MOMENT if since is None else self._utc(since, "since")
        end = MAX_MOMENT if until is None else self._utc(until, "until")
        sql = (
            "SELECT s.recorded_at, s.run_id, s.part_id, s.amount_usd, r.budget, r.owner, "
            "r.status, r.meta FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
            "WHERE s.recorded_at >= ? AND s.recorded_at < ? "
            "ORDER BY s.recorded_at, s.run_id, s.part_id"
        )

        def work(db: Tx) -> list[Charge]:
            return [
                Charge(
                    recorded=_moment(row["recorded_at"]),
                    run_id=row["run_id"],
                    part_id=row["part_id"],
                    amount=Decimal(row["amount_usd"]),
                    budget=row["budget"],
                    owner=row["owner"],
                    status=row["status"],
                    meta=_meta_of(row["meta"]),
                )
                for row in db.rows(sql, (db.moment(start), db.moment(end)))
            ]

        return self._read(work)

    def spend_by(
        self, budget: str | None = "default", period: Period = "month"
    ) -> list[PeriodSpend]:
        """Actual spend per `period` window (UTC), oldest first; windows without spend omitted.

        Args:
            budget: only runs charged to this budget; None for every run.
            period: the window size (`none`: one window over all time).
        """
        period = self._period(period)
        query = (
            "SELECT s.run_id, s.amount_usd, s.recorded_at FROM spend AS s "
            "JOIN runs AS r ON r.run_id = s.run_id "
        )
        if budget is None:
            rows = self._read(lambda db: db.rows(query + "ORDER BY s.recorded_at"))
        else:
            rows = self._read(
                lambda db: db.rows(query + "WHERE r.budget = ? ORDER BY s.recorded_at", (budget,))
            )
        windows: dict[tuple[datetime | None, datetime | None], tuple[Decimal, set[str]]] = {}
        for row in rows:
            key = period_window(period, _moment(row["recorded_at"]))
            total, run_ids = windows.get(key, (ZERO, set()))
            run_ids.add(row["run_id"])
            windows[key] = (total + Decimal(row["amount_usd"]), run_ids)
        return [
            PeriodSpend(start, end, total, len(run_ids))
            for (start, end), (total, run_ids) in windows.items()
        ]


# --- helpers over rows ---------------------------------------------------------------------


def _budget(row: Row) -> Budget:
    return Budget(
        name=row["name"],
        limit=Decimal(row["limit_usd"]),
        period=row["period"],
        updated=_moment(row["updated_at"]),
    )


def _status(db: Tx, budget: Budget, at: datetime) -> BudgetStatus:
    start, end = period_window(budget.period, at)
    rows = db.rows(
        _USAGE_IN_WINDOW,
        (
            budget.name,
            db.moment(MIN_MOMENT if start is None else start),
            db.moment(MAX_MOMENT if end is None else end),
            budget.name,
            db.moment(MAX_MOMENT if end is None else end),
        ),
    )
    spent_by: dict[str, Decimal] = {}
    spent_runs: dict[str, set[str]] = {}
    held: dict[str, tuple[str, Decimal, Decimal]] = {}
    for row in rows:
        owner, run_id = row["owner"], row["run_id"]
        amount = ZERO if row["amount_usd"] is None else Decimal(row["amount_usd"])
        if row["kind"] == "spent":
            spent_by[owner] = spent_by.get(owner, ZERO) + amount
            spent_runs.setdefault(owner, set()).add(run_id)
        else:
            _, reserved, used = held.get(run_id, (owner, Decimal(row["estimate_usd"]), ZERO))
            held[run_id] = (owner, reserved, used + amount)
    reserved_by: dict[str, Decimal] = {}
    open_by: dict[str, set[str]] = {}
    for run_id, (owner, reserved, used) in held.items():
        reserved_by[owner] = reserved_by.get(owner, ZERO) + max(reserved - used, ZERO)
        open_by.setdefault(owner, set()).add(run_id)
    owners = [
        OwnerUsage(
            owner=owner,
            reserved=reserved_by.get(owner, ZERO),
            spent=spent_by.get(owner, ZERO),
            open_runs=len(open_by.get(owner, ())),
            runs=len(open_by.get(owner, set()) | spent_runs.get(owner, set())),
        )
        for owner in spent_by.keys() | reserved_by.keys()
    ]
    owners.sort(key=lambda u: (-u.counted, u.owner))
    reserved_total = sum(reserved_by.values(), ZERO)
    spent_total = sum(spent_by.values(), ZERO)
    return BudgetStatus(
        name=budget.name,
        limit=budget.limit,
        period=budget.period,
        period_start=start,
        period_end=end,
        reserved=reserved_total,
        spent=spent_total,
        remaining=budget.limit - reserved_total - spent_total,
        open_runs=len(held),
        owners=tuple(owners),
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


def _runs_from(rows: Iterable[Row]) -> list[Run]:
    """Fold `run columns + one spend amount` rows (grouped by run, in order) into runs."""
    first: dict[str, Row] = {}
    spent: dict[str, list[Decimal]] = {}
    for row in rows:
        run_id = row["run_id"]
        if run_id not in first:
            first[run_id] = row
            spent[run_id] = []
        if row["amount_usd"] is not None:
            spent[run_id].append(Decimal(row["amount_usd"]))
    return [_run(row, spent[run_id]) for run_id, row in first.items()]


def _run(row: Row, amounts: Sequence[Decimal]) -> Run:
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
        created=_moment(row["created_at"]),
        settled=None if closed is None else _moment(closed),
        reason=row["reason"],
        close_reason=row["close_reason"],
        meta=_meta_of(row["meta"]),
        remaining_at_admission=_opt_decimal(row["remaining_usd"]),
    )
