"""Errors costguard raises, each with its own exit code.

Every message is one line that names where the problem is (file, line, field) and, where it
can, the fix. The CLI maps these to stderr and the exit code in one place; with `--output
json` also to a JSON error object (`{"error": {"code", "kind", "message", ...details}}`) on
stdout, whose `kind` is the class's `kind` and whose further fields are the error's `details`.
"""

from __future__ import annotations

import dataclasses


class CostguardError(Exception):
    """Base of every error costguard raises on purpose.

    `kind` names the cause in JSON error objects (stable: scripts match on it); `details` are
    the error's own facts for them (`run_id`, `model`, ...), JSON values only.
    """

    exit_code = 1
    kind = "internal"

    def __init__(self, *args: object, details: dict[str, object] | None = None) -> None:
        super().__init__(*args)
        self.details: dict[str, object] = dict(details or {})


class UsageError(CostguardError):
    """The command line asks for something impossible (unknown option value, bad date)."""

    exit_code = 2
    kind = "usage"


@dataclasses.dataclass(slots=True)
class ErrorGroup:
    """One distinct error of a queue file (same field and message) and where it occurs."""

    file: str
    field: str
    message: str
    count: int = 0
    """How many lines have it."""
    lines: list[int] = dataclasses.field(default_factory=list)
    """The first of those lines (at most the reader's limit; 0: the file as a whole)."""

    def where(self) -> str:
        """`file:line: field: message` for one line; `file: field: message (N lines: ...)`."""
        if self.count == 1:
            at = f"{self.file}:{self.lines[0]}" if self.lines and self.lines[0] else self.file
            return f"{at}: {self.field}: {self.message}"
        shown = ", ".join(str(n) for n in self.lines)
        more = ", ..." if self.count > len(self.lines) else ""
        return f"{self.file}: {self.field}: {self.message} ({self.count:,} lines: {shown}{more})"


class QueueError(CostguardError):
    """A queue file has bad lines: the distinct errors (same field and message grouped, each
    with its count and first lines), in the order first seen, and how many lines were bad."""

    exit_code = 2
    kind = "queue"

    def __init__(
        self, groups: list[ErrorGroup], *, total: int | None = None, unlisted: int = 0
    ) -> None:
        self.groups = groups
        self.total = total if total is not None else sum(g.count for g in groups)
        self.unlisted = unlisted
        """Bad lines whose error is in none of `groups` (past the distinct errors kept)."""
        first = groups[0].where() if groups else "queue error"
        shown = groups[0].count if groups else 0
        more = f"; {self.total:,} bad lines in all" if self.total > shown else ""
        super().__init__(f"{first}{more}")

    @property
    def errors(self) -> list[str]:
        """One line per distinct error, as `ErrorGroup.where` gives it."""
        return [group.where() for group in self.groups]

    @property
    def file(self) -> str | None:
        """The queue the first error is in (`<requests>` for requests given in memory)."""
        return self.groups[0].file if self.groups else None

    @property
    def line(self) -> int | None:
        """The line of the first error (for requests given in memory, the request's 1-based
        position); None for an error of the queue as a whole."""
        first = self.groups[0] if self.groups else None
        return first.lines[0] if first and first.lines and first.lines[0] else None

    @property
    def field(self) -> str | None:
        """The field of the first error (`model`, `body.size`, ...)."""
        return self.groups[0].field if self.groups else None


class RateCardError(CostguardError):
    """A rate card is broken or missing, or no card covers a model at the date asked."""

    exit_code = 4
    kind = "rate_card"


class ModelUnavailableError(CostguardError):
    """The model is shut down (or not yet available) at the date asked."""

    exit_code = 2
    kind = "model_unavailable"


class BudgetExceededError(CostguardError):
    """The maximum cost does not fit the budget. Expected, so it has its own exit code."""

    exit_code = 3
    kind = "over_budget"


class ProviderError(CostguardError):
    """The provider refused or failed a call after the run was admitted (wrong key, bad request,
    unreachable). `rejected`: the provider answered that it will not do it (a 4xx), so nothing of
    that call was accepted."""

    exit_code = 8
    kind = "provider"

    def __init__(self, message: str, *, rejected: bool, quota: bool = False) -> None:
        super().__init__(message, details={"rejected": rejected, "quota": quota})
        self.rejected = rejected
        self.quota = quota
        """The provider is out of quota or rate for now (HTTP 429, e.g. Gemini's
        RESOURCE_EXHAUSTED): the same call may succeed later."""


class OutputError(CostguardError):
    """Results could not be written to the output folder (full disk, read-only, removed)."""

    exit_code = 9
    kind = "output"


class LedgerError(CostguardError):
    """The ledger cannot be opened or used (locked, not a database, newer schema) or lacks a run."""

    exit_code = 5
    kind = "ledger"


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
