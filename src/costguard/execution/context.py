"""What every stage of a run needs while it drives one journal: clients, ledger, clock, output."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from costguard.execution.journal import Journal
from costguard.execution.progress import Reporter, Tracker
from costguard.execution.rundir import RunDir
from costguard.ledger import Ledger
from costguard.pricing.calibration import Calibration
from costguard.pricing.engine import RateBook
from costguard.providers.base import Provider
from costguard.queue.reader import Defaults, QueueReader

ProviderFactory = Callable[[str, Path], Provider]
"""(provider name, queue folder) -> a provider client."""


class Clients:
    """One provider client per provider, built on first use and kept for the process."""

    def __init__(self, factory: ProviderFactory) -> None:
        self.factory = factory
        self._clients: dict[str, Provider] = {}

    def open(self, providers: Iterable[str], base: Path) -> None:
        """Build these clients now: a missing API key fails before anything is reserved."""
        for provider in sorted(set(providers)):
            self.get(provider, base)

    def get(self, provider: str, base: Path) -> Provider:
        """The client of `provider`; `base` is the queue's folder (relative image paths)."""
        if provider not in self._clients:
            self._clients[provider] = self.factory(provider, base)
        return self._clients[provider]


def queue_reader(journal: Journal, book: RateBook) -> QueueReader:
    """Read the run's queue again, as it was read when the run was planned."""
    o = journal.options
    defaults = Defaults(o["model"], o["size"], o["quality"], o["aspect_ratio"])
    return QueueReader(
        Path(journal.queue),
        book,
        dt.date.fromisoformat(journal.as_of),
        defaults=defaults,
        fmt=journal.queue_format,  # type: ignore[arg-type]  # written from a Format
    )


@dataclass
class RunContext:
    """One run being driven: its journal and folder, and the services its stages call."""

    journal: Journal
    rundir: RunDir
    book: RateBook
    ledger: Ledger
    clients: Clients
    reporter: Reporter
    clock: Callable[[], dt.datetime]
    sleep: Callable[[float], None]
    keep_raw: bool = False
    """Keep each part's raw files after collecting it (`--keep-raw`)."""
    monotonic: Callable[[], float] = time.monotonic
    """Elapsed time: the poll's `--timeout` and the progress display."""

    @cached_property
    def progress(self) -> Tracker:
        """Where the stages report progress; it reaches `reporter` as snapshots."""
        return Tracker(self.journal, self.reporter, self.monotonic)

    def client(self, provider: str) -> Provider:
        return self.clients.get(provider, Path(self.journal.queue).parent)

    def reader(self) -> QueueReader:
        return queue_reader(self.journal, self.book)

    @cached_property
    def calibration(self) -> Calibration | None:
        """The calibration the run was priced with (kept in its journal), or None."""
        data = self.journal.estimate.get("calibration")
        return Calibration.from_json(data) if data else None

    @property
    def learns(self) -> bool:
        """Whether the run's usage teaches calibration: real runs only, never rehearsals."""
        return self.journal.simulate is None

    @property
    def as_of(self) -> dt.date:
        """The date the run is priced at (fixed when it was planned)."""
        return dt.date.fromisoformat(self.journal.as_of)
