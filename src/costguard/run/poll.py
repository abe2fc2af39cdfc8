"""Polling: ask the provider how each submitted job is doing until all have finished.

The interval grows by half each round (up to 5 minutes, or the asked interval if longer); the
progress display is told at least every `TICK_S` meanwhile. `--detach`, or `--timeout`
passing, leaves the jobs running and ends with `RunPendingError`. `refresh` asks once, for
`costguard status`.
"""

from __future__ import annotations

from collections.abc import Callable

from costguard.providers.base import JobStatus, Provider
from costguard.run.context import RunContext
from costguard.run.journal import Journal
from costguard.run.options import RunOptions, RunPendingError
from costguard.run.progress import TICK_S


def poll(ctx: RunContext, options: RunOptions) -> None:
    """Return once every submitted part's job has finished at the provider."""
    journal = ctx.journal
    started = ctx.monotonic()
    interval = options.poll_interval
    while True:
        pending = [p for p in journal.parts if p.awaiting_job]
        if not pending:
            return
        statuses = refresh(journal, ctx.client)
        ctx.progress.polled(statuses)
        elapsed = ctx.monotonic() - started
        if all(p.job_finished for p in pending):
            return
        if options.detach or (options.timeout is not None and elapsed >= options.timeout):
            why = "detached" if options.detach else f"--timeout {options.timeout:g}s reached"
            msg = (
                f"{why}: run {journal.run_id} keeps running at the provider; "
                f"pick it up with `costguard collect {journal.run_id}`"
            )
            raise RunPendingError(msg, details={"run_id": journal.run_id})
        wait(ctx, interval)
        interval = min(interval * 1.5, max(options.poll_interval, 300.0))


def wait(ctx: RunContext, seconds: float) -> None:
    """Sleep `seconds`, telling the progress display at least every `TICK_S`."""
    while True:
        step = min(seconds, TICK_S)
        ctx.sleep(step)
        seconds -= step
        if seconds <= 0:
            return
        ctx.progress.tick()


def refresh(journal: Journal, client: Callable[[str], Provider]) -> dict[str, JobStatus]:
    """Ask the provider about every job still running (by part id); the journal records the
    answers (`observe`: states and request counts)."""
    statuses: dict[str, JobStatus] = {}
    for part in journal.parts:
        if part.awaiting_job:
            assert part.job_id is not None
            statuses[part.id] = client(part.provider).status(part.job_id)
    journal.observe(statuses)
    return statuses
