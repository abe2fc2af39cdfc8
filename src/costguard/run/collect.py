"""Collecting: save a finished job's images by key, write its manifest lines, record its cost.

Once the part is collected, its raw files (the job's input, the provider's result files) are
deleted from the run folder, unless `--keep-raw`: the images and the manifest hold everything,
and a manifest cut short is collected again from the provider.

Every request of the part gets one manifest line: its outcome as the provider reported it, or
`expired`/`cancelled`/`failed` for a request the job ended without. A request already in the
manifest (an earlier, interrupted collection) is skipped. Each line carries the request's
actual cost: from the usage the provider reported, else the card's expected price for an image
that came back; the part's sum is recorded in the ledger once, under the part's id.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from costguard.models import ImageRequest
from costguard.money import ZERO, plain
from costguard.pricing.engine import Totals, price, usage_cost
from costguard.providers.base import Outcome
from costguard.run.context import RunContext
from costguard.run.journal import Part
from costguard.run.options import CARD_MODE
from costguard.run.outputs import Outputs
from costguard.run.plan import part_requests


def collect_part(ctx: RunContext, part: Part, outputs: Outputs, collected: set[str]) -> None:
    """Collect a part whose job finished; `collected` holds the keys already in the manifest."""
    assert part.job_id is not None
    journal = ctx.journal
    state = (part.job_state or "terminal:failed").removeprefix("terminal:")
    client = ctx.client(part.provider)
    requests = {r.key: r for r in part_requests(journal, ctx.book, part)}
    with Writer(ctx, outputs, part) as writer:
        workdir = ctx.rundir.workdir(part.id)
        for outcome in client.results(part.job_id, workdir, keep=ctx.keep_raw):
            request = requests.get(outcome.key)
            if request is None or outcome.key in collected:
                continue
            writer.record(request, outcome)
            collected.add(outcome.key)
    missing_status = {"expired": "expired", "cancelled": "cancelled"}.get(state, "failed")
    reason = part.job_error or f"job {state} before this request finished"
    for key, request in requests.items():
        if key not in collected:
            outcome = Outcome(key, missing_status, reason=reason)  # type: ignore[arg-type]
            record(ctx, outputs, part, request, outcome)
            collected.add(key)
    del requests
    cost = outputs.part_cost(part.id)
    ctx.ledger.record_spend(journal.run_id, part.id, cost, at=ctx.clock())
    journal.collected(part, cost)
    if not ctx.keep_raw:
        ctx.rundir.discard_work(part.id)


class Writer:
    """Records outcomes in a thread of its own, one at a time and in order, while the caller
    parses the next ones: writing and fsyncing an image waits on the disk without holding the
    GIL, so it overlaps the parsing and decoding of the next (which holds it).

    At most `AHEAD` outcomes wait (their images in memory); an error writing one is raised by
    the next `record` or on leaving the block, after the writes already started have ended.
    """

    AHEAD = 2

    def __init__(self, ctx: RunContext, outputs: Outputs, part: Part) -> None:
        self.ctx, self.outputs, self.part = ctx, outputs, part
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costguard-writer")
        self._pending: deque[Future[dict[str, Any]]] = deque()

    def record(self, request: ImageRequest, outcome: Outcome) -> None:
        """Queue one outcome; wait while `AHEAD` are already waiting."""
        while len(self._pending) >= self.AHEAD:
            self._pending.popleft().result()
        self._pending.append(
            self._pool.submit(record, self.ctx, self.outputs, self.part, request, outcome)
        )

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if kind is None:
                    future.result()
                else:  # the error on its way out wins; the writes it interrupted end first
                    future.exception()
        finally:
            self._pool.shutdown(wait=True)


def record(
    ctx: RunContext, outputs: Outputs, part: Part, request: ImageRequest, outcome: Outcome
) -> dict[str, Any]:
    """Save one request's images and append its manifest line; returns the line."""
    files = outputs.write_images(request.key, request.n, outcome.images) if outcome.images else []
    line = {
        "key": request.key,
        "status": outcome.status,
        "files": files,
        "reason": outcome.reason,
        "tokens": outcome.usage.as_dict() if outcome.usage else None,
        "cost_usd": plain(actual_cost(ctx, request, outcome)),
        "model": request.model,
        "size": request.size,
        "quality": request.quality,
        "line": request.line,
        "part": part.id,
    }
    outputs.record(line)
    return line


def actual_cost(ctx: RunContext, request: ImageRequest, outcome: Outcome) -> Decimal:
    """Actual cost from the response's usage, else the card's expected price for a success."""
    mode = CARD_MODE[ctx.journal.mode]  # type: ignore[index]
    model = ctx.book.resolve(request.model, ctx.as_of).model
    if outcome.usage is not None:
        return usage_cost(model, mode, outcome.usage, size=request.size, quality=request.quality)
    if outcome.status != "ok":
        return ZERO
    one = Totals()
    one.add(request)
    cost = price(model, mode, request.size, request.quality, one)
    return cost.expected if cost is not None else ZERO
