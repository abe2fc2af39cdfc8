"""Polling: ask the provider how each submitted job is doing until all have finished.

The interval grows by half each round (up to 5 minutes, or the asked interval if longer).
`--detach`, or `--timeout` passing, leaves the jobs running and ends with `RunPendingError`.
"""

from __future__ import annotations

import time

from costguard.providers.base import JobStatus
from costguard.run.context import RunContext
from costguard.run.options import RunOptions, RunPendingError


def poll(ctx: RunContext, options: RunOptions) -> None:
    """Return once every submitted part's job has finished at the provider."""
    journal = ctx.journal
    started = time.monotonic()
    interval = options.poll_interval
    statuses: dict[str, JobStatus] = {}
    while True:
        pending = [p for p in journal.parts if p.awaiting_job]
        if not pending:
            return
        for part in pending:
            assert part.job_id is not None
            statuses[part.id] = ctx.client(part.provider).status(part.job_id)
        journal.observe({p.id: statuses[p.id] for p in pending})
        elapsed = time.monotonic() - started
        ctx.reporter.progress(journal.run_id, journal.parts, statuses, elapsed)
        if all(p.job_finished for p in pending):
            return
        if options.detach or (options.timeout is not None and elapsed >= options.timeout):
            why = "detached" if options.detach else f"--timeout {options.timeout:g}s reached"
            msg = (
                f"{why}: run {journal.run_id} keeps running at the provider; "
                f"pick it up with `costguard collect {journal.run_id}`"
            )
            raise RunPendingError(msg, details={"run_id": journal.run_id})
        ctx.sleep(interval)
        interval = min(interval * 1.5, max(options.poll_interval, 300.0))
