"""costguard: plan, cap and rehearse the spend of bulk image generation.

The public API is re-exported here; everything else is an implementation detail.
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
    from costguard.simulator import Simulator

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


def simulate(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - forwards to the simulator's own signature
    """Open the in-process provider simulator (see `costguard.simulator.simulate`)."""
    from costguard.simulator import simulate as _simulate

    return _simulate(*args, **kwargs)


def __getattr__(name: str) -> Any:  # noqa: ANN401 - module-level lazy attributes
    if name == "__version__":
        from importlib.metadata import version

        return version("costguard")
    if name == "Simulator":
        from costguard.simulator import Simulator

        return Simulator
    msg = f"module 'costguard' has no attribute {name!r}"
    raise AttributeError(msg)
