"""One run: price -> guard -> reserve -> submit -> poll -> collect -> reconcile, resumable.

The journal is written before every external step, so running the same command again (or
`costguard collect RUN`) after a crash continues where the run stopped:

- a part journaled as `submitting` may or may not have reached the provider: its tag (run id
  and part) is looked up at the provider before anything is created again;
- an image already on disk is never rewritten; a request already in the manifest is skipped;
- each part's actual cost is recorded in the ledger once, under the part's id.

Batch mode makes one provider job per provider, model and endpoint, split at the providers'
limits. Sync mode calls the synchronous endpoints with bounded concurrency; a crash there can
repeat (and pay again for) only the calls that were in flight.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from threading import BoundedSemaphore, Lock
from typing import Any, Literal, Protocol

from costguard.errors import BudgetExceededError, CostguardError, UsageError
from costguard.ledger import Ledger
from costguard.models import ImageRequest, Usage
from costguard.money import ZERO, plain
from costguard.pricing.budget import check
from costguard.pricing.engine import RateBook, Totals, price, usage_cost
from costguard.pricing.schema import Mode
from costguard.providers.base import JobStatus, Outcome, Provider
from costguard.queue.estimate import QueueEstimate, price_queue
from costguard.queue.reader import NO_DEFAULTS, Defaults, Format, QueueReader
from costguard.run.journal import (
    Journal,
    JournalError,
    Outputs,
    Part,
    RunDir,
    safe_name,
    write_atomic,
)

RunMode = Literal["batch", "sync"]
CARD_MODE: dict[RunMode, Mode] = {"batch": "batch", "sync": "standard"}
LIMITS: dict[str, tuple[int, int]] = {
    "openai": (50_000, 200 * 1024 * 1024 - 1024 * 1024),
    "gemini": (1_000_000, 2 * 1024 * 1024 * 1024 - 16 * 1024 * 1024),
}
"""Per provider: most requests and most bytes of input file in one job (with a margin)."""
IMAGE_BYTES_GUESS = 4 * 1024 * 1024
"""Bytes an inline input image adds to a job file when its size is unknown (a URI)."""


class RunPendingError(CostguardError):
    """The run's jobs are still running at the provider (timeout or detach)."""

    exit_code = 6


ProviderFactory = Callable[[str, Path], Provider]
"""(provider name, queue folder) -> a provider client."""


class Reporter(Protocol):
    """Where progress goes (a live display on a terminal, nothing otherwise)."""

    def message(self, text: str) -> None: ...

    def progress(
        self, run_id: str, parts: list[Part], statuses: dict[str, JobStatus], elapsed: float
    ) -> None: ...

    def done(self) -> None: ...


class QuietReporter:
    """Prints messages only (no live progress)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def message(self, text: str) -> None:
        self.emit(text)

    def progress(
        self, run_id: str, parts: list[Part], statuses: dict[str, JobStatus], elapsed: float
    ) -> None:
        """No live display when not on a terminal."""

    def done(self) -> None:
        """Nothing to tear down."""


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
    owner: str = "unknown"
    concurrency: int = 4
    simulate: str | None = None


@dataclass
class Summary:
    """What a run produced, for the report and the exit code."""

    run_id: str
    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    estimate_expected: Decimal = ZERO
    estimate_max: Decimal = ZERO
    actual: Decimal = ZERO
    sync_equivalent: Decimal | None = None
    """What the same usage would have cost at sync prices (batch runs)."""
    batch_equivalent: Decimal | None = None
    """What the same usage would have cost in batch (sync runs)."""
    parts: list[Part] = field(default_factory=list)
    retry_file: Path | None = None
    retry_count: int = 0
    part_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per part, requests per status."""
    refused_not_retried: int = 0


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
    return "run-" + digest.hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


class Runner:
    """Drives runs. Every dependency is passed in; nothing here knows about the simulator."""

    def __init__(
        self,
        *,
        home: Path,
        ledger: Ledger,
        book: RateBook,
        providers: ProviderFactory,
        reporter: Reporter,
        clock: Callable[[], dt.datetime] = _now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = home
        self.ledger = ledger
        self.book = book
        self.providers = providers
        self.reporter = reporter
        self.clock = clock
        self.sleep = sleep
        self._clients: dict[str, Provider] = {}

    # entry points --------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> RunDir:
        """The run's folder; its journal and lock are in the ledger when the ledger is shared."""
        return RunDir(self.home / "runs" / run_id, store=self.ledger.journals)

    def start(self, options: RunOptions, run_id: str | None = None) -> Summary:
        """`costguard run`: a new run, or the same run resumed."""
        run_id = run_id or run_id_for(options)
        rundir = self.run_dir(run_id)
        rundir.lock()
        try:
            journal = self._prepare(options, run_id, rundir)
            return self._drive(journal, rundir, options)
        except BaseException:
            if not rundir.exists:  # refused before it had a journal: leave no trace
                rundir.discard()
            raise
        finally:
            rundir.unlock()

    def collect(
        self,
        run_id: str,
        options: RunOptions,
        *,
        queue: Path | None = None,
        out: Path | None = None,
    ) -> Summary:
        """`costguard collect RUN`: poll and collect a run started earlier (any process).

        With a shared ledger the run may have been started on another machine: `queue` is
        where its queue file is here (it must be the same file: same sha256) and `out` where
        this machine writes what it collects.
        """
        rundir = self.run_dir(run_id)
        if not rundir.exists:
            where = (
                f"in ledger {rundir.store.location}"
                if rundir.store is not None
                else f"under {self.home / 'runs'}"
            )
            msg = f"no run {run_id!r} {where} (see `costguard runs`)"
            raise UsageError(msg)
        rundir.lock()
        try:
            journal = rundir.load()
            if journal.status == "planned":
                msg = (
                    f"run {run_id} was never admitted by the ledger (it stopped before its "
                    "budget check); run the same `costguard run` command again"
                )
                raise UsageError(msg)
            here = (queue or Path(journal.queue)).resolve()
            if not here.is_file() or file_sha256(here) != journal.queue_sha256:
                msg = f"{here}: the queue changed or is gone since run {run_id} started"
                if queue is None:
                    msg += " (if it lies elsewhere on this machine, give it with --queue)"
                raise JournalError(msg)
            moved = {"queue": str(here)} if queue is not None else {}
            if out is not None:
                moved["out"] = str(out.resolve())
            if any(getattr(journal, k) != v for k, v in moved.items()):
                for key, value in moved.items():
                    setattr(journal, key, value)
                rundir.save(journal)
            return self._drive(journal, rundir, options)
        finally:
            rundir.unlock()

    def cancel(self, run_id: str) -> list[str]:
        """Ask the provider to cancel every unfinished job of a run."""
        rundir = self.run_dir(run_id)
        journal = rundir.load()
        cancelled = []
        for part in journal.parts:
            if part.job_id and part.state == "submitted" and part.job_state not in _TERMINAL_RAW:
                self._client(part.provider, journal).cancel(part.job_id)
                cancelled.append(part.job_id)
        return cancelled

    # preparation ---------------------------------------------------------------------------

    def _prepare(self, options: RunOptions, run_id: str, rundir: RunDir) -> Journal:
        at = options.as_of or self.clock().date()
        if rundir.exists:
            journal = rundir.load()
            at = dt.date.fromisoformat(journal.as_of)
            if options.out is not None and Path(journal.out) != options.out.resolve():
                msg = (
                    f"run {run_id} already writes to {journal.out}; run it with that --out "
                    "(or change the queue to start a new run)"
                )
                raise UsageError(msg)
        queue = price_queue(
            options.queue, self.book, at, defaults=options.defaults, fmt=options.fmt
        )
        card_mode = CARD_MODE[options.mode]
        total = queue.estimate.total(card_mode)
        if total is None:
            missing = [g.model for g in queue.estimate.groups if g.cost[card_mode] is None]
            msg = f"{', '.join(sorted(set(missing)))} has no {options.mode} tier; use --mode sync"
            raise UsageError(msg)
        for warning in queue.warnings:
            self.reporter.message(f"warning: {warning}")
        self._open_clients(queue, options.queue.resolve().parent)
        if not rundir.exists:
            journal = self._new_journal(options, run_id, queue, at, total.expected, total.max)
            Outputs(Path(journal.out)).check(f"{journal.run_id} {journal.created}")
            self._plan(journal, options, queue)  # may refuse the queue: before saving anything
            decision = check(total.max, options.max_usd)
            if not decision.fits:
                self._refuse(
                    rundir,
                    run_id,
                    f"the {options.mode} maximum {plain(total.max)} "
                    f"passes --max-usd {plain(options.max_usd)} by "
                    f"{plain(decision.shortfall)}",
                )
            rundir.save(journal)
        else:
            journal = rundir.load()
            if journal.status == "collected":
                self.reporter.message(f"run {run_id} is already complete; nothing was sent")
            else:
                self.reporter.message(f"resuming run {run_id} ({journal.status})")
        if journal.status == "planned":
            if not journal.parts:
                self._plan(journal, options, queue)
            admission = self.ledger.admit(
                run_id,
                Decimal(journal.estimate["max_usd"]),
                budget=options.budget,
                max_usd=options.max_usd,
                owner=options.owner,
                at=self.clock(),
                meta={
                    "queue": journal.queue,
                    "mode": journal.mode,
                    "rate_cards": journal.rate_cards,
                    "expected_usd": journal.estimate["expected_usd"],
                },
            )
            if not admission.admitted:
                self._refuse(rundir, run_id, admission.reason or "the ledger budget is spent")
            journal.status = "admitted"
            rundir.save(journal)
        return journal

    def _open_clients(self, queue: QueueEstimate, base: Path) -> None:
        """Build the queue's provider clients now: a missing API key fails before reserving."""
        for provider in sorted({g.provider for g in queue.estimate.groups}):
            if provider not in self._clients:
                self._clients[provider] = self.providers(provider, base)

    def _refuse(self, rundir: RunDir, run_id: str, why: str) -> None:
        rundir.forget()
        msg = f"over budget: {why}; nothing was sent (run {run_id})"
        raise BudgetExceededError(msg)

    def _new_journal(
        self,
        options: RunOptions,
        run_id: str,
        queue: QueueEstimate,
        at: dt.date,
        expected: Decimal,
        maximum: Decimal,
    ) -> Journal:
        out = (options.out or Path("costguard-out") / run_id).resolve()
        d = options.defaults
        return Journal(
            run_id=run_id,
            created=self.clock().isoformat(),
            queue=str(options.queue.resolve()),
            queue_sha256=file_sha256(options.queue),
            queue_format=queue.format,
            mode=options.mode,
            as_of=at.isoformat(),
            out=str(out),
            options={
                "model": d.model,
                "size": d.size,
                "quality": d.quality,
                "aspect_ratio": d.aspect_ratio,
                "max_usd": plain(options.max_usd),
                "retry_refused": options.retry_refused,
                "budget": options.budget,
                "owner": options.owner,
            },
            estimate={
                "requests": queue.estimate.requests,
                "images": queue.estimate.images,
                "expected_usd": plain(expected),
                "max_usd": plain(maximum),
            },
            rate_cards=queue.estimate.rate_cards,
            simulate=options.simulate,
        )

    def _reader(self, journal: Journal) -> QueueReader:
        o = journal.options
        defaults = Defaults(o["model"], o["size"], o["quality"], o["aspect_ratio"])
        return QueueReader(
            Path(journal.queue),
            self.book,
            dt.date.fromisoformat(journal.as_of),
            defaults=defaults,
            fmt=journal.queue_format,  # type: ignore[arg-type]  # written from a Format
        )

    def _plan(self, journal: Journal, options: RunOptions, queue: QueueEstimate) -> None:
        """Split the queue into parts (one job each) and check output names are distinct."""
        if options.mode == "sync":
            journal.parts = [
                Part(
                    "sync",
                    "mixed",
                    "mixed",
                    "sync",
                    queue.estimate.requests,
                    tag=f"costguard:{journal.run_id}:sync",
                )
            ]
            journal.groups = {}
            self._check_names(journal)
            return
        groups: dict[str, list[int]] = {}
        sizes: dict[str, int] = {}
        names: set[str] = set()
        for request in self._reader(journal):
            group = _group_of(request)
            limit_n, limit_bytes = LIMITS[request.provider]
            counts = groups.setdefault(group, [0])
            weight = _weight(request)
            if counts[-1] >= limit_n or (counts[-1] and sizes[group] + weight > limit_bytes):
                counts.append(0)
                sizes[group] = 0
            counts[-1] += 1
            sizes[group] = sizes.get(group, 0) + weight
            _claim_names(names, request)
        journal.groups = groups
        parts = []
        for group, counts in sorted(groups.items()):
            provider, model, endpoint = group.split("|")
            for index, count in enumerate(counts):
                part_id = f"{_slug(model)}{'-edits' if endpoint == 'edits' else ''}-{index + 1}"
                parts.append(
                    Part(
                        part_id,
                        provider,
                        model,
                        endpoint,
                        count,
                        tag=f"costguard:{journal.run_id}:{part_id}",
                    )
                )
        journal.parts = parts

    def _check_names(self, journal: Journal) -> None:
        names: set[str] = set()
        for request in self._reader(journal):
            _claim_names(names, request)

    def _part_requests(self, journal: Journal, part: Part) -> Iterator[ImageRequest]:
        """Re-read the queue and yield the requests of one part (deterministic split)."""
        if part.endpoint == "sync":
            yield from self._reader(journal)
            return
        group = f"{part.provider}|{part.model}|{part.endpoint}"
        counts = journal.groups[group]
        index = int(part.id.rsplit("-", 1)[1]) - 1
        start = sum(counts[:index])
        end = start + counts[index]
        seen = 0
        for request in self._reader(journal):
            if _group_of(request) != group:
                continue
            if start <= seen < end:
                yield request
            seen += 1
            if seen >= end:
                return

    # driving -------------------------------------------------------------------------------

    def _client(self, provider: str, journal: Journal) -> Provider:
        if provider not in self._clients:
            self._clients[provider] = self.providers(provider, Path(journal.queue).parent)
        return self._clients[provider]

    def _drive(self, journal: Journal, rundir: RunDir, options: RunOptions) -> Summary:
        outputs = Outputs(Path(journal.out))
        collected = outputs.open(f"{journal.run_id} {journal.created}")
        try:
            if journal.mode == "sync":
                self._sync(journal, rundir, outputs, collected, options)
            else:
                self._submit_all(journal, rundir)
                self._poll(journal, rundir, options)
                for part in journal.parts:
                    if part.state == "submitted" and part.job_state in _TERMINAL_RAW:
                        self._collect_part(journal, rundir, part, outputs, collected)
            return self._finish(journal, rundir, outputs)
        finally:
            outputs.close()
            self.reporter.done()

    def _submit_all(self, journal: Journal, rundir: RunDir) -> None:
        for part in journal.parts:
            if part.state not in ("planned", "submitting"):
                continue
            client = self._client(part.provider, journal)
            if part.state == "submitting":
                # A crash may have come after the provider created the job: look before creating.
                found = client.find_job(part.tag)
                if found is not None:
                    part.job_id, part.state = found, "submitted"
                    rundir.save(journal)
                    self.reporter.message(f"{part.id}: found job {found} at {part.provider}")
                    continue
            part.state = "submitting"
            rundir.save(journal)
            job = client.submit(
                part.model, self._part_requests(journal, part), part.tag, rundir.workdir(part.id)
            )
            part.job_id, part.input_file_id, part.state = job.job_id, job.input_file_id, "submitted"
            journal.status = "submitted"
            rundir.save(journal)
            self.reporter.message(
                f"{part.id}: submitted {part.requests:,} requests as {job.job_id}"
            )

    def _poll(self, journal: Journal, rundir: RunDir, options: RunOptions) -> None:
        started = time.monotonic()
        interval = options.poll_interval
        statuses: dict[str, JobStatus] = {}
        while True:
            pending = [
                p
                for p in journal.parts
                if p.state == "submitted" and p.job_state not in _TERMINAL_RAW
            ]
            if not pending:
                return
            changed = False
            for part in pending:
                assert part.job_id is not None
                status = self._client(part.provider, journal).status(part.job_id)
                statuses[part.id] = status
                if status.terminal:
                    part.job_state = "terminal:" + status.state
                    part.job_error = status.error
                    changed = True
                elif part.job_state != status.raw_state:
                    part.job_state = status.raw_state
                    changed = True
            if changed:
                rundir.save(journal)
            elapsed = time.monotonic() - started
            self.reporter.progress(journal.run_id, journal.parts, statuses, elapsed)
            if all(p.job_state in _TERMINAL_RAW for p in pending):
                return
            if options.detach or (options.timeout is not None and elapsed >= options.timeout):
                why = "detached" if options.detach else f"--timeout {options.timeout:g}s reached"
                msg = (
                    f"{why}: run {journal.run_id} keeps running at the provider; "
                    f"pick it up with `costguard collect {journal.run_id}`"
                )
                raise RunPendingError(msg)
            self.sleep(interval)
            interval = min(interval * 1.5, max(options.poll_interval, 300.0))

    def _collect_part(
        self,
        journal: Journal,
        rundir: RunDir,
        part: Part,
        outputs: Outputs,
        collected: set[str],
    ) -> None:
        assert part.job_id is not None
        state = (part.job_state or "terminal:failed").removeprefix("terminal:")
        client = self._client(part.provider, journal)
        requests = {r.key: r for r in self._part_requests(journal, part)}
        for outcome in client.results(part.job_id, rundir.workdir(part.id)):
            request = requests.get(outcome.key)
            if request is None or outcome.key in collected:
                continue
            self._record(outputs, part, request, outcome, journal)
            collected.add(outcome.key)
        missing_status = {"expired": "expired", "cancelled": "cancelled"}.get(state, "failed")
        reason = part.job_error or f"job {state} before this request finished"
        for key, request in requests.items():
            if key not in collected:
                outcome = Outcome(key, missing_status, reason=reason)  # type: ignore[arg-type]
                self._record(outputs, part, request, outcome, journal)
                collected.add(key)
        del requests
        cost = outputs.part_cost(part.id)
        self.ledger.record_spend(journal.run_id, part.id, cost, at=self.clock())
        part.cost_usd = plain(cost)
        part.state = "collected"
        rundir.save(journal)

    def _record(
        self,
        outputs: Outputs,
        part: Part,
        request: ImageRequest,
        outcome: Outcome,
        journal: Journal,
    ) -> dict[str, Any]:
        files = (
            outputs.write_images(request.key, request.n, outcome.images) if outcome.images else []
        )
        line = {
            "key": request.key,
            "status": outcome.status,
            "files": files,
            "reason": outcome.reason,
            "tokens": outcome.usage.as_dict() if outcome.usage else None,
            "cost_usd": plain(self._cost(journal, request, outcome)),
            "model": request.model,
            "size": request.size,
            "quality": request.quality,
            "line": request.line,
            "part": part.id,
        }
        outputs.record(line)
        return line

    def _cost(self, journal: Journal, request: ImageRequest, outcome: Outcome) -> Decimal:
        """Actual cost from the response's usage, else the card's expected price for a success."""
        mode = CARD_MODE[journal.mode]  # type: ignore[index]
        model = self.book.resolve(request.model, dt.date.fromisoformat(journal.as_of)).model
        if outcome.usage is not None:
            return usage_cost(
                model, mode, outcome.usage, size=request.size, quality=request.quality
            )
        if outcome.status != "ok":
            return ZERO
        one = Totals()
        one.add_request(
            n=request.n, prompt_bytes=request.prompt_bytes, input_images=len(request.images)
        )
        cost = price(model, mode, request.size, request.quality, one)
        return cost.expected if cost is not None else ZERO

    def _sync(
        self,
        journal: Journal,
        rundir: RunDir,
        outputs: Outputs,
        collected: set[str],
        options: RunOptions,
    ) -> None:
        """Call the sync endpoints, at most `concurrency` at a time, streaming the queue."""
        part = journal.parts[0]
        lock = Lock()
        slots = BoundedSemaphore(max(1, options.concurrency) * 2)
        done = [len(collected)]

        def one(request: ImageRequest) -> None:
            try:
                outcome = self._client(request.provider, journal).generate(request)
                with lock:
                    line = self._record(outputs, part, request, outcome, journal)
                    collected.add(request.key)
                    self.ledger.record_spend(
                        journal.run_id,
                        f"sync:{request.key}",
                        Decimal(line["cost_usd"]),
                        at=self.clock(),
                    )
                    done[0] += 1
                    self.reporter.progress(
                        journal.run_id,
                        journal.parts,
                        {"sync": JobStatus("running", "sync", part.requests, done[0])},
                        0.0,
                    )
            finally:
                slots.release()

        futures: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            for request in self._reader(journal):
                if request.key in collected:
                    continue
                slots.acquire()
                futures.append(pool.submit(one, request))
                if len(futures) > 256:
                    futures = [f for f in futures if not _settled(f)]
            for future in futures:
                future.result()
        part.cost_usd = plain(outputs.part_cost(part.id))
        part.state = "collected"
        rundir.save(journal)

    # the end -------------------------------------------------------------------------------

    def _finish(self, journal: Journal, rundir: RunDir, outputs: Outputs) -> Summary:
        summary = Summary(journal.run_id, Path(journal.out), parts=journal.parts)
        summary.estimate_expected = Decimal(journal.estimate["expected_usd"])
        summary.estimate_max = Decimal(journal.estimate["max_usd"])
        if not all(p.state in ("collected", "skipped") for p in journal.parts):
            return summary
        at = dt.date.fromisoformat(journal.as_of)
        other: Mode = "standard" if journal.mode == "batch" else "batch"
        equivalent: Decimal | None = ZERO
        retry: dict[int, str] = {}
        for line in outputs.lines():
            summary.counts[line["status"]] = summary.counts.get(line["status"], 0) + 1
            per_part = summary.part_counts.setdefault(line["part"], {})
            per_part[line["status"]] = per_part.get(line["status"], 0) + 1
            if line["status"] == "refused" and not journal.options["retry_refused"]:
                summary.refused_not_retried += 1
            summary.actual += Decimal(line["cost_usd"])
            if line["status"] != "ok" and (
                line["status"] != "refused" or journal.options["retry_refused"]
            ):
                retry[int(line["line"])] = line["key"]
            tokens = line.get("tokens")
            if equivalent is not None and tokens:
                model = self.book.resolve(line["model"], at).model
                if other not in model.modes:
                    equivalent = None
                    continue
                equivalent += usage_cost(
                    model, other, Usage(**tokens), size=line["size"], quality=line["quality"]
                )
        if journal.mode == "batch":
            summary.sync_equivalent = equivalent
        else:
            summary.batch_equivalent = equivalent
        summary.retry_file, summary.retry_count = self._write_retry(journal, outputs, retry)
        if journal.status != "collected":
            self.ledger.settle(journal.run_id, status="collected", at=self.clock())
            journal.status = "collected"
            rundir.save(journal)
        return summary

    def _write_retry(
        self, journal: Journal, outputs: Outputs, retry: dict[int, str]
    ) -> tuple[Path | None, int]:
        """`retry.jsonl`: the original queue lines of the requests to run again."""
        target = outputs.out / "retry.jsonl"
        if not retry:
            target.unlink(missing_ok=True)
            return None, 0
        chunks = []
        with Path(journal.queue).open("rb") as queue:
            for number, raw in enumerate(queue, start=1):
                if number in retry:
                    line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                    chunks.append(line if line.endswith(b"\n") else line + b"\n")
        write_atomic(target, b"".join(chunks))
        return target, len(chunks)


_TERMINAL_RAW = {f"terminal:{s}" for s in ("succeeded", "failed", "cancelled", "expired")}


def _settled(future: Future[None]) -> bool:
    """Done futures are dropped from the list once their error (if any) has been raised."""
    if future.done():
        future.result()
        return True
    return False


def _group_of(request: ImageRequest) -> str:
    endpoint = "edits" if request.images and request.provider == "openai" else "generations"
    return f"{request.provider}|{request.model}|{endpoint}"


def _weight(request: ImageRequest) -> int:
    """Bytes a request adds to a job's input file (prompt, envelope, inline input images)."""
    return request.prompt_bytes + 512 + IMAGE_BYTES_GUESS * len(request.images)


def _claim_names(names: set[str], request: ImageRequest) -> None:
    stem = safe_name(request.key)
    wanted = [stem] if request.n == 1 else [f"{stem}-{i}" for i in range(1, request.n + 1)]
    for name in wanted:
        if name in names:
            msg = (
                f"line {request.line}: key {request.key!r} would write {name}.*, which another "
                "request's images also use; rename one of the keys"
            )
            raise UsageError(msg)
        names.add(name)


def _slug(model: str) -> str:
    return safe_name(model.replace("/", "-"))


EXPLAIN = {
    "expired": "expired at the provider before finishing (the 24 h window passed); what it "
    "returned was collected, the rest is in retry.jsonl",
    "cancelled": "was cancelled; what finished was collected, the rest is in retry.jsonl",
    "failed": "failed at the provider",
}


def explain(summary: Summary) -> list[str]:
    """One line per job that did not simply succeed, saying what happened and what to do."""
    lines = []
    for part in summary.parts:
        state = (part.job_state or "").removeprefix("terminal:")
        counts = summary.part_counts.get(part.id, {})
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        if state in EXPLAIN:
            why = f": {part.job_error}" if part.job_error and state == "failed" else ""
            lines.append(f"{part.id} ({part.job_id}) {EXPLAIN[state]}{why} [{shown}]")
        elif counts.keys() - {"ok"}:
            lines.append(f"{part.id} ({part.job_id or 'sync'}) finished with {shown}")
    if summary.refused_not_retried:
        lines.append(
            f"{summary.refused_not_retried:,} refused on safety grounds and left out of "
            "retry.jsonl (they would likely refuse again; --retry-refused includes them)"
        )
    return lines


def summary_json(summary: Summary) -> str:
    """The summary as JSON (money as decimal strings)."""
    return json.dumps(
        {
            "run_id": summary.run_id,
            "out": str(summary.out),
            "counts": summary.counts,
            "estimate": {
                "expected_usd": plain(summary.estimate_expected),
                "max_usd": plain(summary.estimate_max),
            },
            "actual_usd": plain(summary.actual),
            "sync_equivalent_usd": plain(summary.sync_equivalent)
            if summary.sync_equivalent is not None
            else None,
            "batch_equivalent_usd": plain(summary.batch_equivalent)
            if summary.batch_equivalent is not None
            else None,
            "retry_file": str(summary.retry_file) if summary.retry_file else None,
            "retry_count": summary.retry_count,
            "parts": [
                {
                    "id": p.id,
                    "job_id": p.job_id,
                    "state": p.state,
                    "job_state": p.job_state,
                    "cost_usd": p.cost_usd,
                }
                for p in summary.parts
            ],
        },
        indent=2,
    )
