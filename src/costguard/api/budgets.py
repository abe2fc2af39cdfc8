"""`costguard.Ledger`: check and charge a team budget from code, with the same atomic admission
as `costguard run` and the gateway (SQLite on this machine, PostgreSQL for a team).

A batch lives up to 24 hours, longer than any `with` block or process, so a reservation is a
durable ledger run: it has an id (`Reservation.id`), and `Ledger.settle(id, amount)` or
`Ledger.release(id)` close it later from any process that opens the same ledger.

    with costguard.Ledger.open() as ledger:
        hold = ledger.budget("team").reserve(estimate.max, run="covers-2026-11-26")
        ...                                  # the pipeline's own batches.create
        ledger.settle(hold.id, actual_usd)   # or later, from another process
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from costguard.api.values import as_usd
from costguard.errors import BudgetExceededError, LedgerError, UsageError
from costguard.money import usd

if TYPE_CHECKING:
    from costguard.ledger import Ledger as Store
    from costguard.ledger.records import BudgetStatus, Run

SETTLED_PART = "settled"
"""The part id a reservation's spend is recorded under (one amount per reservation)."""
OPEN = "open"
API_MARK = "reservation"
"""The meta key that marks a ledger run as a reservation made here (settled by its holder)."""


class ReservationWarning(UserWarning):
    """A reservation left its `with` block still open: it keeps holding its amount until it is
    settled or released (which may be what was meant: a batch outlives the block)."""


class Ledger:
    """A costguard ledger: budgets, reservations and spend. Open one with `Ledger.open()`.

    Usable as a context manager (closed at the end). Safe to share between threads; each
    process opens its own.
    """

    def __init__(self, store: Store) -> None:
        """Use `Ledger.open()`."""
        self._store = store

    @classmethod
    def open(cls, location: str | Path | None = None) -> Ledger:
        """Open (and migrate) a ledger.

        Args:
            location: A SQLite file, or a `postgresql://` URL of a shared ledger. Default:
                `COSTGUARD_LEDGER_URL`, else `COSTGUARD_LEDGER`, else
                `<COSTGUARD_HOME>/ledger.sqlite3`, as the CLI.

        Raises:
            LedgerError: The location is no ledger (a URL that is not PostgreSQL's, a relative
                path to no file), or it cannot be opened. Never a new empty ledger by mistake.
        """
        from costguard.api.setup import open_configured_ledger

        return cls(open_configured_ledger(location))

    @property
    def location(self) -> str:
        """Where the ledger is (a URL is shown without its password)."""
        return str(self._store.location)

    def close(self) -> None:
        """Close the ledger's connection."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_budget(self, name: str, usd: Decimal | int | str, *, period: str = "month") -> Budget:
        """Create or change budget `name`: `usd` per `period` (`day`, `week`, `month`, `none`;
        UTC windows). What `costguard budget set` does."""
        self._store.set_budget(name, usd=as_usd(usd, "usd"), period=period)  # type: ignore[arg-type]
        return Budget(self, name)

    def budget(self, name: str) -> Budget:
        """The budget `name`, to read or reserve against.

        Raises:
            LedgerError: No budget has that name (the message lists those set): a mistyped
                name is never a budget with no limit.
        """
        self._store.require_budget(name)
        return Budget(self, name)

    def reservation(self, reservation_id: str) -> Reservation:
        """The reservation `reservation_id` as the ledger has it now (from any process).

        Raises:
            LedgerError: No reservation (ledger run) has that id.
        """
        return Reservation._from_run(self, self._run(reservation_id))

    def settle(
        self, reservation_id: str, amount: Decimal | int | str, *, status: str = "completed"
    ) -> Reservation:
        """Record what the reserved work really cost and close the reservation: what it held
        beyond `amount` is free again. Idempotent: settling again with the same amount changes
        nothing.

        Args:
            reservation_id: `Reservation.id`.
            amount: The actual cost in USD (it may pass the reservation: money spent is
                recorded as spent).
            status: How the work ended: `completed`, `failed`, `expired`, `cancelled`, ...

        Raises:
            LedgerError: No such reservation, it was refused, it was settled before with
                another amount, or `status` is `open` or `refused`.
        """
        spent = as_usd(amount, "amount")
        self._run(reservation_id)
        run = self._store.settle_call(reservation_id, SETTLED_PART, spent, status=status, at=_now())
        return Reservation._from_run(self, run)

    def release(self, reservation_id: str, *, reason: str = "released") -> Reservation:
        """Close a reservation whose work was never sent (or accepted): it frees what it held,
        and any spend already recorded still counts. Idempotent.

        Raises:
            LedgerError: No such reservation.
        """
        self._run(reservation_id)
        run = self._store.release(reservation_id, at=_now(), reason=reason)
        return Reservation._from_run(self, run)

    def _run(self, reservation_id: str) -> Run:
        """The ledger run of a reservation made with `Budget.reserve`.

        Raises:
            LedgerError: There is none; or the id is a run that `costguard run` or the gateway
                admitted, which settle themselves (settling it here would count its spend twice).
        """
        run = self._store.run(reservation_id)
        if run is None:
            raise LedgerError(f"ledger {self.location}: no reservation {reservation_id!r}")
        if not run.meta.get(API_MARK):
            by = "the gateway" if run.meta.get("gateway") else "`costguard run`"
            msg = (
                f"ledger {self.location}: {reservation_id!r} is a run admitted by {by}, not a "
                "reservation: it settles itself (`costguard status` / `collect` show it)"
            )
            raise LedgerError(msg)
        return run

    def _status(self, name: str) -> BudgetStatus:
        return self._store.status(name, at=_now())

    def _admit(self, budget: str, amount: Decimal, **kwargs: Any) -> Any:
        return self._store.admit(
            kwargs.pop("run"), amount, budget=budget, at=_now(), require_budget=True, **kwargs
        )


class Budget:
    """A named budget in a ledger (`Ledger.budget(name)`): what it has left, and reservations
    against it."""

    def __init__(self, ledger: Ledger, name: str) -> None:
        self.ledger = ledger
        self.name = name

    def __repr__(self) -> str:
        return f"Budget({self.name!r}, ledger={self.ledger.location!r})"

    def status(self) -> BudgetStatus:
        """Its limit, window, reserved, spent and remaining now, and the same by owner: what
        `costguard budget show` shows (`BudgetStatus`)."""
        return self.ledger._status(self.name)

    @property
    def remaining(self) -> Decimal:
        """What it has left now in its window (limit - reserved - spent)."""
        return self.status().remaining

    def reserve(
        self,
        amount: Decimal | int | str,
        *,
        run: str | None = None,
        owner: str | None = None,
        max_usd: Decimal | int | str | None = None,
        rehearsal: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Reservation:
        """Reserve `amount` (the work's maximum cost) if it fits what the budget has left, in
        one atomic step: two pipelines can never both take the last dollars.

        Args:
            amount: The maximum the work can cost (`Estimate.max`).
            run: The reservation's id (default: a new `res-...` id). Reserving again under an
                id that is open returns that reservation and reserves nothing more, so a
                pipeline that restarts with the same id never holds twice.
            owner: Who the spend is shown under (default: `COSTGUARD_OWNER`, else the user).
            max_usd: A cap of its own besides the budget.
            rehearsal: Work against a simulator: decided as real work would be, but never
                counted in the budget's spend, reserved or finance exports.
            meta: JSON facts kept with it (a job id, a queue name).

        Returns:
            The open `Reservation`; as a context manager it releases on an exception.

        Raises:
            BudgetExceededError: It does not fit; nothing is held. The message names the
                budget, what is left and the shortfall.
            LedgerError: The budget is no longer set, or `run` names a reservation already
                closed.
        """
        needed = as_usd(amount, "amount")
        cap = None if max_usd is None else as_usd(max_usd, "max_usd")
        run_id = run if run is not None else f"res-{uuid.uuid4().hex[:16]}"
        if not run_id.strip():
            raise UsageError("run: a reservation id cannot be empty")
        from costguard.api.setup import owner_of

        who = owner_of(owner)
        admission = self.ledger._admit(
            self.name,
            needed,
            run=run_id,
            max_usd=cap,
            owner=who,
            rehearsal=rehearsal,
            meta={**(meta or {}), API_MARK: True},
        )
        if not admission.admitted:
            msg = f"budget {self.name!r} refused reservation {run_id}: {admission.reason}"
            raise BudgetExceededError(
                msg,
                details={
                    "budget": self.name,
                    "run_id": run_id,
                    "needed_usd": str(needed),
                    "shortfall_usd": str(admission.shortfall),
                },
            )
        return Reservation._from_run(self.ledger, self.ledger._run(run_id))


class Reservation:
    """An amount held against a budget until it is settled or released: a durable ledger run.

    As a context manager: an exception in the block releases it (nothing was spent, or the
    pipeline says otherwise with `keep()` first); leaving the block without settling keeps it
    open, warning with `ReservationWarning` unless `keep()` said that is meant.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        id: str,
        budget: str | None,
        amount: Decimal,
        spent: Decimal,
        owner: str,
        status: str,
        rehearsal: bool,
    ) -> None:
        self.ledger = ledger
        self.id = id
        """The ledger run id: give it to `Ledger.settle` / `release` from any process."""
        self.budget = budget
        self.amount = amount
        """What it holds (its maximum)."""
        self.spent = spent
        """What has been recorded against it."""
        self.owner = owner
        self.status = status
        """`open` until settled (`completed`, `failed`, ...) or `released`."""
        self.rehearsal = rehearsal
        self._kept = False

    @classmethod
    def _from_run(cls, ledger: Ledger, run: Run) -> Reservation:
        return cls(
            ledger,
            id=run.run_id,
            budget=run.budget,
            amount=run.estimate,
            spent=run.spent,
            owner=run.owner,
            status=run.status,
            rehearsal=run.rehearsal,
        )

    def __repr__(self) -> str:
        return (
            f"Reservation({self.id!r}, budget={self.budget!r}, amount={self.amount}, "
            f"spent={self.spent}, status={self.status!r})"
        )

    @property
    def open(self) -> bool:
        """Still holding its amount."""
        return self.status == OPEN

    def settle(self, amount: Decimal | int | str, *, status: str = "completed") -> Reservation:
        """`Ledger.settle(self.id, amount)`; this object is updated too."""
        self._update(self.ledger.settle(self.id, amount, status=status))
        return self

    def release(self, *, reason: str = "released") -> Reservation:
        """`Ledger.release(self.id)`; this object is updated too."""
        self._update(self.ledger.release(self.id, reason=reason))
        return self

    def keep(self, **meta: Any) -> Reservation:
        """Say the reservation must outlive the block: the work was sent (a batch job was
        created) and is settled later, maybe by another process. An exception in the block
        then no longer releases it, and leaving the block does not warn. `meta` (a job id)
        is kept with it in the ledger."""
        if meta:
            self.ledger._store.annotate(self.id, meta)
        self._kept = True
        return self

    def _update(self, other: Reservation) -> None:
        self.status, self.spent, self.amount = other.status, other.spent, other.amount

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.open or self._kept:
            return
        if kind is not None:
            self.release(reason=f"released: {kind.__name__} in the pipeline before it was kept")
            return
        warnings.warn(
            f"reservation {self.id} on budget {self.budget!r} is still open, holding "
            f"{usd(self.amount)}: settle it with Ledger.settle({self.id!r}, AMOUNT) when the "
            "work ends, or release it; call keep() in the block when that is meant",
            ReservationWarning,
            stacklevel=2,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
