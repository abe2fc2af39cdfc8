"""The SQL the rules run, written once for both databases, and the transaction (`Tx`) it runs in.

Also how money, moments and meta are written and read back: exact decimal TEXT, ISO UTC TEXT
and JSON TEXT on SQLite; NUMERIC, TIMESTAMPTZ and JSONB (converted by the driver) on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Literal, Protocol

# `?` placeholders; the PostgreSQL back end turns them into `%s`.

_RUN_COLUMNS = (
    "r.run_id, r.budget, r.estimate_usd, r.max_usd, r.remaining_usd, r.status, r.owner, "
    "r.created_at, r.closed_at, r.reason, r.close_reason, r.meta, r.rehearsal, s.amount_usd"
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
    "WHERE r.budget = ? AND r.rehearsal = ? AND s.recorded_at >= ? AND s.recorded_at < ? "
    "UNION ALL "
    "SELECT 'open' AS kind, r.run_id, r.owner, r.estimate_usd, s.amount_usd "
    "FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "WHERE r.budget = ? AND r.rehearsal = ? AND r.status = 'open' AND r.created_at < ?"
)
"""Spend in the window and the open runs with all their spend, in one statement; real runs
(`rehearsal = 0`) or rehearsals (`1`), never both.

One statement reads one snapshot on both databases, so a run settled between two reads can
never be missed by both (PostgreSQL's READ COMMITTED takes a snapshot per statement).
"""
_ADMISSION_USAGE = (
    "SELECT 'closed' AS kind, NULL AS run_id, NULL AS estimate_usd, NULL AS created_at, "
    "d.amount_usd, d.day AS recorded_at FROM closed_spend_days AS d "
    "WHERE d.budget = ? AND d.day >= ? AND d.day < ? "
    "UNION ALL "
    "SELECT 'open' AS kind, r.run_id, r.estimate_usd, r.created_at, s.amount_usd, "
    "s.recorded_at FROM runs AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "WHERE r.budget = ? AND r.rehearsal = 0 AND r.status = 'open'"
)
"""What admission needs of a budget's real runs, in one statement (one snapshot): what closed
runs spent per day of the window (`closed_spend_days`) and the open runs with all their spend.
Its cost grows with the days of the window and the open runs, never with the closed runs.
Parameters: budget, window start, window end, budget.
"""
_ADD_CLOSED_SPEND = (
    "INSERT INTO closed_spend_days (budget, day, amount_usd) VALUES (?, ?, ?) "
    "ON CONFLICT (budget, day) DO UPDATE SET amount_usd = excluded.amount_usd"
)
"""Write a day's new total (read, added to in Python under the budget's lock: exact on both)."""
_ACTIVITY = (
    f"SELECT {_RUN_COLUMNS}, s.part_id, s.recorded_at FROM ("  # noqa: S608
    "SELECT * FROM runs WHERE run_id = ? OR (budget = ? AND rehearsal = 0 AND ("
    "(status <> 'refused' AND created_at < ? AND (closed_at IS NULL OR closed_at > ?)) "
    "OR EXISTS (SELECT 1 FROM spend AS w WHERE w.run_id = runs.run_id "
    "AND w.recorded_at >= ? AND w.recorded_at < ?)))"
    ") AS r LEFT JOIN spend AS s ON s.run_id = r.run_id "
    "ORDER BY r.created_at, r.run_id, s.recorded_at, s.part_id"
)
"""A budget's activity in a window (`LedgerHistory.activity`): the run asked for, and the
budget's real runs open at some moment of `[since, until)` (admitted before `until`, not
refused, not closed by `since`) or with spend recorded in it; each with all its spend, in one
statement (one snapshot). Parameters: run id, budget, until, since, since, until.
"""
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, budget, estimate_usd, max_usd, remaining_usd, status, owner, "
    "created_at, closed_at, reason, close_reason, meta, rehearsal) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET budget = excluded.budget, "
    "estimate_usd = excluded.estimate_usd, max_usd = excluded.max_usd, "
    "remaining_usd = excluded.remaining_usd, status = excluded.status, owner = excluded.owner, "
    "created_at = excluded.created_at, closed_at = excluded.closed_at, "
    "reason = excluded.reason, close_reason = excluded.close_reason, meta = excluded.meta, "
    "rehearsal = excluded.rehearsal"
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


def day_of(moment: datetime) -> datetime:
    """The UTC midnight starting `moment`'s day (`closed_spend_days` keys)."""
    at = moment.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


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
