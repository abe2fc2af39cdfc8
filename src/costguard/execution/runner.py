"""One run: price -> guard -> reserve -> submit -> poll -> collect -> reconcile, resumable.

`Runner` prepares a run (prices the queue, checks `--max-usd`, plans its parts, has the ledger
admit it) and then drives its journal through the stages, one module each: `submit.py`,
`poll.py`, `collect.py` (or `sync.py`), `reconcile.py`. The journal (`journal.py`) is saved by
each of its transitions, *before* each external step, so running the same command again (or
`costguard collect RUN`) after a crash continues where the run stopped:

- a part journaled as `submitting` may or may not have reached the provider: its tag (run id
  and part) is looked up at the provider before anything is created again;
- an image already on disk is never rewritten; a request already in the manifest is skipped;
- each part's actual cost is recorded in the ledger once, under the part's id.

Batch mode makes one provider job per provider, model and endpoint, split at the providers'
limits (`plan.py`). Sync mode calls the synchronous endpoints with bounded concurrency; a crash
there can repeat (and pay again for) only the calls that were in flight.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from costguard.errors import (
    BudgetExceededError,
    LedgerError,
    OutputError,
    ProviderError,
    UsageError,
)
from costguard.execution.collect import collect_part
from costguard.execution.context import Clients, ProviderFactory, RunContext
from costguard.execution.journal import Journal, JournalError
from costguard.execution.options import CARD_MODE, RunOptions, file_sha256, run_id_for
from costguard.execution.outputs import Outputs
from costguard.execution.plan import plan
from costguard.execution.progress import Reporter
from costguard.execution.reconcile import Summary, finish
from costguard.execution.rundir import RunBusyError, RunDir
from costguard.execution.schedule import run_jobs
from costguard.execution.sync import run_sync
from costguard.ledger import Ledger
from costguard.money import plain, usd, usd_together
from costguard.pricing.budget import check
from costguard.pricing.engine import RateBook
from costguard.pricing.schema import Mode
from costguard.queue.estimate import QueueEstimate, price_queue


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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home
        self.ledger = ledger
        self.book = book
        self.clients = Clients(providers)
        self.reporter = reporter
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic

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
        rundir.require()
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
            journal.relocate(
                queue=str(here) if queue is not None else None,
                out=str(out.resolve()) if out is not None else None,
            )
            return self._drive(journal, rundir, options)
        finally:
            rundir.unlock()

    def cancel(self, run_id: str) -> tuple[list[str], list[str]]:
        """Ask the provider to cancel every unfinished job of a run, and withdraw the parts not
        yet submitted (waiting for quota) so nothing more is ever sent for it: (jobs asked to
        cancel, parts withdrawn).

        Raises:
            RunBusyError: parts wait to be submitted by the process driving the run (its lock
                is held): that process would submit them; stop it and cancel again.
        """
        rundir = self.run_dir(run_id)
        journal = rundir.load()
        cancelled = []
        for part in journal.parts:
            if part.job_id and part.awaiting_job:
                self.clients.get(part.provider, Path(journal.queue).parent).cancel(part.job_id)
                cancelled.append(part.job_id)
        waiting = [p for p in journal.parts if p.state in ("planned", "submitting")]
        if not waiting or journal.mode == "sync" or journal.status == "planned":
            return cancelled, []
        try:
            rundir.lock()
        except RunBusyError as exc:
            asked = f"asked the provider to cancel {', '.join(cancelled)}; " if cancelled else ""
            msg = (
                f"{asked}{len(waiting)} part(s) not yet submitted are left to the process "
                f"driving run {run_id}, which would submit them ({exc}): stop it (Ctrl-C), "
                "then cancel again"
            )
            raise RunBusyError(msg) from None
        try:
            journal = rundir.load()  # as it is now that nobody else drives it
            withdrawn = []
            for part in journal.parts:
                client = self.clients.get(part.provider, Path(journal.queue).parent)
                if part.state == "submitting" and (found := client.find_job(part.tag)):
                    journal.found(part, found)  # created before a crash: cancel it
                    client.cancel(found)
                    cancelled.append(found)
                elif part.state in ("planned", "submitting") and not part.withdrawn:
                    journal.withdraw(part, self.clock())
                    withdrawn.append(part.id)
            return cancelled, withdrawn
        finally:
            rundir.unlock()

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
            options.queue,
            self.book,
            at,
            defaults=options.defaults,
            fmt=options.fmt,
            calibration=options.calibration,
        )
        card_mode = CARD_MODE[options.mode]
        total = queue.estimate.total(card_mode)
        if total is None:
            missing = [g.model for g in queue.estimate.groups if g.cost[card_mode] is None]
            msg = f"{', '.join(sorted(set(missing)))} has no {options.mode} tier; use --mode sync"
            raise UsageError(msg)
        for warning in queue.warnings:
            self.reporter.message(f"warning: {warning}")
        if queue.estimate.assumption_line:
            self.reporter.message(queue.estimate.assumption_line)
        providers = (g.provider for g in queue.estimate.groups)
        self.clients.open(providers, options.queue.resolve().parent)
        if not rundir.exists:
            journal = self._new_journal(options, run_id, queue, at, total.expected, total.max)
            outputs = Outputs(Path(journal.out))
            outputs.check(f"{journal.run_id} {journal.created}")
            stems = plan(journal, self.book, queue.estimate.requests)  # may refuse: before saving
            outputs.check_free(stems)
            decision = check(total.max, options.max_usd)
            if not decision.fits:
                needed, limit, short = usd_together(
                    total.max, options.max_usd, decision.shortfall, given=[options.max_usd]
                )
                self._refuse(
                    rundir,
                    run_id,
                    f"the {options.mode} maximum {needed} passes --max-usd {limit} by {short}",
                    {
                        "refused_by": "max_usd",
                        "max_usd": plain(options.max_usd),
                        "mode": options.mode,
                        "needed_usd": plain(total.max),
                        "shortfall_usd": plain(decision.shortfall),
                    },
                )
            rundir.save(journal)
        else:
            journal = rundir.load()
            if journal.status == "collected":
                self.reporter.message(
                    f"run {run_id} is already complete; nothing was sent (to send the same "
                    "queue again as a new run, add --new-run)"
                )
            else:
                self.reporter.message(f"resuming run {run_id} ({journal.status})")
        if journal.status == "planned":
            if not journal.parts:
                plan(journal, self.book, queue.estimate.requests)
            self._admit(journal, options, rundir)
        return journal

    def _admit(self, journal: Journal, options: RunOptions, rundir: RunDir) -> None:
        """Have the ledger reserve the run's maximum; refused, the run leaves no journal."""
        run_id = journal.run_id
        try:
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
                    "simulate": options.simulate,
                },
                require_budget=options.budget_required,
                rehearsal=options.simulate is not None,
            )
        except LedgerError:
            rundir.forget()  # nothing was reserved: leave no half-started run behind
            raise
        if not admission.admitted:
            self._refuse(
                rundir,
                run_id,
                admission.reason or "the ledger budget is spent",
                {
                    "refused_by": "ledger",
                    "name": admission.budget,
                    "max_usd": plain(options.max_usd),
                    "mode": journal.mode,
                    "needed_usd": plain(admission.needed),
                    "remaining_usd": None
                    if admission.remaining is None
                    else plain(admission.remaining),
                    "shortfall_usd": plain(admission.shortfall),
                },
            )
        journal.admit(admission.reason, self.ledger.identity)
        if options.nonce is not None or options.retry_of is not None:  # a run id no one typed
            self.reporter.message(
                f"new run {run_id}: `costguard collect {run_id}` picks it up later"
            )

    def _recover(self, journal: Journal, outputs: Outputs) -> None:
        """Collect again what the manifest lost: a collected part with fewer lines than requests.

        The manifest is never silently shorter than what was paid for: a batch part is fetched
        again from its finished job; a sync run's lost results cannot be, so it is refused.
        """
        for part in journal.parts:
            missing = part.requests - outputs.per_part.get(part.id, 0)
            if part.state != "collected" or missing <= 0:
                continue
            if part.endpoint == "sync":
                msg = (
                    f"{outputs.manifest_path}: {missing:,} result(s) of run {journal.run_id} are "
                    "missing (the file was cut short or edited); sync calls were paid for and "
                    "cannot be fetched again: restore manifest.jsonl from a backup (nothing was "
                    "sent)"
                )
                raise JournalError(msg)
            self.reporter.message(
                f"{part.id}: manifest.jsonl lacks {missing:,} of its {part.requests:,} results; "
                "collecting them again from the finished job"
            )
            journal.reopen(part)

    def _refuse(self, rundir: RunDir, run_id: str, why: str, budget: dict[str, object]) -> None:
        """Forget the run and raise exit 3; `budget`: the decision, for JSON error objects."""
        rundir.forget()
        msg = f"over budget: {why}; nothing was sent (run {run_id})"
        raise BudgetExceededError(msg, details={"run_id": run_id, "budget": budget})

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
        if queue.calibration is not None:
            self.reporter.message(queue.calibration.summary())
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
                "retry_of": options.retry_of,
                "max_requests_per_part": options.max_requests_per_part,
                "max_enqueued_tokens": dict(options.max_enqueued_tokens),
            },
            estimate={
                "requests": queue.estimate.requests,
                "images": queue.estimate.images,
                "expected_usd": plain(expected),
                "max_usd": plain(maximum),
                "groups": _group_entries(queue, CARD_MODE[options.mode]),
                **_calibration_entry(queue),
            },
            rate_cards=queue.estimate.rate_cards,
            simulate=options.simulate,
        )

    # driving -------------------------------------------------------------------------------

    def _drive(self, journal: Journal, rundir: RunDir, options: RunOptions) -> Summary:
        if journal.ledger is not None and journal.ledger != self.ledger.identity:
            msg = (
                f"ledger {self.ledger.location} is not the ledger run {journal.run_id} was "
                f"admitted in (identity {self.ledger.identity}, not {journal.ledger}); give "
                "that ledger (--ledger or COSTGUARD_LEDGER_URL) so its spend is recorded there"
            )
            raise LedgerError(msg)
        ctx = RunContext(
            journal,
            rundir,
            self.book,
            self.ledger,
            self.clients,
            self.reporter,
            self.clock,
            self.sleep,
            keep_raw=options.keep_raw,
            monotonic=self.monotonic,
        )
        outputs = Outputs(Path(journal.out))
        failing = True
        try:
            outputs.open(f"{journal.run_id} {journal.created}")
            ctx.progress.begin(outputs)
            self._recover(journal, outputs)
            if journal.mode == "sync":
                run_sync(ctx, outputs, outputs.keys("sync"), options.concurrency)
            else:
                run_jobs(ctx, options)
                for part in journal.parts:
                    if (part.state == "submitted" and part.job_finished) or part.withdrawn:
                        collect_part(ctx, part, outputs, outputs.keys(part.id))
            summary = finish(ctx, outputs)
        except ProviderError as exc:
            raise self._after_provider_error(journal, outputs, exc) from exc
        except OutputError as exc:
            sent = any(p.job_id for p in journal.parts) or journal.mode == "sync"
            where = "what was paid for stays at the provider" if sent else "nothing was sent yet"
            msg = (
                f"{exc}; {where}: fix the folder, then run the same command again (or "
                f"`costguard collect {journal.run_id}`)"
            )
            raise OutputError(msg) from exc
        else:
            failing = False
            return summary
        finally:
            try:
                outputs.close()
            except OutputError:
                if not failing:  # else the error on its way out already names the folder
                    raise
            self.reporter.done()

    def _after_provider_error(
        self, journal: Journal, outputs: Outputs, exc: ProviderError
    ) -> ProviderError:
        """Release the reservation when the provider accepted nothing; say what happened."""
        if exc.quota and exc.rejected:  # a part larger than the quota: the message says it all
            return exc
        accepted = [p for p in journal.parts if p.job_id]
        recorded = next(iter(outputs.lines()), None) is not None
        if exc.rejected and not accepted and not recorded and journal.status == "admitted":
            maximum = journal.estimate["max_usd"]
            self.ledger.release(journal.run_id, at=self.clock(), reason=f"nothing accepted: {exc}")
            journal.release()
            msg = (
                f"{exc}; the provider accepted nothing, so the {usd(Decimal(maximum))} reserved "
                f"for run {journal.run_id} was released: fix the cause and run the same command "
                "again"
            )
            return ProviderError(msg, rejected=True)
        held = (
            f"{len(accepted)} job(s) the provider accepted keep running and keep their reservation"
            if accepted
            else "the reservation stays (the provider may have accepted part of it)"
        )
        msg = (
            f"{exc}; {held}: fix the cause and run the same command again, which resumes "
            f"(or `costguard cancel {journal.run_id}`)"
        )
        return ProviderError(msg, rejected=exc.rejected)


def _group_entries(queue: QueueEstimate, mode: Mode) -> list[dict[str, object]]:
    """The journal's record of the estimate per model, size and quality (what the report sets
    each group's actual cost against)."""
    entries: list[dict[str, object]] = []
    for group in queue.estimate.groups:
        cost = group.cost.get(mode)
        entries.append(
            {
                "provider": group.provider,
                "model": group.model,
                "size": group.size,
                "quality": group.quality,
                "card": group.card_id,
                "requests": group.totals.requests,
                "images": group.totals.images,
                "expected_usd": None if cost is None else plain(cost.expected),
                "max_usd": None if cost is None else plain(cost.max),
            }
        )
    return entries


def _calibration_entry(queue: QueueEstimate) -> dict[str, object]:
    """The journal's record of a calibrated estimate: what it showed, and what prices it."""
    shown = queue.calibration_json()
    if shown is None or queue.calibration is None:
        return {}
    return {"calibration": {**shown, **queue.calibration.to_json()}}
