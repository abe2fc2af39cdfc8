"""Driving a batch run's jobs: submit what the quota lets in, poll, submit more as jobs finish.

Each round submits the parts that fit (`submit.submit_ready`), then asks the provider about the
jobs in flight (`poll.refresh`); a job the provider failed for quota sends its part back to
wait. It returns once no part waits and every job has finished. The interval between rounds
grows by half (up to 5 minutes, or the asked interval if longer) and starts again from the
asked interval when a job finishes while parts wait, so they go out soon after room is made.
`--detach`, or `--timeout` passing, leaves the run as it is (jobs running, parts waiting) and
ends with `RunPendingError`: `costguard collect RUN` carries on.
"""

from __future__ import annotations

from costguard.execution.context import RunContext
from costguard.execution.options import RunOptions, RunPendingError
from costguard.execution.poll import refresh, wait
from costguard.execution.quota import Quota
from costguard.execution.submit import submit_ready


def run_jobs(ctx: RunContext, options: RunOptions) -> None:
    """Return once every part's job has finished at the provider (none left waiting)."""
    journal = ctx.journal
    quota = Quota(options.max_enqueued_tokens)
    started = ctx.monotonic()
    interval = options.poll_interval
    while True:
        waiting = submit_ready(ctx, quota)
        pending = [p for p in journal.parts if p.awaiting_job]
        if not pending and not waiting:
            return
        finished_before = sum(1 for p in journal.parts if p.job_finished)
        if pending:
            statuses = refresh(journal, ctx.client, at=ctx.clock())
            ctx.progress.polled(statuses)
            if all(p.job_finished for p in pending) and not journal.unsent:
                return
        else:
            ctx.progress.report(force=True)
        if options.detach or (
            options.timeout is not None and ctx.monotonic() - started >= options.timeout
        ):
            why = "detached" if options.detach else f"--timeout {options.timeout:g}s reached"
            left = len(journal.unsent)
            waits = (
                f"; {left} part(s) wait for the provider's quota and are submitted only while "
                f"costguard drives the run (`costguard collect {journal.run_id}`)"
                if left
                else ""
            )
            msg = (
                f"{why}: run {journal.run_id} keeps running at the provider{waits}; "
                f"pick it up with `costguard collect {journal.run_id}`"
            )
            raise RunPendingError(msg, details={"run_id": journal.run_id})
        made_room = sum(1 for p in journal.parts if p.job_finished) > finished_before
        if made_room and journal.unsent:
            interval = options.poll_interval  # the waiting parts go out soon
        wait(ctx, interval)
        interval = min(interval * 1.5, max(options.poll_interval, 300.0))
