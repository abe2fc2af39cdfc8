"""When a batch job the gateway admitted is over, and what it cost.

A batch object (OpenAI) or batch operation (Gemini) seen terminal gives a `Verdict`: the
status to close the run with, the actual cost when the object carries what it takes, and the
estimate to settle at if nothing better passes through within the grace period.

The rules:
- OpenAI: the batch object carries `usage` (all tokens the batch used): actual = those tokens
  at the batch rates of the job's model. Without usage (a batch that never started), nothing
  was spent when nothing completed, else the estimate below.
- Gemini inline: the finished operation carries every response with its `usageMetadata`:
  actual = the sum of their usage at batch rates.
- Gemini from a file: the operation carries only counts, so the actual cost comes from the
  results file if it is downloaded through the gateway within the grace period; otherwise the
  estimate: the run's maximum times successful / all requests, marked unreconciled.
- Expired, cancelled or failed jobs are settled the same way (what completed was billed;
  the rest of the reservation is released). An expired Gemini job has no results: 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from costguard.models import Usage
from costguard.money import ZERO
from costguard.pricing.engine import RateBook, usage_cost
from costguard.providers import gemini as gemini_wire
from costguard.providers import openai as openai_wire

__all__ = ["Facts", "Verdict", "gemini_verdict", "openai_verdict", "results_cost"]

OPENAI_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_GEMINI_STATES = {"SUCCEEDED": "completed", "FAILED": "failed", "CANCELLED": "cancelled"}
_GEMINI_STATES["EXPIRED"] = "expired"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the ledger run says about the job (its meta), enough to price its usage."""

    maximum: Decimal
    model: str | None
    """The job's model when it has one (None: several)."""
    size: str
    quality: str | None
    requests: int
    input_images: int

    @classmethod
    def of(cls, estimate: Decimal, meta: dict[str, Any]) -> Facts:
        """From a run's estimate and meta."""
        models = meta.get("models") or []
        return cls(
            maximum=estimate,
            model=models[0] if len(models) == 1 else None,
            size=str(meta.get("size") or ""),
            quality=meta.get("quality"),
            requests=int(meta.get("requests") or 0),
            input_images=int(meta.get("input_images") or 0),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A terminal job: how to close its run."""

    status: str
    actual: Decimal | None
    """The actual cost, when it can be read now."""
    fallback: Decimal
    """What to settle at (unreconciled) if no actual cost arrives within the grace period."""
    how: str


def _usage_cost(book: RateBook, at: dt.date, facts: Facts, usage: Usage) -> Decimal | None:
    if facts.model is None:
        return None
    model = book.resolve(facts.model, at).model
    return usage_cost(model, "batch", usage, size=facts.size, quality=facts.quality)


def _share(facts: Facts, done: int) -> Decimal:
    if facts.requests <= 0:
        return facts.maximum
    return facts.maximum * min(done, facts.requests) / facts.requests


def openai_verdict(
    batch: dict[str, Any], facts: Facts, book: RateBook, at: dt.date
) -> Verdict | None:
    """The verdict on an OpenAI batch object, or None while it is not terminal."""
    status = str(batch.get("status") or "")
    if status not in OPENAI_TERMINAL:
        return None
    counts = batch.get("request_counts") or {}
    completed = int(counts.get("completed") or 0)
    fallback = _share(facts, completed)
    raw = batch.get("usage")
    if isinstance(raw, dict):
        inp = int(raw.get("input_tokens") or 0)
        out = int(raw.get("output_tokens") or 0)
        details = raw.get("input_tokens_details") or {}
        image_in = (
            int(details["image_tokens"])
            if "image_tokens" in details
            else (inp if facts.input_images else 0)
        )
        usage = Usage(
            input_text_tokens=inp - image_in,
            input_image_tokens=image_in,
            output_image_tokens=out,
            images=completed,
        )
        actual = _usage_cost(book, at, facts, usage)
        if actual is not None:
            return Verdict(status, actual, fallback, "batch object usage")
    if completed == 0:
        return Verdict(status, ZERO, ZERO, "no request completed")
    return Verdict(status, None, fallback, "maximum x completed/total (no usage)")


def gemini_state(operation: dict[str, Any]) -> str | None:
    """`completed`/`failed`/`cancelled`/`expired` for a terminal Gemini batch, else None."""
    meta = operation.get("metadata") or {}
    raw = str(meta.get("state") or operation.get("state") or "")
    return (
        _GEMINI_STATES.get(raw.rsplit("_", 1)[-1]) if raw.endswith(tuple(_GEMINI_STATES)) else None
    )


def gemini_verdict(
    operation: dict[str, Any], facts: Facts, book: RateBook, at: dt.date
) -> Verdict | None:
    """The verdict on a Gemini batch operation, or None while it is not terminal."""
    status = gemini_state(operation)
    if status is None:
        return None
    meta = operation.get("metadata") or {}
    stats = meta.get("batchStats") or {}
    done = int(stats.get("successfulRequestCount") or 0)
    fallback = _share(facts, done)
    output = meta.get("output") or operation.get("response") or {}
    inlined = output.get("inlinedResponses")
    if isinstance(inlined, dict):
        inlined = inlined.get("inlinedResponses")
    if isinstance(inlined, list):
        total = ZERO
        for number, item in enumerate(inlined):
            if not isinstance(item, dict) or not isinstance(item.get("response"), dict):
                continue
            outcome = gemini_wire.parse_response(str(number), item["response"])
            cost = None if outcome.usage is None else _usage_cost(book, at, facts, outcome.usage)
            total += cost if cost is not None else _share(facts, 1)
        return Verdict(status, total, fallback, "inline responses' usage")
    if status == "expired" or done == 0:
        return Verdict(status, ZERO, ZERO, "no request succeeded")
    return Verdict(status, None, fallback, "maximum x successful/total (counts only)")


def results_cost(
    provider: str, lines: list[dict[str, Any]], facts: Facts, book: RateBook, at: dt.date
) -> Decimal | None:
    """The actual cost of a job from its result file's lines (None: it cannot be priced)."""
    total = ZERO
    for line in lines:
        outcome = (
            openai_wire.parse_line(line)
            if provider == "openai"
            else gemini_wire.parse_file_line(line)
        )
        if outcome.usage is None:
            if outcome.status == "ok":
                return None
            continue
        cost = _usage_cost(book, at, facts, outcome.usage)
        if cost is None:
            return None
        total += cost
    return total
