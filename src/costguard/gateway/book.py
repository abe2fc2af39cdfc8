"""The gateway's ledger bookkeeping: one ledger run per paid call or batch job.

Each paid call is admitted as its own run `guard-<uuid>` (the same atomic `Ledger.admit` as
`costguard run`), holding the call's maximum. Its meta says what it is (`gateway`, `route`,
`provider`, `models`, `owner_source`, `kind`) and, for a batch, the provider's job id once the
provider accepted it: a restarted gateway finds its open jobs from the ledger alone.

`--max-usd` caps what this gateway process admits in all (reservations held plus spend); the
budget caps everything charged to it, by every gateway and run sharing the ledger.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from costguard.gateway.price import Priced
from costguard.ledger import Ledger
from costguard.ledger.records import Admission, Run
from costguard.money import ZERO, usd

__all__ = ["GATEWAY", "Book"]

GATEWAY = "costguard guard"
"""The `gateway` meta of every run the gateway admits."""


def _now() -> datetime:
    return datetime.now(UTC)


class Book:
    """Admission, spend and settling of the gateway's runs on one ledger (thread-safe)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        budget: str,
        max_usd: Decimal | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.ledger = ledger
        self.budget = budget
        self.max_usd = max_usd
        self.clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, Decimal] = {}
        """The maximum each open run this process admitted holds."""
        self._counted = ZERO
        """What this process's runs count towards `max_usd`: maxima held plus spend settled
        (a running total: admission does not grow with the calls admitted)."""

    def check_budget(self) -> None:
        """Raise `LedgerError` (exit 5) when the budget is not set, naming those that are (as
        `run --budget` does): a mistyped name never runs unguarded."""
        self.ledger.require_budget(self.budget)

    def admit(self, priced: Priced, *, owner: str, meta: dict[str, Any]) -> Admission:
        """Reserve the call's maximum as a new run (refused: the run is recorded refused)."""
        run_id = f"guard-{uuid.uuid4().hex}"
        with self._lock:
            cap = None
            if self.max_usd is not None:
                cap = max(self.max_usd - self._counted, ZERO)
            admission = self.ledger.admit(
                run_id,
                priced.maximum,
                budget=self.budget,
                max_usd=cap,
                owner=owner,
                at=self.clock(),
                meta={
                    "gateway": GATEWAY,
                    "models": list(priced.models),
                    "mode": priced.mode,
                    "requests": priced.requests,
                    "images": priced.images,
                    "expected_usd": priced.expected,
                    **meta,
                },
                require_budget=True,
            )
            if admission.admitted:
                self._held[run_id] = priced.maximum
                self._counted += priced.maximum
        if (
            not admission.admitted
            and self.max_usd is not None
            and cap is not None
            and priced.maximum > cap
        ):
            reason = (  # the ledger names the cap max_usd; here it is what --max-usd has left
                f"needs {usd(priced.maximum)}, more than the {usd(cap)} left of this gateway's "
                f"--max-usd {usd(self.max_usd)}; short by {usd(priced.maximum - cap)}"
            )
            admission = dataclasses.replace(admission, reason=reason)
        return admission

    def annotate(self, run_id: str, **meta: Any) -> None:
        """Add facts learned after admission (the job id, the terminal state seen)."""
        self.ledger.annotate(run_id, meta)

    def settle(
        self, run_id: str, amount: Decimal, *, status: str, how: str, reconciled: bool = True
    ) -> Run:
        """Record `amount` as the run's spend and close it with `status`, in one ledger
        transaction (`Ledger.settle_call`).

        Not `reconciled`: the amount is an estimate (no usage could be read); the run closes
        with status `unreconciled` and its meta says why (`how`).
        """
        run = self.ledger.settle_call(
            run_id,
            "gateway",
            amount,
            status=status if reconciled else "unreconciled",
            at=self.clock(),
            meta={"reconciled": reconciled, "settled_by": how},
        )
        with self._lock:
            held = self._held.pop(run_id, None)
            if held is not None:
                self._counted += run.spent - held
        return run

    def release(self, run_id: str, reason: str) -> Run:
        """Free the whole reservation: nothing was spent (the provider refused the call)."""
        run = self.ledger.release(run_id, at=self.clock(), reason=reason)
        with self._lock:
            held = self._held.pop(run_id, None)
            if held is not None:
                self._counted -= held
        return run

    def open_runs(self) -> list[Run]:
        """This budget's open gateway runs (what a restarted gateway resumes)."""
        return [
            run
            for run in self.ledger.runs(limit=10_000, status="open")
            if run.meta.get("gateway") == GATEWAY and run.budget == self.budget
        ]
