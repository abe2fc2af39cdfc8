"""The ledger's records as callers get them: budgets and their usage, admissions, runs, spend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from costguard.ledger.periods import Period

OPEN = "open"
REFUSED = "refused"
RELEASED = "released"


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
    rehearsal: bool = False
    """A run against the simulator: never counted as real money."""

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


@dataclass(frozen=True, slots=True)
class SpendEntry:
    """One recorded spend: a part of a run, what it cost and when it was recorded."""

    recorded: datetime
    run_id: str
    part_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Activity:
    """What a budget's runs did in a window `[since, until)`: `Ledger.activity`'s answer.

    Enough to replay the budget's spent and reserved moment by moment (`report.spend`): each
    run's estimate, admission and close, the spend it recorded before the window (which
    lowers what it still holds) and every spend recorded in the window.
    """

    budget: str | None
    """The budget asked for; None: only the run asked for."""
    since: datetime | None
    """Start of the window (inclusive, UTC); None: from the beginning."""
    until: datetime | None
    """End of the window (exclusive, UTC); None: to the end."""
    runs: tuple[Run, ...]
    """The budget's real runs that held a reservation or recorded spend in the window, and
    the run asked for (whatever its budget, rehearsal or not); oldest first. Each as
    `Ledger.run` gives it now (its status, `reserved` and `spent` over all its spend)."""
    spend: tuple[SpendEntry, ...]
    """The spend those runs recorded in the window, in the order recorded."""
    spent_before: dict[str, Decimal]
    """Per run id: the spend it recorded before the window (runs without any left out)."""
