"""costguard: plan, cap and rehearse the spend of bulk image generation.

The public API is what this module exports (`__all__`); everything else is internal and may
change. `docs/python-api.md` shows it at work. Every name but the errors is imported on first
use, so `import costguard` stays cheap:

- `estimate(requests)` -> `Estimate`, `price(model, size=...)` -> `Price`: the rate cards'
  figures, as `costguard estimate` / `costguard prices` give them; `actual_cost(model, usage)`
  prices what a provider reported.
- `Ledger.open()` -> `.budget(name).reserve(amount)` -> `Reservation`, then
  `Ledger.settle(id, amount)` / `release(id)`, from any process.
- `run(queue, max_usd=...)` -> `Summary`: the whole `costguard run` cycle in-process.
- `guard(budget=...)`: the budget gateway for the SDK calls made in a block.
- `simulate()`: the offline simulator answering the official SDKs in-process.

No public name equals a submodule of `costguard` (`tests/test_python_api.py` checks it), so
importing any submodule can never shadow a function here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from costguard.errors import (
    BudgetExceededError,
    CostguardError,
    LedgerError,
    ModelUnavailableError,
    ProviderError,
    QueueError,
    RateCardError,
    UsageError,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from decimal import Decimal
    from pathlib import Path

    from costguard.api.budgets import Budget, Ledger, Reservation, ReservationWarning
    from costguard.api.estimating import (
        Estimate,
        EstimateGroup,
        Price,
        actual_cost,
        estimate,
        price,
    )
    from costguard.api.requests import ImageRequest
    from costguard.api.running import run
    from costguard.execution.options import RunPendingError
    from costguard.execution.reconcile import Summary
    from costguard.ledger.records import BudgetStatus
    from costguard.pricing.engine import Cost
    from costguard.simulator import Simulator, simulate

_LAZY = {
    "actual_cost": "costguard.api.estimating",
    "estimate": "costguard.api.estimating",
    "price": "costguard.api.estimating",
    "Estimate": "costguard.api.estimating",
    "EstimateGroup": "costguard.api.estimating",
    "Price": "costguard.api.estimating",
    "Cost": "costguard.pricing.engine",
    "ImageRequest": "costguard.api.requests",
    "Ledger": "costguard.api.budgets",
    "Budget": "costguard.api.budgets",
    "Reservation": "costguard.api.budgets",
    "ReservationWarning": "costguard.api.budgets",
    "BudgetStatus": "costguard.ledger.records",
    "run": "costguard.api.running",
    "Summary": "costguard.execution.reconcile",
    "RunPendingError": "costguard.execution.options",
    "simulate": "costguard.simulator",
    "Simulator": "costguard.simulator",
}
"""Public name -> the module it comes from, imported on first use."""

__all__ = [
    "Budget",
    "BudgetExceededError",
    "BudgetStatus",
    "Cost",
    "CostguardError",
    "Estimate",
    "EstimateGroup",
    "ImageRequest",
    "Ledger",
    "LedgerError",
    "ModelUnavailableError",
    "Price",
    "ProviderError",
    "QueueError",
    "RateCardError",
    "Reservation",
    "ReservationWarning",
    "RunPendingError",
    "Simulator",
    "Summary",
    "UsageError",
    "__version__",
    "actual_cost",
    "estimate",
    "guard",
    "price",
    "run",
    "simulate",
]


def guard(
    *,
    budget: str,
    max_usd: Decimal | float | str | None = None,
    ledger: str | Path | None = None,
    upstreams: dict[str, str] | None = None,
    owner: str | None = None,
) -> AbstractContextManager[str]:
    """Guard the OpenAI and Gemini SDK calls made in a block with a ledger budget.

    Serves the budget gateway (`costguard guard`) on a free loopback port in a thread and
    points the SDKs at it for the block (`OPENAI_BASE_URL`, `GOOGLE_GEMINI_BASE_URL`; their
    earlier values are restored afterwards, even on error). Every paid call made by a client
    created inside the block is priced and reserved before it is sent; one that does not fit
    raises at once (HTTP 402 in the provider's error shape, never retried) and nothing is sent.
    Works on the base install (no pytest).

    Args:
        budget: A budget set in the ledger (`costguard budget set --name team --usd 50`);
            a name that is not set raises `LedgerError`.
        max_usd: A cap on what this block admits in all, besides the budget.
        ledger: Ledger file or `postgresql://` URL (default: `COSTGUARD_LEDGER_URL`, else
            `COSTGUARD_LEDGER`, else `<COSTGUARD_HOME>/ledger.sqlite3`).
        upstreams: `{"openai": URL, "gemini": URL}` over the public endpoints.
        owner: The owner the spend is shown under (default: the API key's fingerprint).

    Yields:
        The gateway's base URL.

    Example:
        >>> import costguard                                    # doctest: +SKIP
        >>> from openai import OpenAI
        >>> with costguard.guard(budget="team", max_usd=50):
        ...     client = OpenAI()                               # created inside the block
        ...     client.images.generate(model="gpt-image-2", prompt="a fox")
    """
    from costguard.gateway.serve import guarded

    return guarded(budget=budget, max_usd=max_usd, ledger=ledger, upstreams=upstreams, owner=owner)


def __getattr__(name: str) -> Any:
    """The lazily imported public names, and `__version__`."""
    if name == "__version__":
        from importlib.metadata import version

        return version("costguard")
    where = _LAZY.get(name)
    if where is None:
        msg = f"module 'costguard' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(import_module(where), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
