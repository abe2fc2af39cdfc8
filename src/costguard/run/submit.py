"""Submitting: create each part's job at the provider, exactly once across crashes.

A part is journaled `submitting` before the provider is asked; a restart that finds a part in
that state looks its tag up at the provider before creating the job again.
"""

from __future__ import annotations

from costguard.run.context import RunContext
from costguard.run.plan import part_requests


def submit_all(ctx: RunContext) -> None:
    """Create the jobs of every part not yet submitted."""
    journal = ctx.journal
    for part in journal.parts:
        if part.state not in ("planned", "submitting"):
            continue
        client = ctx.client(part.provider)
        if part.state == "submitting":
            # A crash may have come after the provider created the job: look before creating.
            found = client.find_job(part.tag)
            if found is not None:
                journal.found(part, found)
                ctx.reporter.message(f"{part.id}: found job {found} at {part.provider}")
                continue
        journal.submitting(part)
        job = client.submit(
            part.model,
            part_requests(journal, ctx.book, part),
            part.tag,
            ctx.rundir.workdir(part.id),
        )
        journal.submitted(part, job.job_id, job.input_file_id)
        ctx.reporter.message(f"{part.id}: submitted {part.requests:,} requests as {job.job_id}")
