"""Sync mode: call the synchronous endpoints with bounded concurrency, streaming the queue.

Each answer is recorded (image, manifest line, ledger spend under `sync:<key>` with its usage
sample) as it arrives, so a crash can repeat (and pay again for) only the calls that were in
flight.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from threading import BoundedSemaphore, Lock

from costguard.execution.collect import record, sample_of
from costguard.execution.context import RunContext
from costguard.execution.outputs import Outputs
from costguard.models import ImageRequest


def run_sync(ctx: RunContext, outputs: Outputs, collected: set[str], concurrency: int) -> None:
    """Call the sync endpoints, at most `concurrency` at a time, for every request not collected."""
    journal = ctx.journal
    part = journal.parts[0]
    lock = Lock()
    slots = BoundedSemaphore(max(1, concurrency) * 2)
    ctx.progress.collecting(part)

    def one(request: ImageRequest) -> None:
        try:
            outcome = ctx.client(request.provider).generate(request)
            with lock:
                line = record(ctx, outputs, part, request, outcome)
                collected.add(request.key)
                sample = sample_of(ctx, request, line) if ctx.learns else None
                ctx.ledger.record_spend(
                    journal.run_id,
                    f"sync:{request.key}",
                    Decimal(line["cost_usd"]),
                    at=ctx.clock(),
                    samples=[sample] if sample is not None else [],
                )
            ctx.progress.recorded()
        finally:
            slots.release()

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for request in ctx.reader():
            if request.key in collected:
                continue
            slots.acquire()
            futures.append(pool.submit(one, request))
            if len(futures) > 256:
                futures = [f for f in futures if not _settled(f)]
        for future in futures:
            future.result()
    journal.collected(part, outputs.part_cost(part.id))
    ctx.progress.collected(part)


def _settled(future: Future[None]) -> bool:
    """Done futures are dropped from the list once their error (if any) has been raised."""
    if future.done():
        future.result()
        return True
    return False
