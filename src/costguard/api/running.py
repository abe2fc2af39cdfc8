"""`costguard.run()`: the whole cycle of `costguard run` in-process (price, check `max_usd` and
the budget, admit, create, poll, collect, reconcile, report), for a pipeline that wants it
from code. The same runner, journal and ledger as the CLI: a run started here resumes from
the CLI (`costguard collect RUN`) and the other way round.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from costguard.api.estimating import Mode, QueueFormat
from costguard.api.requests import Requests, as_queue
from costguard.api.values import as_date, as_usd
from costguard.errors import UsageError

if TYPE_CHECKING:
    from decimal import Decimal

    from costguard.api.requests import Queue
    from costguard.execution.reconcile import Summary

SUCCEEDED = "succeeded"
"""The scenario `simulate=True` rehearses: every job succeeds."""
log = logging.getLogger("costguard")


def run(
    queue: Requests,
    *,
    max_usd: Decimal | int | str,
    mode: Mode = "batch",
    budget: str | None = None,
    owner: str | None = None,
    ledger: str | Path | None = None,
    out: str | Path | None = None,
    simulate: bool | str | Path = False,
    model: str | None = None,
    size: str | None = None,
    quality: str | None = None,
    aspect_ratio: str | None = None,
    queue_format: QueueFormat | None = None,
    as_of: dt.date | str | None = None,
    poll_interval: float | None = None,
    timeout: float | None = None,
    concurrency: int = 4,
    max_requests_per_part: int | None = None,
    max_enqueued_tokens: Mapping[str, int] | None = None,
    retry_refused: bool = False,
    keep_raw: bool = False,
    new_run: bool = False,
    report: bool = True,
    pricing: Sequence[str | Path] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Summary:
    """Send a queue under a budget, wait for it, and collect every image: `costguard run`.

    Nothing is sent unless the queue's maximum fits `max_usd` and the budget; a crash or
    Ctrl-C is resumed by calling `run` again with the same queue and options (the same run
    id), without paying twice.

    Args:
        queue: A queue file's path, or requests (`ImageRequest`s or dicts in a queue format);
            in-memory requests are kept as a queue file in costguard's home, named by their
            content, so the same requests resume the same run.
        max_usd: Refuse to send anything whose maximum passes this.
        mode: `batch` (half price, asynchronous) or `sync` (one call each, full price).
        budget: Ledger budget to charge (default: `COSTGUARD_BUDGET`, else `default`). A
            budget named here or in the setting must be set; only an unset `default` leaves
            `max_usd` alone to cap the run.
        owner: Who the spend is shown under (default: `COSTGUARD_OWNER`, else the user).
        ledger: Ledger file or `postgresql://` URL (default: as the CLI).
        out: Output folder (default: `costguard-out/<run id>`).
        simulate: Rehearse on the in-process simulator: True for the `succeeded` scenario, or
            a scenario name or YAML file. A rehearsal never counts as real spend.
        model, size, quality, aspect_ratio: For requests that leave them out (as `run
            --model`: `COSTGUARD_DEFAULT_MODEL` is not applied, so a run started here and
            one started from the CLI with the same options are the same run).
        queue_format: Read every request in this format instead of detecting it.
        as_of: Price with the cards in force on this date (default: today).
        poll_interval: Seconds between polls, growing 1.5x per poll (default 30; 0.5
            simulated).
        timeout: Stop waiting after this many seconds (`RunPendingError`; jobs keep running
            and `run` again, or `costguard collect RUN`, picks them up).
        concurrency: Parallel calls in sync mode.
        max_requests_per_part: Split batch jobs at this many requests.
        max_enqueued_tokens: The provider's batch quota per model, `{model: tokens}`: parts are
            sized to fit and sent as earlier ones finish.
        retry_refused: Also write refused requests to `retry.jsonl`.
        keep_raw: Keep each job's raw files after collecting it.
        new_run: Start a new run even if this queue ran before with these options.
        report: Write `report.html` in the output folder (`Summary.report`).
        pricing: Extra rate-card folders.
        on_message: Receives the run's messages (default: logged on the `costguard` logger).

    Returns:
        The run's `Summary`: counts by status, estimate, actual cost, output folder,
        `retry.jsonl`, report.

    Raises:
        BudgetExceededError: The maximum does not fit `max_usd` or the budget; nothing sent.
        QueueError: Requests are invalid; nothing sent.
        RunPendingError: `timeout` passed with jobs still running at the provider.
        LedgerError: A budget named is not set, or the ledger cannot be used.
        UsageError: An option is invalid, a provider's API key is missing, or `run` is called
            inside a `costguard.simulate()` block without `simulate=` (its calls would reach
            that simulator while charging the real budget).
    """
    from costguard.api import setup
    from costguard.execution.options import QuietReporter, run_id_for
    from costguard.queue.reader import Defaults
    from costguard.resources import home_dir

    scenario = _scenario(simulate)
    if scenario is None and setup.simulator_active():
        msg = (
            "costguard.run() inside a costguard.simulate() block would send to that simulator "
            "while charging the real budget: pass simulate=True (or a scenario) instead"
        )
        raise UsageError(msg)
    if mode not in ("batch", "sync"):
        raise UsageError(f"mode: {mode!r} is not a mode; use 'batch' or 'sync'")
    if concurrency < 1:
        raise UsageError(f"concurrency: {concurrency!r} is not 1 or more")
    for name, tokens in (max_enqueued_tokens or {}).items():
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise UsageError(f"max_enqueued_tokens: {name}={tokens!r} is not 1 token or more")
    home = home_dir()
    options = setup.run_options(
        _queue_file(as_queue(queue), home),
        max_usd=as_usd(max_usd, "max_usd"),
        mode=mode,
        defaults=Defaults(model, size, quality, aspect_ratio),
        fmt=queue_format,
        as_of=as_date(as_of) if as_of is not None else None,
        out=Path(out) if out is not None else None,
        scenario=scenario,
        poll_interval=poll_interval,
        timeout=timeout,
        retry_refused=retry_refused,
        budget=budget,
        owner=owner,
        concurrency=concurrency,
        max_requests_per_part=max_requests_per_part,
        max_enqueued_tokens=max_enqueued_tokens or {},
        keep_raw=keep_raw,
        new_run=new_run,
    )
    run_id = run_id_for(options)
    note = on_message or log.info
    runner = setup.make_runner(
        [Path(p) for p in pricing or ()],
        ledger,
        QuietReporter(note),
        simulated=scenario is not None,
        home=home,
    )
    with runner.ledger:
        with setup.simulated(scenario, runner.run_dir(run_id).simulator_state):
            summary = runner.start(options, run_id)
        if report:
            journal = runner.run_dir(run_id).load()
            summary.report = setup.write_report(journal, runner.book, runner.ledger, note=note)
    return summary


def _scenario(simulate: bool | str | Path) -> str | None:
    if simulate is True:
        return SUCCEEDED
    if simulate is False or simulate is None:
        return None
    text = str(simulate).strip()
    if not text:
        raise UsageError("simulate: give True, a scenario name or a scenario YAML file")
    return text


def _queue_file(queue: Queue, home: Path) -> Path:
    """A file's own path; in-memory requests written (once) to `<home>/queues/<sha>.jsonl`."""
    if queue.lines is None:
        return queue.path
    from costguard.execution.files import write_atomic

    path = home / "queues" / f"{queue.digest[:16]}.jsonl"
    if not path.is_file():
        write_atomic(path, queue.lines)
    return path
