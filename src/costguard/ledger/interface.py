"""The ledger's interface (`Ledger`) and its rules for budgets, admission, spend and closing.

`Ledger` holds the rules (what a budget has left, when a run is admitted, idempotency); the
SQL is written once in the subset SQLite and PostgreSQL both accept (`ledger.sql`). A back
end supplies only transactions (`Tx`): how to begin, lock, bind money and moments, and retry.
See the package docstring for the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from costguard.ledger.history import LedgerHistory, _runs_from
from costguard.ledger.periods import Period
from costguard.ledger.records import OPEN, REFUSED, RELEASED, Admission, Budget, BudgetStatus, Run
from costguard.ledger.samples import LedgerSamples, insert_samples
from costguard.ledger.sql import (
    _SELECT_BUDGET,
    _SELECT_BUDGETS,
    _SELECT_RUN,
    _UPSERT_BUDGET,
    _UPSERT_RUN,
    Tx,
    _moment,
    _opt_decimal,
    ts_text,
)
from costguard.ledger.usage import (
    _add_closed_spend,
    _admission_status,
    _budget,
    _decide,
    _for_rehearsal,
    _status,
)
from costguard.money import ZERO, usd_together
from costguard.pricing.calibration import Sample

_NOT_SETTLE_STATUSES = (OPEN, REFUSED)
_ANY_SPEND = "SELECT 1 AS spent FROM spend WHERE run_id = ? LIMIT 1"


class Ledger(LedgerHistory, LedgerSamples):
    """Budgets, runs and spend in one database. Get one with `open_ledger`; close it after.

    Every moment passed in (`at`) must be timezone-aware; it is stored in UTC. One `Ledger`
    may be shared by threads (the runner records sync spend from a pool): its calls are
    serialised on one connection. Processes each open their own.

    Back ends: `SqliteLedger` (a file on this machine) and `PostgresLedger` (a server shared by
    many machines). They implement `_write`, `_read`, `migrate` and `close`; the rules are here.
    """

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

    def require_budget(self, name: str) -> Budget:
        """The budget `name`.

        Raises:
            LedgerError: No budget has that name; the message lists those set and how to set
                it, so a mistyped name never runs with no limit.
        """
        found = {budget.name: budget for budget in self.budgets()}
        if name not in found:
            known = ", ".join(repr(n) for n in found) if found else "none"
            msg = (
                f"no budget named {name!r} (budgets set: {known}); set it with "
                f"`costguard budget set --name {name} --usd AMOUNT` or name another"
            )
            raise self._fail(msg)
        return found[name]

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
        require_budget: bool = False,
        rehearsal: bool = False,
    ) -> Admission:
        """Reserve `amount` (the run's maximum cost) for `run_id` if it fits, in one step.

        The run fits when `amount <= max_usd` (if given) and `amount <=` what budget `budget`
        has left in its window containing `at` (if a budget of that name is set; with none,
        only `max_usd` applies). Either way the run is recorded: `open` holding `amount`, or
        `refused` holding nothing.

        Idempotent per run id: a run already open gets its earlier admission back
        (`existing=True`) and nothing more is reserved. A refused run may be admitted again
        (the budget may have grown), and so may one released with nothing spent (the provider
        accepted none of it); a closed one may not.

        With `require_budget`, a budget that is not set is an error rather than no cap: a name
        someone asked for explicitly (and may have mistyped) never runs unguarded.

        A `rehearsal` (a run against the simulator) gets the same decision a real run would,
        against what the budget really has left less what open rehearsals hold, but its
        reservation and spend never count as real: not in the budget's reserved or spent, not
        in finance exports (`charges`), not in `spend_by`.

        Raises:
            LedgerError: the run is already settled or released, `require_budget` and no
                budget `budget` is set (the message names those that are), or an argument is
                invalid.
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
            self._check_identity(db)
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
            again = row is not None and (
                row["status"] == REFUSED
                or (row["status"] == RELEASED and db.one(_ANY_SPEND, (run_id,)) is None)
            )
            if row is not None and not again:
                msg = (
                    f"run {run_id!r} is already closed ({row['status']}); "
                    "admit it again under a new run id"
                )
                raise self._fail(msg)
            found = None
            if budget is not None:
                db.lock("budget", budget)
                budget_row = db.one(_SELECT_BUDGET, (budget,))
                if budget_row is None and require_budget:
                    names = [row["name"] for row in db.rows(_SELECT_BUDGETS)]
                    known = ", ".join(repr(n) for n in names) if names else "none"
                    msg = (
                        f"no budget named {budget!r} (budgets set: {known}); set it with "
                        f"`costguard budget set --name {budget} --usd AMOUNT` or name another"
                    )
                    raise self._fail(msg)
                if budget_row is not None:
                    found = _admission_status(db, _budget(budget_row), when)
                    if rehearsal:
                        held = _status(db, _budget(budget_row), when, rehearsals=True)
                        found = _for_rehearsal(found, held)
            admitted, shortfall, reason = _decide(needed, cap, budget, found)
            if rehearsal:
                reason += "; a rehearsal: nothing real is reserved or spent"
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
                    1 if rehearsal else 0,
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

    def record_spend(
        self,
        run_id: str,
        part_id: str,
        amount: Decimal,
        *,
        at: datetime,
        samples: Sequence[Sample] = (),
    ) -> bool:
        """Record the actual cost of one finished part of a run; True if it was new.

        Idempotent per `(run_id, part_id)`: recording the same part again with the same amount
        changes nothing and returns False. Spend may be recorded while the run is open and
        after it closed (a late part still cost money); it counts in the window containing
        `at`. The part's usage `samples` (for calibration) are written in the same
        transaction, each request once.

        Raises:
            LedgerError: the run is unknown or was refused, or the part was already recorded
                with a different amount.
        """
        run_id = self._text(run_id, "run id")
        part_id = self._text(part_id, "part id")
        cost = self._money(amount, "amount")
        when = self._utc(at)

        def work(db: Tx) -> bool:
            self._check_identity(db)
            db.lock("run", run_id)
            return self._record_part(db, run_id, part_id, cost, when, samples)

        return self._write(work)

    def _record_part(
        self,
        db: Tx,
        run_id: str,
        part_id: str,
        cost: Decimal,
        when: datetime,
        samples: Sequence[Sample] = (),
    ) -> bool:
        """`record_spend` inside a transaction holding the run's lock."""
        row = db.one("SELECT status, budget, rehearsal FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            raise self._fail(f"no run {run_id!r}; admit it before recording its spend")
        if row["status"] == REFUSED:
            raise self._fail(f"run {run_id!r} was refused; it cannot have spent anything")
        before = db.one(
            "SELECT amount_usd, recorded_at FROM spend WHERE run_id = ? AND part_id = ?",
            (run_id, part_id),
        )
        insert_samples(db, run_id, samples, when)
        if before is not None:
            if Decimal(before["amount_usd"]) != cost:
                recorded, now = usd_together(Decimal(before["amount_usd"]), cost)
                msg = (
                    f"part {part_id!r} of run {run_id!r} is already recorded as "
                    f"{recorded}, not {now}"
                )
                raise self._fail(msg)
            return db.retry and _moment(before["recorded_at"]) == when
        db.run(
            "INSERT INTO spend (run_id, part_id, amount_usd, recorded_at) VALUES (?, ?, ?, ?)",
            (run_id, part_id, db.money(cost), db.moment(when)),
        )
        if row["status"] != OPEN and not row["rehearsal"] and row["budget"] is not None:
            # a late part of a closed run: its budget's closed spend grows now
            db.lock("budget", row["budget"])
            _add_closed_spend(db, row["budget"], [(when, cost)])
        return True

    def settle_call(
        self,
        run_id: str,
        part_id: str,
        amount: Decimal,
        *,
        status: str,
        at: datetime,
        meta: Mapping[str, Any] | None = None,
    ) -> Run:
        """Record one part's spend, merge `meta` and close the run, in one transaction.

        What `annotate`, `record_spend` and `settle` do one after the other, for a run that is
        one call (the gateway's sync calls): one commit instead of three. Idempotent like each
        of them: again with the same amount changes nothing (the first status stays) and
        returns the run; a run already closed gets the part as late spend.

        Raises:
            LedgerError: the run is unknown or was refused, the part was already recorded with
                a different amount, `status` is `open` or `refused`, or `meta` is not JSON.
        """
        run_id = self._text(run_id, "run id")
        part_id = self._text(part_id, "part id")
        cost = self._money(amount, "amount")
        when = self._utc(at)
        status = self._text(status, "status")
        if status in _NOT_SETTLE_STATUSES:
            msg = f"cannot settle with status {status!r}; use e.g. completed, failed, cancelled"
            raise self._fail(msg)
        extra = dict(meta or {})
        self._meta(extra)  # validated before anything is written

        def work(db: Tx) -> list[Run]:
            self._check_identity(db)
            db.lock("run", run_id)
            self._record_part(db, run_id, part_id, cost, when)
            if extra:
                found = _runs_from(db.rows(_SELECT_RUN, (run_id,)))
                merged = {**found[0].meta, **extra}
                db.run("UPDATE runs SET meta = ? WHERE run_id = ?", (self._meta(merged), run_id))
            _close_open(db, run_id, status=status, when=when, reason="")
            return _runs_from(db.rows(_SELECT_RUN, (run_id,)))

        return self._write(work)[0]

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

    def annotate(self, run_id: str, meta: Mapping[str, Any]) -> Run:
        """Merge `meta` into the run's meta (keys given replace the same keys); return the run.

        For what is learned after admission (the gateway's provider job id, how a batch was
        reconciled). Money and status are not touched.

        Raises:
            LedgerError: the run is unknown, or `meta` is not JSON.
        """
        run_id = self._text(run_id, "run id")
        self._meta(meta)  # validated before anything is written

        def work(db: Tx) -> list[Run]:
            self._check_identity(db)
            db.lock("run", run_id)
            found = _runs_from(db.rows(_SELECT_RUN, (run_id,)))
            if not found:
                return found
            merged = {**found[0].meta, **dict(meta)}
            db.run("UPDATE runs SET meta = ? WHERE run_id = ?", (self._meta(merged), run_id))
            return _runs_from(db.rows(_SELECT_RUN, (run_id,)))

        found = self._write(work)
        if not found:
            raise self._fail(f"no run {run_id!r}")
        return found[0]

    def _close(self, run_id: str, *, status: str, at: datetime, reason: str) -> Run:
        run_id = self._text(run_id, "run id")
        when = self._utc(at)

        def work(db: Tx) -> list[Run]:
            self._check_identity(db)
            db.lock("run", run_id)
            _close_open(db, run_id, status=status, when=when, reason=reason)
            return _runs_from(db.rows(_SELECT_RUN, (run_id,)))

        found = self._write(work)
        if not found:
            raise self._fail(f"no run {run_id!r}")
        return found[0]


def _close_open(db: Tx, run_id: str, *, status: str, when: datetime, reason: str) -> bool:
    """Close the run if it is open (the caller holds its lock); True if it was.

    A real run's spend moves into its budget's closed spend per day (`closed_spend_days`) in
    the same transaction, under the budget's lock, so admission never sees it twice or not
    at all.
    """
    row = db.one(
        "SELECT budget, rehearsal FROM runs WHERE run_id = ? AND status = 'open'", (run_id,)
    )
    if row is None:
        return False
    if row["budget"] is not None and not row["rehearsal"]:
        db.lock("budget", row["budget"])
    db.run(
        "UPDATE runs SET status = ?, closed_at = ?, close_reason = ? "
        "WHERE run_id = ? AND status = 'open'",
        (status, db.moment(when), reason, run_id),
    )
    if row["budget"] is not None and not row["rehearsal"]:
        spend = [
            (_moment(s["recorded_at"]), Decimal(s["amount_usd"]))
            for s in db.rows(
                "SELECT amount_usd, recorded_at FROM spend WHERE run_id = ?", (run_id,)
            )
        ]
        _add_closed_spend(db, row["budget"], spend)
    return True
