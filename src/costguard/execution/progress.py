"""A run's progress: what each part is doing, in one vocabulary, for the live display and logs.

The runner's stages tell a `Tracker` what happened (a poll's answers, a collection begun, a
result recorded); the tracker turns the journal, the provider's counts and the manifest's tally
into a `Snapshot` and hands it to the run's `Reporter`: a live table on a terminal
(`cli/progress.py`), plain lines elsewhere (`LineReporter`, for CI logs), nothing in tests.

A part's state, in costguard's words (`part_state`):

    planned -> submitting -> queued -> running -> finalizing -> succeeded -> collecting -> collected
     (waiting for quota)             (cancelling)               failed | expired | cancelled

(`unknown`: the provider reported a state costguard does not know; the sync part of a sync run
is `planned`, `running` while its calls are made, then `collected`.) The provider's own name
for a job's state is kept beside it (`provider_state`), shown with `--verbose` and in JSON.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, get_args

from costguard.money import usd, usd_together
from costguard.providers.states import JobState, job_state

if TYPE_CHECKING:
    from costguard.execution.journal import Journal, Part
    from costguard.providers.base import JobStatus

PROGRESS_INTERVAL_S = 60.0
"""Off a terminal, the longest wall time without a progress line while a run is driven."""
TICK_S = 10.0
"""The longest sleep between two progress reports while polling (the poll interval grows to
minutes; the display's elapsed time and the log's periodic lines keep going meanwhile)."""
REPORT_EVERY_S = 0.1
"""The shortest time between two reports of collection progress (a report per result would
cost more than the result for small images)."""

PART_STATES = (
    "planned",
    "waiting for quota",
    "submitting",
    *get_args(JobState),
    "collecting",
    "collected",
)
"""Every state `part_state` gives, in the order a part goes through them."""


def part_state(part: Part, *, collecting: bool = False) -> str:  # noqa: PLR0911 - a state each
    """`part`'s state in costguard's words, from its journal entry (`collecting`: its results
    are being recorded right now)."""
    if part.state == "collected":
        return "collected"
    if collecting:
        return "running" if part.endpoint == "sync" else "collecting"
    if part.withdrawn:
        return "cancelled"  # by `costguard cancel`, before it was ever submitted
    if part.waiting_for_quota:
        return "waiting for quota"
    if part.state in ("planned", "submitting"):
        return part.state
    if part.job_state is None:
        return "queued"  # created, not polled yet
    if part.job_state.startswith("terminal:"):
        return part.job_state.removeprefix("terminal:")
    return job_state(part.provider, part.job_state)


class Tallies(Protocol):
    """What the output folder knows of what was recorded (`run/outputs.py` `Outputs`)."""

    def tally(self, part_id: str) -> tuple[int, int]: ...

    def part_cost(self, part_id: str) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class PartView:
    """One part as a progress display shows it."""

    id: str
    state: str
    """In costguard's words (`PART_STATES`)."""
    provider_state: str | None
    """The provider's own name for its job's state, as last seen."""
    total: int
    done: int | None
    """Requests that succeeded, as the provider counts them (a sync run: answered ok); None
    while unknown."""
    failed: int | None
    collected: int
    """Results recorded in the manifest."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A run's progress at one moment."""

    run_id: str
    elapsed: float
    """Seconds since this process began driving the run."""
    parts: tuple[PartView, ...]
    reserved: Decimal | None
    """What the ledger holds for the run (its maximum) until it is settled; None after."""
    spent: Decimal
    """The actual cost of the results recorded so far."""
    rehearsal: bool
    eta: float | None
    """Seconds until the provider finishes the jobs (or, once they have, until collecting
    ends), from the rate requests have been finishing; None when it cannot be estimated."""
    collecting: bool
    """Results are being recorded right now."""

    @property
    def requests(self) -> int:
        return sum(p.total for p in self.parts)

    @property
    def collected(self) -> int:
        return sum(p.collected for p in self.parts)

    @property
    def done(self) -> int | None:
        return _sum(p.done for p in self.parts)

    @property
    def failed(self) -> int | None:
        return _sum(p.failed for p in self.parts)


def _sum(values: Iterable[int | None]) -> int | None:
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


class Reporter(Protocol):
    """Where progress goes (a live display on a terminal, plain lines or nothing otherwise)."""

    def message(self, text: str) -> None: ...

    def progress(self, snapshot: Snapshot) -> None: ...

    def done(self) -> None: ...


@dataclass
class _Seen:
    """A running job's finished requests when first and last counted (for the ETA)."""

    first_at: float
    first: int
    last_at: float
    last: int


class Tracker:
    """Turns what the runner's stages report into snapshots for the run's `Reporter`.

    Thread-safe: results are recorded from the writer thread (`collect.py`) and the sync
    workers while the main thread polls.
    """

    def __init__(
        self, journal: Journal, reporter: Reporter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.journal = journal
        self.reporter = reporter
        self.clock = clock
        self.started = clock()
        self._lock = threading.RLock()
        self._tallies: Tallies | None = None
        self._collecting: str | None = None
        self._seen: dict[str, _Seen] = {}
        self._collect_start: tuple[float, int] | None = None
        self._last_report = -math.inf

    def begin(self, tallies: Tallies) -> None:
        """The output folder is open: counts and spend come from what it recorded."""
        self._tallies = tallies

    def polled(self, statuses: Mapping[str, JobStatus]) -> None:
        """The provider answered a poll (its answers are in the journal already)."""
        now = self.clock()
        with self._lock:
            for part_id, status in statuses.items():
                if status.completed is None or status.failed is None:
                    continue
                finished = status.completed + status.failed
                seen = self._seen.get(part_id)
                if seen is None:
                    self._seen[part_id] = _Seen(now, finished, now, finished)
                elif finished != seen.last:
                    seen.last_at, seen.last = now, finished
            self.report(force=True)

    def tick(self) -> None:
        """Time passed (a long wait between polls)."""
        self.report(force=True)

    def collecting(self, part: Part) -> None:
        """`part`'s results are about to be recorded (a sync run: its calls made)."""
        with self._lock:
            self._collecting = part.id
            if self._collect_start is None:
                self._collect_start = (self.clock(), self._collected())
            self.report(force=True)

    def recorded(self) -> None:
        """One more result is in the manifest."""
        self.report()

    def collected(self, part: Part) -> None:
        """`part` is collected (its cost is in the ledger)."""
        with self._lock:
            if self._collecting == part.id:
                self._collecting = None
            self.report(force=True)

    def report(self, *, force: bool = False) -> None:
        """Hand a snapshot to the reporter (at most every `REPORT_EVERY_S` unless `force`)."""
        with self._lock:
            now = self.clock()
            if not force and now - self._last_report < REPORT_EVERY_S:
                return
            self._last_report = now
            self.reporter.progress(self.snapshot(now))

    def snapshot(self, now: float | None = None) -> Snapshot:
        """The run's progress now."""
        now = self.clock() if now is None else now
        journal = self.journal
        views = tuple(self._view(part) for part in journal.parts)
        reserved = None
        if journal.status in ("admitted", "submitted"):
            reserved = Decimal(journal.estimate["max_usd"])
        if self._tallies is not None:
            spent = sum((self._tallies.part_cost(p.id) for p in journal.parts), Decimal(0))
        else:
            spent = sum((Decimal(p.cost_usd or 0) for p in journal.parts), Decimal(0))
        return Snapshot(
            run_id=journal.run_id,
            elapsed=now - self.started,
            parts=views,
            reserved=reserved,
            spent=spent,
            rehearsal=journal.simulate is not None,
            eta=self._eta(now),
            collecting=self._collecting is not None,
        )

    def _view(self, part: Part) -> PartView:
        lines, ok = self._tallies.tally(part.id) if self._tallies is not None else (0, 0)
        counts = part.job_counts or {}
        done: int | None = ok
        failed: int | None = lines - ok
        if part.endpoint != "sync":
            done, failed = counts.get("done"), counts.get("failed")
        return PartView(
            id=part.id,
            state=part_state(part, collecting=part.id == self._collecting),
            provider_state=part.provider_state,
            total=part.requests,
            done=done,
            failed=failed,
            collected=lines,
        )

    def _collected(self) -> int:
        if self._tallies is None:
            return 0
        return sum(self._tallies.tally(p.id)[0] for p in self.journal.parts)

    def _eta(self, now: float) -> float | None:
        running = [p for p in self.journal.parts if p.awaiting_job]
        if running:
            longest = 0.0
            for part in running:
                seen = self._seen.get(part.id)
                total = (part.job_counts or {}).get("total")
                if seen is None or total is None or seen.last <= seen.first:
                    return None
                rate = (seen.last - seen.first) / max(seen.last_at - seen.first_at, 1e-9)
                left = (total - seen.last) / rate - (now - seen.last_at)
                longest = max(longest, left)
            return max(longest, 0.0)
        if self._collect_start is None or self._collecting is None:
            return None
        started_at, started_with = self._collect_start
        collected = self._collected()
        if collected <= started_with or now <= started_at:
            return None
        rate = (collected - started_with) / (now - started_at)
        left = sum(
            p.requests - (self._tallies.tally(p.id)[0] if self._tallies else 0)
            for p in self.journal.parts
            if p.state != "collected"
        )
        return max(left, 0) / rate


# --- plain lines --------------------------------------------------------------------------


def clock_text(seconds: float) -> str:
    """`H:MM:SS` (hours past 24 keep counting)."""
    whole = max(int(seconds), 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02}:{whole % 60:02}"


def count_text(value: int | None) -> str:
    """A count for display: `1,234`, or `?` when the provider did not say."""
    return "?" if value is None else f"{value:,}"


def part_line(part: PartView, *, verbose: bool = False) -> str:
    """`gpt-image-2-1: running, 3 done, 0 failed of 5` (`, 2 collected` once any are)."""
    raw = f" ({part.provider_state})" if verbose and part.provider_state else ""
    line = (
        f"{part.id}: {part.state}{raw}, {count_text(part.done)} done, "
        f"{count_text(part.failed)} failed of {part.total:,}"
    )
    if part.collected or part.state in ("collecting", "collected"):
        line += f", {part.collected:,} collected"
    return line


def money_text(snapshot: Snapshot) -> str:
    """`spent $0.12 of $5.00 reserved` (`(rehearsal)` for a simulated run)."""
    if snapshot.reserved is None:
        text = f"spent {usd(snapshot.spent)}"
    else:
        spent, reserved = usd_together(snapshot.spent, snapshot.reserved)
        text = f"spent {spent} of {reserved} reserved"
    return text + (" (rehearsal)" if snapshot.rehearsal else "")


def run_line(snapshot: Snapshot) -> str:
    """The whole run in one line: parts per state, requests, collection, money, ETA."""
    states: dict[str, int] = {}
    for part in snapshot.parts:
        states[part.state] = states.get(part.state, 0) + 1
    order = {name: i for i, name in enumerate(PART_STATES)}
    shown = ", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda i: order[i[0]]))
    fields = [
        f"run {snapshot.run_id}: {shown or 'no parts'}",
        (
            f"{count_text(snapshot.done)} done, {count_text(snapshot.failed)} failed "
            f"of {snapshot.requests:,}"
        ),
    ]
    if snapshot.collected or snapshot.collecting:
        fields.append(f"collected {snapshot.collected:,}/{snapshot.requests:,}")
    fields.append(money_text(snapshot))
    if snapshot.eta is not None:
        fields.append(f"eta {clock_text(snapshot.eta)}")
    return "; ".join(fields)


class LineReporter:
    """Progress as plain lines, for logs (CI) where a live display cannot be drawn.

    A line for each part whose state changed (`[0:12:05] gpt-image-2-1: running, 812 done,
    0 failed of 2,000`), and when `interval` seconds passed without a line, the state of every
    part not yet collected and a line for the whole run (money, collection, ETA).
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        interval: float = PROGRESS_INTERVAL_S,
        verbose: bool = False,
    ) -> None:
        self.emit = emit
        self.interval = interval
        self.verbose = verbose
        self._states: dict[str, str] = {}
        self._last: float | None = None
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        with self._lock:
            self.emit(text)

    def progress(self, snapshot: Snapshot) -> None:
        with self._lock:
            stamp = f"[{clock_text(snapshot.elapsed)}]"
            changed = [p for p in snapshot.parts if self._states.get(p.id) != p.state]
            if changed:
                for part in changed:
                    self.emit(f"{stamp} {part_line(part, verbose=self.verbose)}")
                    self._states[part.id] = part.state
                self._last = snapshot.elapsed
                return
            if self._last is not None and snapshot.elapsed - self._last < self.interval:
                return
            for part in snapshot.parts:
                if part.state != "collected":
                    self.emit(f"{stamp} {part_line(part, verbose=self.verbose)}")
            self.emit(f"{stamp} {run_line(snapshot)}")
            self._last = snapshot.elapsed

    def done(self) -> None:
        """Nothing to tear down."""
