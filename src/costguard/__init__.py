"""costguard: plan, cap and rehearse the spend of bulk image generation.

The public API is re-exported here; everything else is an implementation detail. The
simulator is imported lazily, so `import costguard` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.errors import (
    BudgetExceededError,
    CostguardError,
    QueueError,
    RateCardError,
    UsageError,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from decimal import Decimal
    from pathlib import Path

    from costguard.simulator import Simulator, simulate

__all__ = [
    "BudgetExceededError",
    "CostguardError",
    "QueueError",
    "RateCardError",
    "Simulator",
    "UsageError",
    "__version__",
    "guard",
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
    """Lazy attributes: `__version__`, `simulate`, `Simulator`."""
    if name == "__version__":
        from importlib.metadata import version

        return version("costguard")
    if name in ("simulate", "Simulator"):
        from costguard import simulator

        return getattr(simulator, name)
    msg = f"module 'costguard' has no attribute {name!r}"
    raise AttributeError(msg)
