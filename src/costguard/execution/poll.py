"""Polling: ask the provider how each submitted job is doing (`refresh`: the scheduler's
rounds and `costguard status`), and wait between rounds telling the progress display at least
every `TICK_S` (`wait`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from costguard.execution.context import RunContext
from costguard.execution.journal import Journal
from costguard.execution.progress import TICK_S
from costguard.providers.base import JobStatus, Provider


def wait(ctx: RunContext, seconds: float) -> None:
    """Sleep `seconds`, telling the progress display at least every `TICK_S`."""
    while True:
        step = min(seconds, TICK_S)
        ctx.sleep(step)
        seconds -= step
        if seconds <= 0:
            return
        ctx.progress.tick()


def refresh(
    journal: Journal, client: Callable[[str], Provider], *, at: dt.datetime | None = None
) -> dict[str, JobStatus]:
    """Ask the provider about every job still running (by part id); the journal records the
    answers (`observe`: states and request counts; a job failed for quota sends its part back
    to wait, from `at`)."""
    statuses: dict[str, JobStatus] = {}
    for part in journal.parts:
        if part.awaiting_job:
            assert part.job_id is not None
            statuses[part.id] = client(part.provider).status(part.job_id)
    journal.observe(statuses, at)
    return statuses
