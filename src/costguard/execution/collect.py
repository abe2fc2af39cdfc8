"""Collecting: save a finished job's images by key, write its manifest lines, record its cost.

Once the part is collected, its raw files (the job's input, the provider's result files) are
deleted from the run folder, unless `--keep-raw`: the images and the manifest hold everything,
and a manifest cut short is collected again from the provider.

Every request of the part gets one manifest line: its outcome as the provider reported it, or
`expired`/`cancelled`/`failed` for a request the job ended without. A request already in the
manifest (an earlier, interrupted collection) is skipped. Each line carries the request's
actual cost: from the usage the provider reported, else the card's expected price for an image
that came back; the part's sum is recorded in the ledger once, under the part's id, together
with what each request reported using (its usage sample, for calibrated estimates; real runs
only). A run priced with a calibration also notes each request's calibrated maximum on its line.

The progress display is told as results are recorded (`RunContext.progress`: a count, at most
every `REPORT_EVERY_S`), so a collection that takes minutes shows how far it got.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from costguard.execution.context import RunContext
from costguard.execution.journal import Part
from costguard.execution.options import CARD_MODE
from costguard.execution.outputs import Outputs
from costguard.execution.plan import part_requests
from costguard.models import ImageRequest
from costguard.money import ZERO, plain
from costguard.pricing.calibration import Sample
from costguard.pricing.engine import Totals, price, usage_cost
from costguard.providers.base import Outcome


def collect_part(ctx: RunContext, part: Part, outputs: Outputs, collected: set[str]) -> None:
    """Collect a part whose job finished (or that was withdrawn before it was submitted: every
    request cancelled); `collected` holds the part's keys already in the manifest."""
    assert part.job_id is not None or part.withdrawn
    journal = ctx.journal
    state = (part.job_state or "terminal:failed").removeprefix("terminal:")
    client = ctx.client(part.provider)
    requests = {r.key: r for r in part_requests(journal, ctx.book, part)}
    earlier = {key for key in requests if key in collected}
    samples: list[Sample] = []
    ctx.progress.collecting(part)
    with Writer(ctx, outputs, part, samples) as writer:
        workdir = ctx.rundir.workdir(part.id)
        results = client.results(part.job_id, workdir, keep=ctx.keep_raw) if part.job_id else ()
        for outcome in results:
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
            ctx.progress.recorded()
    if earlier:  # collected by an interrupted collection: their samples come from the manifest
        for line in outputs.lines():
            if line["part"] == part.id and line["key"] in earlier:
                sample = sample_of(ctx, requests[line["key"]], line)
                if sample is not None:
                    samples.append(sample)
    del requests
    cost = outputs.part_cost(part.id)
    learned = samples if ctx.learns else []
    ctx.ledger.record_spend(journal.run_id, part.id, cost, at=ctx.clock(), samples=learned)
    journal.collected(part, cost)
    ctx.progress.collected(part)
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

    def __init__(
        self, ctx: RunContext, outputs: Outputs, part: Part, samples: list[Sample]
    ) -> None:
        self.ctx, self.outputs, self.part, self.samples = ctx, outputs, part, samples
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costguard-writer")
        self._pending: deque[Future[dict[str, Any]]] = deque()

    def record(self, request: ImageRequest, outcome: Outcome) -> None:
        """Queue one outcome; wait while `AHEAD` are already waiting."""
        while len(self._pending) >= self.AHEAD:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._record, request, outcome))

    def _record(self, request: ImageRequest, outcome: Outcome) -> dict[str, Any]:
        line = record(self.ctx, self.outputs, self.part, request, outcome)
        sample = sample_of(self.ctx, request, line)
        if sample is not None:
            self.samples.append(sample)
        self.ctx.progress.recorded()
        return line

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
    line: dict[str, Any] = {
        "key": request.key,
        "status": outcome.status,
        "files": files,
        "reason": outcome.reason,
        "tokens": outcome.usage.as_dict() if outcome.usage else None,
        "cost_usd": plain(actual_cost(ctx, request, outcome)),
    }
    if ctx.calibration is not None:
        line["calibrated_max_usd"] = plain(calibrated_max(ctx, request))
    line |= {
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


def calibrated_max(ctx: RunContext, request: ImageRequest) -> Decimal:
    """The request's maximum under the calibration its run was priced with."""
    mode = CARD_MODE[ctx.journal.mode]  # type: ignore[index]
    model = ctx.book.resolve(request.model, ctx.as_of).model
    one = Totals()
    one.add(request)
    cost = price(model, mode, request.size, request.quality, one, calibration=ctx.calibration)
    return cost.max if cost is not None else ZERO


def sample_of(ctx: RunContext, request: ImageRequest, line: dict[str, Any]) -> Sample | None:
    """What a recorded request reported using, for calibration; None when it reported nothing."""
    tokens = line.get("tokens")
    if not tokens:
        return None
    return Sample(
        key=request.key,
        provider=request.provider,
        model=ctx.book.resolve(request.model, ctx.as_of).model.id,
        size=request.size,
        quality=request.quality,
        status=line["status"],
        prompt_bytes=request.prompt_bytes,
        input_images=len(request.images),
        text_tokens_max=request.text_tokens_max,
        input_text_tokens=int(tokens.get("input_text_tokens", 0)),
        input_image_tokens=int(tokens.get("input_image_tokens", 0)),
        output_text_tokens=int(tokens.get("output_text_tokens", 0)),
        output_image_tokens=int(tokens.get("output_image_tokens", 0)),
    )
