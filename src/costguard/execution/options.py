"""What `costguard run` was asked to do, the run's id, and where its progress is reported."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from costguard.errors import CostguardError
from costguard.pricing.calibration import Calibration
from costguard.pricing.schema import Mode
from costguard.queue.reader import NO_DEFAULTS, Defaults, Format

if TYPE_CHECKING:
    from costguard.execution.progress import Snapshot


RunMode = Literal["batch", "sync"]
CARD_MODE: dict[RunMode, Mode] = {"batch": "batch", "sync": "standard"}
"""The rate-card mode a run mode is priced in."""


class RunPendingError(CostguardError):
    """The run's jobs are still running at the provider (timeout or detach)."""

    exit_code = 6
    kind = "pending"


@dataclass(frozen=True)
class RunOptions:
    """What `costguard run` was asked to do."""

    queue: Path
    max_usd: Decimal
    mode: RunMode = "batch"
    defaults: Defaults = NO_DEFAULTS
    fmt: Format | None = None
    as_of: dt.date | None = None
    out: Path | None = None
    poll_interval: float = 30.0
    timeout: float | None = None
    detach: bool = False
    retry_refused: bool = False
    budget: str = "default"
    budget_required: bool = False
    """The budget was named explicitly: it must be set in the ledger (else only `default`
    may be absent, and `max_usd` alone caps the run)."""
    owner: str = "unknown"
    concurrency: int = 4
    keep_raw: bool = False
    """Keep each job's raw files (input, result files) after its part is collected."""
    simulate: str | None = None
    retry_of: str | None = None
    """The run whose `retry.jsonl` this run sends again (`run --retry RUN`)."""
    nonce: str | None = None
    """Makes a new run of a queue that already ran (`run --new-run`)."""
    max_requests_per_part: int | None = None
    """Split batch parts at this many requests (besides the providers' own limits)."""
    max_enqueued_tokens: Mapping[str, int] = field(default_factory=dict)
    """Per model, the most tokens the provider lets be enqueued at once (its batch quota):
    parts are sized to fit and submitted as room is made."""
    calibration: Calibration | None = None
    """Price with allowances learned from real runs (`run --calibrated`); a new run keeps it in
    its journal, a resumed run keeps what it started with. Not part of the run id: it changes
    what the run is priced at, not what is sent."""


class QuietReporter:
    """Prints messages only, no progress (library use, tests)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def message(self, text: str) -> None:
        self.emit(text)

    def progress(self, snapshot: Snapshot) -> None:
        """No progress display."""

    def done(self) -> None:
        """Nothing to tear down."""


def run_id_for(options: RunOptions) -> str:
    """A run's id: the same queue file and options give the same id, so re-running resumes."""
    digest = hashlib.sha256()
    digest.update(file_sha256(options.queue).encode())
    d = options.defaults
    for value in (
        options.mode,
        options.fmt,
        d.model,
        d.size,
        d.quality,
        d.aspect_ratio,
        options.simulate,
    ):
        digest.update(b"\0" + str(value).encode())
    for label, extra in (("retry_of", options.retry_of), ("nonce", options.nonce)):
        if extra is not None:  # absent, the id is what it always was: older runs still resume
            digest.update(f"\0{label}={extra}".encode())
    return "run-" + digest.hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
