"""What a budget has used and has left in a window, and whether a run fits (admission's sums)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from costguard.ledger.periods import Period, period_window
from costguard.ledger.records import Budget, BudgetStatus, OwnerUsage
from costguard.ledger.sql import (
    _ADD_CLOSED_SPEND,
    _ADMISSION_USAGE,
    _USAGE_IN_WINDOW,
    MAX_MOMENT,
    MIN_MOMENT,
    Row,
    Tx,
    _moment,
    day_of,
)
from costguard.money import ZERO, usd_together
from costguard.pricing.budget import Decision, check


def _budget(row: Row) -> Budget:
    return Budget(
        name=row["name"],
        limit=Decimal(row["limit_usd"]),
        period=row["period"],
        updated=_moment(row["updated_at"]),
    )


def _status(db: Tx, budget: Budget, at: datetime, *, rehearsals: bool = False) -> BudgetStatus:
    """What the budget's real runs used in the window containing `at` (with `rehearsals`:
    what its rehearsals used, as if they were a budget of their own)."""
    start, end = period_window(budget.period, at)
    kind = 1 if rehearsals else 0
    rows = db.rows(
        _USAGE_IN_WINDOW,
        (
            budget.name,
            kind,
            db.moment(MIN_MOMENT if start is None else start),
            db.moment(MAX_MOMENT if end is None else end),
            budget.name,
            kind,
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
    return _budget_status(budget, (start, end), reserved_total, spent_total, len(held), owners)


def _budget_status(
    budget: Budget,
    window: tuple[datetime | None, datetime | None],
    reserved: Decimal,
    spent: Decimal,
    open_runs: int,
    owners: list[OwnerUsage] | tuple[OwnerUsage, ...] = (),
) -> BudgetStatus:
    """A budget's totals in a window; what remains is the limit less both."""
    return BudgetStatus(
        name=budget.name,
        limit=budget.limit,
        period=budget.period,
        period_start=window[0],
        period_end=window[1],
        reserved=reserved,
        spent=spent,
        remaining=budget.limit - reserved - spent,
        open_runs=open_runs,
        owners=tuple(owners),
    )


def _admission_status(db: Tx, budget: Budget, at: datetime) -> BudgetStatus:
    """The budget's real totals in the window containing `at`, as `_status` gives them, read
    from what closed runs spent per day (`closed_spend_days`) and the open runs: its cost does
    not grow with the closed runs in the window. No breakdown by owner (admission needs none).
    """
    start, end = period_window(budget.period, at)
    low = MIN_MOMENT if start is None else start
    high = MAX_MOMENT if end is None else end
    rows = db.rows(_ADMISSION_USAGE, (budget.name, db.moment(low), db.moment(high), budget.name))
    spent = ZERO
    held: dict[str, tuple[Decimal, Decimal]] = {}
    for row in rows:
        amount = ZERO if row["amount_usd"] is None else Decimal(row["amount_usd"])
        if row["kind"] == "closed":
            spent += amount
            continue
        if row["recorded_at"] is not None and low <= _moment(row["recorded_at"]) < high:
            spent += amount
        if _moment(row["created_at"]) < high:
            _, used = held.get(row["run_id"], (ZERO, ZERO))
            held[row["run_id"]] = (Decimal(row["estimate_usd"]), used + amount)
    reserved = sum((max(estimate - used, ZERO) for estimate, used in held.values()), ZERO)
    return _budget_status(budget, (start, end), reserved, spent, len(held))


def _add_closed_spend(db: Tx, budget: str, spend: list[tuple[datetime, Decimal]]) -> None:
    """Add spend of a closed real run (moment, amount) to its budget's days; the caller holds
    the budget's lock (so no two writers add to one day at once)."""
    by_day: dict[datetime, Decimal] = {}
    for moment, amount in spend:
        day = day_of(moment)
        by_day[day] = by_day.get(day, ZERO) + amount
    for day, amount in sorted(by_day.items()):
        row = db.one(
            "SELECT amount_usd FROM closed_spend_days WHERE budget = ? AND day = ?",
            (budget, db.moment(day)),
        )
        total = amount if row is None else Decimal(row["amount_usd"]) + amount
        db.run(_ADD_CLOSED_SPEND, (budget, db.moment(day), db.money(total)))


def _for_rehearsal(real: BudgetStatus, rehearsing: BudgetStatus) -> BudgetStatus:
    """The budget as a rehearsal sees it: what it really has left, less what open rehearsals
    hold (so concurrent rehearsals take turns as real runs would)."""
    return replace(real, remaining=real.remaining - rehearsing.reserved)


def _decide(
    needed: Decimal, cap: Decimal | None, budget: str | None, found: BudgetStatus | None
) -> tuple[bool, Decimal, str]:
    """Check `needed` against `max_usd` and the budget; (admitted, shortfall, reason)."""
    over_cap = check(needed, cap) if cap is not None else None
    over_budget = check(needed, found.remaining) if found is not None else None
    shown = _shown(needed, cap, found, over_cap, over_budget)
    refusals: list[str] = []
    shortfall = ZERO
    if cap is not None and over_cap is not None and not over_cap.fits:
        shortfall = max(shortfall, over_cap.shortfall)
        refusals.append(
            f"needs {shown[needed]}, more than max_usd {shown[cap]} by {shown[over_cap.shortfall]}"
        )
    window = ""
    if found is not None and over_budget is not None:
        window = _window_phrase(found.period, found.period_start, found.period_end)
        if not over_budget.fits:
            shortfall = max(shortfall, over_budget.shortfall)
            refusals.append(
                f"needs {shown[needed]}, but budget {found.name!r} ({shown[found.limit]}) has "
                f"{shown[found.remaining]} left {window}; short by {shown[over_budget.shortfall]}"
            )
    if refusals:
        return False, shortfall, "; ".join(refusals)
    if found is not None:
        reason = (
            f"fits: needs {shown[needed]} of the {shown[found.remaining]} "
            f"budget {found.name!r} has left {window}"
        )
    elif budget is not None:
        reason = f"admitted: no budget named {budget!r} is set, so only max_usd caps this run"
    else:
        reason = "admitted: charged to no budget"
    if cap is not None:
        reason += f" (max_usd {shown[cap]})"
    return True, ZERO, reason


def _shown(
    needed: Decimal,
    cap: Decimal | None,
    found: BudgetStatus | None,
    *decisions: Decision | None,
) -> dict[Decimal, str]:
    """Every amount the reason may name, formatted together (none looks like another it is
    not); the limits someone set (max_usd, the budget's) shown as set."""
    given = [x for x in (cap, found.limit if found else None) if x is not None]
    amounts = [needed, *given]
    amounts += [found.remaining] if found is not None else []
    amounts += [d.shortfall for d in decisions if d is not None and not d.fits]
    return dict(zip(amounts, usd_together(*amounts, given=given), strict=True))


def _window_phrase(period: Period, start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "in total"
    last: date = (end - timedelta(days=1)).date()
    if period == "day":
        return f"today ({start.date()} UTC)"
    this = {"week": "this week", "month": "this month"}.get(period, "this period")
    return f"{this} ({start.date()} to {last} UTC)"
