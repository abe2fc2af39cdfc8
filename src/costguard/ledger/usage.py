"""What a budget has used and has left in a window, and whether a run fits (admission's sums)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from costguard.ledger.periods import Period, period_window
from costguard.ledger.records import Budget, BudgetStatus, OwnerUsage
from costguard.ledger.sql import _USAGE_IN_WINDOW, MAX_MOMENT, MIN_MOMENT, Row, Tx, _moment
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
