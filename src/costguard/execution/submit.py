"""Submitting: create each part's job at the provider, exactly once across crashes, within the
provider's quota.

A part is journaled `submitting` before the provider is asked; a restart that finds a part in
that state looks its tag up at the provider before creating the job again.

Quotas (`run/quota.py` decides what fits): a part is submitted only while its model's enqueued
tokens in flight leave room for it and fewer parts of its model are in flight than the cap
learned from refusals. A provider that refuses a create for quota (HTTP 429, Gemini's
RESOURCE_EXHAUSTED) sends the part back to wait (`Journal.quota_refused`) and lowers the cap
to what was in flight; nothing was created, so nothing is spent and the run's reservation
stays as it is.
"""

from __future__ import annotations

from costguard.errors import ProviderError
from costguard.execution.context import RunContext
from costguard.execution.plan import part_requests
from costguard.execution.quota import Quota, cap_key

PROVIDER_NAMES = {"openai": "OpenAI", "gemini": "Gemini"}


def submit_ready(ctx: RunContext, quota: Quota) -> int:
    """Create the jobs of the parts that fit now; return how many parts still wait."""
    journal = ctx.journal
    refused: set[str] = set()  # provider|model refused this round: no second try now
    for part in journal.parts:
        if part.state not in ("planned", "submitting") or part.withdrawn:
            continue
        key = cap_key(part)
        client = ctx.client(part.provider)
        if part.state == "submitting":
            # A crash may have come after the provider created the job: look before creating.
            found = client.find_job(part.tag)
            if found is not None:
                journal.found(part, found)
                ctx.reporter.message(f"{part.id}: found job {found} at {part.provider}")
                continue
        elif key in refused or not quota.fits(part, journal):
            journal.hold(part, ctx.clock())
            continue
        limit = quota.limit(part.model, journal)
        if limit is not None and part.tokens is not None and part.tokens > limit:
            msg = (
                f"part {part.id} counts up to {part.tokens:,} enqueued tokens, more than the "
                f"{limit:,} {PROVIDER_NAMES.get(part.provider, part.provider)} allows "
                f"{part.model}, so it can never be submitted; nothing of it was sent. Cancel "
                f"this run (`costguard cancel {journal.run_id}`, then `costguard collect "
                f"{journal.run_id}` settles what ran) and run the queue again with --new-run "
                f"--max-enqueued-tokens {part.model}={limit}, which plans parts that fit"
            )
            raise ProviderError(msg, rejected=True, quota=True)
        journal.submitting(part)
        in_flight = quota.in_flight(part, journal)
        try:
            job = client.submit(
                part.model,
                part_requests(journal, ctx.book, part),
                part.tag,
                ctx.rundir.workdir(part.id),
            )
        except ProviderError as exc:
            if not exc.quota:
                raise
            refused.add(key)
            cap = max(1, len(in_flight))
            journal.quota_refused(part, ctx.clock(), cap=(key, cap))
            ctx.reporter.message(
                f"{part.id}: {part.provider} is out of quota for {part.model} ({exc}); "
                f"waiting, with at most {cap} part(s) in flight"
            )
            continue
        journal.submitted(part, job.job_id, job.input_file_id, at=ctx.clock())
        held = journal.quota_caps.get(key)
        if held is not None and len(in_flight) + 1 >= held:
            journal.raise_cap(key, held + 1)  # it held at the cap: probe one more
        ctx.reporter.message(f"{part.id}: submitted {part.requests:,} requests as {job.job_id}")
    return len(journal.unsent)
