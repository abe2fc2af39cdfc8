"""The schema: column types per database, the ordered migrations, refusing newer ledgers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from costguard.errors import LedgerError
from costguard.ledger.sql import day_of, dec_text, ts_text

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

    def rows(self, sql: str) -> list[Any]:
        """Run a query as written (no replacements); its rows, each readable by column name."""
        return list(self._execute(sql).fetchall())  # type: ignore[attr-defined]

    def insert(self, sql: str, params: Sequence[object]) -> None:
        """Run one statement with `?` placeholders (SQLite only; PostgreSQL migrates in SQL)."""
        self._execute(sql, params)  # type: ignore[call-arg]


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


@migration
def m004_rehearsals(db: Schema) -> None:
    """Rehearsals (`run --simulate`): admitted like real runs, never counted as real money.

    A rehearsal's reservation and spend count neither in its budget's reserved and spent nor in
    finance exports; rehearsals see only each other's open reservations (`Ledger.admit`).
    """
    db.execute("ALTER TABLE runs ADD COLUMN rehearsal INTEGER NOT NULL DEFAULT 0")


@migration
def m005_ledger_identity(db: Schema) -> None:
    """A random identity, written once: a run checks it is still in the ledger it was admitted in.

    A ledger file deleted and created again, or another database behind the same URL, has
    another identity; a run journal records the identity of the ledger that admitted it.
    """
    db.execute("CREATE TABLE ledger_identity (id {text} PRIMARY KEY)")
    identity = uuid.uuid4().hex  # 32 hex digits: safe to write into the statement
    db.execute(f"INSERT INTO ledger_identity (id) VALUES ('{identity}')")  # noqa: S608


@migration
def m006_usage_samples(db: Schema) -> None:
    """What each collected request reported using, for calibrated estimates.

    One row per request of a real run that reported its usage, written with its part's spend
    (`Ledger.record_spend`), so a resumed collection never writes one twice. `model` is the
    model's id on the card the request resolved to. Rehearsals never count (`Ledger.calibration`
    reads real runs only).
    """
    db.execute(
        """
        CREATE TABLE usage_samples (
            run_id {text} NOT NULL REFERENCES runs (run_id),
            request_key {text} NOT NULL,
            provider {text} NOT NULL,
            model {text} NOT NULL,
            size {text} NOT NULL,
            quality {text},
            status {text} NOT NULL,
            prompt_bytes BIGINT NOT NULL,
            input_images INTEGER NOT NULL,
            text_tokens_max BIGINT NOT NULL,
            input_text_tokens BIGINT NOT NULL,
            input_image_tokens BIGINT NOT NULL,
            output_text_tokens BIGINT NOT NULL,
            output_image_tokens BIGINT NOT NULL,
            recorded_at {moment} NOT NULL,
            PRIMARY KEY (run_id, request_key)
        )
        """
    )
    db.execute("CREATE INDEX usage_samples_recorded_at ON usage_samples (recorded_at)")


@migration
def m007_closed_spend_days(db: Schema) -> None:
    """What closed real runs spent, per budget and UTC day: admission reads these, not spend.

    Admission needs what a budget's window has spent: summing every spend row of the window
    grew with the runs in it (one run per gateway call). A run's spend moves here when it
    closes (`Ledger.settle`, `release`, `settle_call`), and spend recorded after it closed is
    added here too, in the same transaction and under the budget's lock; admission then reads
    the open runs (with their spend) and at most one row per day of the window. Days, not
    windows: a budget's period may change, and every window is a whole number of UTC days.
    Rehearsals' spend never counts, so it is not kept here. Existing ledgers are summed once.
    """
    db.execute(
        """
        CREATE TABLE closed_spend_days (
            budget {text} NOT NULL,
            day {moment} NOT NULL,
            amount_usd {money} NOT NULL,
            PRIMARY KEY (budget, day)
        )
        """
    )
    if db.dialect == "postgresql":
        db.execute(
            "INSERT INTO closed_spend_days (budget, day, amount_usd) "
            "SELECT r.budget, date_trunc('day', s.recorded_at AT TIME ZONE 'UTC') "
            "AT TIME ZONE 'UTC', SUM(s.amount_usd) "
            "FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
            "WHERE r.status <> 'open' AND r.rehearsal = 0 AND r.budget IS NOT NULL "
            "GROUP BY 1, 2"
        )
        return
    # SQLite keeps money as decimal TEXT: summed exactly here, not by SUM (a float).
    totals: dict[tuple[str, str], Decimal] = {}
    for row in db.rows(
        "SELECT r.budget AS budget, s.recorded_at AS recorded_at, s.amount_usd AS amount_usd "
        "FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
        "WHERE r.status <> 'open' AND r.rehearsal = 0 AND r.budget IS NOT NULL"
    ):
        key = (row["budget"], ts_text(day_of(datetime.fromisoformat(row["recorded_at"]))))
        totals[key] = totals.get(key, Decimal(0)) + Decimal(row["amount_usd"])
    for (budget, day), amount in sorted(totals.items()):
        db.insert(
            "INSERT INTO closed_spend_days (budget, day, amount_usd) VALUES (?, ?, ?)",
            (budget, day, dec_text(amount)),
        )


def refuse_unknown(unknown: set[str], where: str) -> None:
    """Refuse a ledger that records migrations this costguard does not know."""
    if unknown:
        msg = (
            f"ledger {where}: written by a newer costguard (unknown migrations: "
            f"{', '.join(sorted(unknown))}); upgrade costguard or use another ledger"
        )
        raise LedgerError(msg)
