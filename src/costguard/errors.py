"""Errors costguard raises, each with its own exit code.

Every message is one line that names where the problem is (file, line, field) and, where it
can, the fix. The CLI maps these to stderr and the exit code in one place.
"""

from __future__ import annotations


class CostguardError(Exception):
    """Base of every error costguard raises on purpose."""

    exit_code = 1


class UsageError(CostguardError):
    """The command line asks for something impossible (unknown option value, bad date)."""

    exit_code = 2


class QueueError(CostguardError):
    """A queue file has bad lines. Carries every error found (the CLI shows up to 20)."""

    exit_code = 2

    def __init__(self, errors: list[str], *, total: int | None = None) -> None:
        self.errors = errors
        self.total = total if total is not None else len(errors)
        first = errors[0] if errors else "queue error"
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{first}{more}")


class RateCardError(CostguardError):
    """A rate card is broken or missing, or no card covers a model at the date asked."""

    exit_code = 4


class ModelUnavailableError(CostguardError):
    """The model is shut down (or not yet available) at the date asked."""

    exit_code = 2


class BudgetExceededError(CostguardError):
    """The maximum cost does not fit the budget. Expected, so it has its own exit code."""

    exit_code = 3


class ProviderError(CostguardError):
    """The provider refused or failed a call after the run was admitted (wrong key, bad request,
    unreachable). `rejected`: the provider answered that it will not do it (a 4xx), so nothing of
    that call was accepted."""

    exit_code = 8

    def __init__(self, message: str, *, rejected: bool) -> None:
        super().__init__(message)
        self.rejected = rejected


class OutputError(CostguardError):
    """Results could not be written to the output folder (full disk, read-only, removed)."""

    exit_code = 9


class LedgerError(CostguardError):
    """The ledger cannot be opened or used (locked, not a database, newer schema) or lacks a run."""

    exit_code = 5


EXIT_CODES: dict[int, str] = {
    0: "success (and, with --max-usd, the maximum cost fits the budget)",
    1: "unexpected internal error (a bug: please report it)",
    2: "bad input: queue lines, options, unknown or shut-down model; nothing was priced or sent",
    3: "over budget: the maximum cost does not fit --max-usd; nothing was sent",
    4: "rate card problem: a card is invalid, or no card covers the date or model asked",
    5: "ledger problem: the ledger cannot be opened or read, or has no such budget or run",
    6: "still running at the provider when --timeout passed: `costguard collect RUN` later",
    7: "the run finished but some requests are not ok (refused, failed, expired, cancelled); "
    "see manifest.jsonl and retry.jsonl",
    8: "the provider refused or failed a call after admission (wrong key, bad request, "
    "unreachable); what it did not accept was released: fix the cause, run the same command",
    9: "the output folder could not be written (full disk, read-only); the results stay at the "
    "provider: fix the folder, then `costguard collect RUN`",
    130: "interrupted (Ctrl-C)",
}
