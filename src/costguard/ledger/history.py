"""Runs and spend read back: one run, the latest runs, history, finance export, spend by period,
a budget's activity in a window."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from costguard.ledger.base import LedgerBase
from costguard.ledger.periods import Period, period_window
from costguard.ledger.records import OPEN, Activity, Charge, PeriodSpend, Run, SpendEntry
from costguard.ledger.sql import (
    _ACTIVITY,
    _RUN_COLUMNS,
    _SELECT_RUN,
    _SELECT_RUNS,
    _SELECT_RUNS_WITH_STATUS,
    MAX_MOMENT,
    MIN_MOMENT,
    Row,
    Tx,
    _meta_of,
    _moment,
    _opt_decimal,
)
from costguard.money import ZERO


class LedgerHistory(LedgerBase):
    """The queries over runs and their spend that `Ledger` answers (reports and exports)."""

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
        rehearsals: bool = True,
    ) -> list[Run]:
        """Every run admitted (or refused) in `[since, until)`, oldest first.

        Args:
            since: only runs created at or after this moment.
            until: only runs created before this moment.
            budget: only runs charged to this budget.
            owner: only runs with this owner.
            rehearsals: include rehearsals (`Run.rehearsal`); False: real runs only.
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
        if not rehearsals:
            where.append("rehearsal = 0")
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
        """Every real spend recorded in `[since, until)` with its run, in the order recorded.

        Rehearsals' spend is left out: this is what finance is billed for.
        """
        start = MIN_MOMENT if since is None else self._utc(since, "since")
        end = MAX_MOMENT if until is None else self._utc(until, "until")
        sql = (
            "SELECT s.recorded_at, s.run_id, s.part_id, s.amount_usd, r.budget, r.owner, "
            "r.status, r.meta FROM spend AS s JOIN runs AS r ON r.run_id = s.run_id "
            "WHERE s.recorded_at >= ? AND s.recorded_at < ? AND r.rehearsal = 0 "
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
        """Real spend per `period` window (UTC), oldest first; windows without spend omitted.

        Args:
            budget: only runs charged to this budget; None for every run.
            period: the window size (`none`: one window over all time).
        """
        period = self._period(period)
        query = (
            "SELECT s.run_id, s.amount_usd, s.recorded_at FROM spend AS s "
            "JOIN runs AS r ON r.run_id = s.run_id WHERE r.rehearsal = 0 "
        )
        if budget is None:
            rows = self._read(lambda db: db.rows(query + "ORDER BY s.recorded_at"))
        else:
            rows = self._read(
                lambda db: db.rows(query + "AND r.budget = ? ORDER BY s.recorded_at", (budget,))
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

    def activity(
        self,
        budget: str | None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        run_id: str | None = None,
    ) -> Activity:
        """What budget `budget` used in `[since, until)`, to replay it over time; one snapshot.

        The runs: the budget's real runs that held a reservation in the window (admitted
        before `until`, not refused, and open at some moment after `since`: a run admitted
        before the window and still open holds its reservation in it) or recorded spend in it,
        counted as `status` counts them (spend by when it was recorded; a closed run holds
        nothing after its close). Plus run `run_id`, whatever its budget and rehearsal or not
        (a report shows a rehearsal's would-be spend beside the budget's real spend). With
        `budget` None: only run `run_id` (a run capped by `max_usd` alone).

        Args:
            budget: the budget's name; None for no budget's runs.
            since: start of the window (inclusive); None: from the beginning.
            until: end of the window (exclusive); None: to the end.
            run_id: a run to add, whatever its budget.
        """
        start = MIN_MOMENT if since is None else self._utc(since, "since")
        end = MAX_MOMENT if until is None else self._utc(until, "until")
        if end < start:
            msg = f"until ({end.isoformat()}) is before since ({start.isoformat()})"
            raise self._fail(msg)
        rows = self._read(
            lambda db: db.rows(
                _ACTIVITY,
                (
                    run_id,
                    budget,
                    db.moment(end),
                    db.moment(start),
                    db.moment(start),
                    db.moment(end),
                ),
            )
        )
        spend: list[SpendEntry] = []
        before: dict[str, Decimal] = {}
        for row in rows:
            if row["amount_usd"] is None:
                continue
            moment = _moment(row["recorded_at"])
            amount = Decimal(row["amount_usd"])
            if moment < start:
                before[row["run_id"]] = before.get(row["run_id"], ZERO) + amount
            elif moment < end:
                spend.append(SpendEntry(moment, row["run_id"], row["part_id"], amount))
        spend.sort(key=lambda e: (e.recorded, e.run_id, e.part_id))
        return Activity(
            budget=budget,
            since=None if since is None else start,
            until=None if until is None else end,
            runs=tuple(_runs_from(rows)),
            spend=tuple(spend),
            spent_before=before,
        )


# --- helpers over rows ---------------------------------------------------------------------


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
        rehearsal=bool(row["rehearsal"]),
    )
