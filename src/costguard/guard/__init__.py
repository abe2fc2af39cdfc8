"""The budget gateway (`costguard guard`): serves the OpenAI and Gemini APIs on a local port,
prices and reserves every paid call in the ledger before forwarding it to the provider, and
settles it from what the provider reports.

Modules: `routes` (which calls are paid), `price` (a call or an uploaded file -> maximum),
`book` (ledger runs per call or job), `jobs` (when a batch is over and what it cost),
`sinks` and `uploads` (the bodies kept), `app` (the gate on the proxy core), `watch` (the
poller and the grace period), `serve` (a gateway in a thread, for `costguard.guard()`).
Above the ledger, queue, pricing, providers and proxy; never imports the simulator.
"""

from __future__ import annotations

import sys
import types
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path


class _GuardPackage(types.ModuleType):
    """`costguard.guard` is both this package and the public `costguard.guard(...)` context
    manager (once this package is imported, Python binds its name on `costguard` to it), so
    the package is callable: calling it is calling `costguard.guard` (see its docstring)."""

    def __call__(
        self,
        *,
        budget: str,
        max_usd: Decimal | float | str | None = None,
        ledger: str | Path | None = None,
        upstreams: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> AbstractContextManager[str]:
        """Guard the SDK calls made in a block (`costguard.guard`)."""
        from costguard.guard.serve import guarded

        return guarded(
            budget=budget, max_usd=max_usd, ledger=ledger, upstreams=upstreams, owner=owner
        )


sys.modules[__name__].__class__ = _GuardPackage
