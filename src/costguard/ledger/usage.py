"""What a budget has used and has left in a window, and whether a run fits (admission's sums)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from costguard.ledger.periods import Period, period_window
from costguard.ledger.records import Budget, BudgetStatus, OwnerUsage
from costguard.ledger.sql import _USAGE_IN_WINDOW, MAX_MOMENT, MIN_MOMENT, Row, Tx, _moment
from costguard.money import ZERO, usd_exact, usd_together
from costguard.pricing.budget import check


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


def _for_rehearsal(real: BudgetStatus, rehearsing: BudgetStatus) -> BudgetStatus:
    """The budget as a rehearsal sees it: what it really has left, less what open rehearsals
    hold (so concurrent rehearsals take turns as real runs would)."""
    return replace(real, remaining=real.remaining - rehearsing.reserved)


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
            need, limit, short = usd_together(needed, cap, decision.shortfall, given=[cap])
            refusals.append(f"needs {need}, more than max_usd {limit} by {short}")
    window = ""
    if found is not None:
        window = _window_phrase(found.period, found.period_start, found.period_end)
        decision = check(needed, found.remaining)
        if not decision.fits:
            shortfall = max(shortfall, decision.shortfall)
            need, limit, left, short = usd_together(
                needed, found.limit, found.remaining, decision.shortfall, given=[found.limit]
            )
            refusals.append(
                f"needs {need}, but budget {found.name!r} ({limit}) has "
                f"{left} left {window}; short by {short}"
            )
    if refusals:
        return False, shortfall, "; ".join(refusals)
    if found is not None:
        need, left = usd_together(needed, found.remaining)
        reason = f"fits: needs {need} of the {left} budget {found.name!r} has left {window}"
    elif budget is not None:
        reason = f"admitted: no budget named {budget!r} is set, so only max_usd caps this run"
    else:
        reason = "admitted: charged to no budget"
    if cap is not None:
        reason += f" (max_usd {usd_exact(cap)})"
    return True, ZERO, reason


def _window_phrase(period: Period, start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "in total"
    last: date = (end - timedelta(days=1)).date()
    if period == "day":
        return f"today ({start.date()} UTC)"
    this = {"week": "this week", "month": "this month"}.get(period, "this period")
    return f"{this} ({start.date()} to {last} UTC)"
