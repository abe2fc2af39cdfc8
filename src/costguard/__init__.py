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
    from costguard.simulator import Simulator, simulate

__all__ = [
    "BudgetExceededError",
    "CostguardError",
    "QueueError",
    "RateCardError",
    "Simulator",
    "UsageError",
    "__version__",
    "simulate",
]


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
