"""Read a queue and price it: the shared first step of `estimate` and `run`.

Also works out, when a queue does not fit a budget, what would: how many of the first
requests, the same queue at each model's cheapest size and quality, or on another model; and
what a change to a queue adds or saves, group by group (`estimate --diff-base`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from costguard.models import ImageRequest
from costguard.pricing.budget import Decision, check
from costguard.pricing.calibration import ASSUMED, Calibration, Fact
from costguard.pricing.engine import (
    Estimate,
    Group,
    GroupKey,
    RateBook,
    Totals,
    estimate,
    has_mode,
    image_unit_price,
    price,
)
from costguard.pricing.schema import Mode
from costguard.pricing.sizes import smaller_sizes
from costguard.queue.reader import NO_DEFAULTS, Defaults, Format, QueueReader


@dataclass(slots=True)
class QueueEstimate:
    """A priced queue with what was needed to price it."""

    path: Path
    format: Format
    grouped: dict[GroupKey, Totals]
    estimate: Estimate
    warnings: list[str]
    calibration: Calibration | None = None
    """The calibration the queue was priced with (`estimate --calibrated`), if any."""
    facts: list[Fact] = field(default_factory=list)
    """The calibrated figures its prices use (empty: every figure is the card's)."""
    streamed: bool = False
    """Read from a stream (stdin), which cannot be read again."""
    first_fit: tuple[int, Decimal] | None = None
    """How many of the first requests fit the budget `price_queue` was given, and their
    maximum cost (worked out while reading a stream; a file is read again by `advise`)."""

    def calibration_json(self) -> dict[str, Any] | None:
        """`{requests, since, facts}` of a calibrated estimate; None when not calibrated."""
        if self.calibration is None:
            return None
        return {
            "requests": self.calibration.requests,
            "since": None if self.calibration.since is None else str(self.calibration.since),
            "facts": [fact.as_json() for fact in self.facts],
        }


def price_queue(
    path: Path,
    book: RateBook,
    at: dt.date,
    *,
    defaults: Defaults = NO_DEFAULTS,
    fmt: Format | None = None,
    calibration: Calibration | None = None,
    stream: IO[bytes] | None = None,
    budget: tuple[Mode, Decimal] | None = None,
) -> QueueEstimate:
    """Stream the queue, group its requests, and price them; raise `QueueError` on bad lines.

    With `calibration`, allowances learned from real runs replace the card's where it has them.
    With `stream` the queue is read from it (once; `path` names it in messages). With
    `budget` (mode, limit) on a stream, the same pass counts how many first requests fit the
    limit (`QueueEstimate.first_fit`), which `advise` cannot read the stream again for.
    """
    reader = QueueReader(path, book, at, defaults=defaults, fmt=fmt, stream=stream)
    fitting = (
        _FirstFit(book, at, budget[0], budget[1], calibration)
        if budget is not None and reader.streamed
        else None
    )
    grouped: dict[GroupKey, Totals] = {}
    for request in reader:
        key = (request.model, request.size, request.quality)
        totals = grouped.get(key)
        if totals is None:
            totals = grouped[key] = Totals()
        totals.add(request)
        if fitting is not None:
            fitting.add(request)
    reader.check()
    result = estimate(grouped, book, at, calibration=calibration)
    warnings = list(dict.fromkeys([*reader.warnings, *result.warnings]))
    text = sum(totals.text_tokens_max for totals in grouped.values())
    if text:
        warnings.append(
            f"requests ask for text output (responseModalities TEXT): the maximum holds their "
            f"maxOutputTokens ({text:,} tokens in all) at the output text rate; the expected "
            "figure counts no text, whose length cannot be known before the response"
        )
    facts = _learned(result, book, at, calibration) if calibration is not None else []
    return QueueEstimate(
        path,
        reader.format,
        grouped,
        result,
        warnings,
        calibration,
        facts,
        streamed=reader.streamed,
        first_fit=(fitting.count, fitting.spent) if fitting is not None else None,
    )


def _learned(result: Estimate, book: RateBook, at: dt.date, calibration: Calibration) -> list[Fact]:
    """The calibrated figures `result` was priced with. An assumed card fact (`assumed:` line)
    that calibration replaced for every group of its model no longer underlies the figures:
    it is dropped from `result.assumptions`."""
    facts: list[Fact] = []
    learned: dict[str, set[str]] = {}
    for group in result.groups:
        model = book.resolve(group.model, at).model
        found = calibration.facts(model, group.size, group.quality)
        facts += (f for f in found if f not in facts)
        kinds = {ASSUMED.get(f.kind, "") for f in found}
        learned[model.id] = learned[model.id] & kinds if model.id in learned else kinds
    result.assumptions = [a for a in result.assumptions if a.fact not in learned.get(a.model, ())]
    return facts


def price_base(
    path: Path,
    book: RateBook,
    at: dt.date,
    *,
    defaults: Defaults = NO_DEFAULTS,
    fmt: Format | None = None,
    calibration: Calibration | None = None,
) -> QueueEstimate:
    """The queue a change is measured from (`--diff-base`), priced as `price_queue` does, except
    that an empty file is nothing before the change (a queue the change adds) rather than an
    error. A missing file is still an error: a mistyped base must not count everything as new."""
    if not _blank(path):
        return price_queue(path, book, at, defaults=defaults, fmt=fmt, calibration=calibration)
    nothing = estimate({}, book, at, calibration=calibration)
    return QueueEstimate(path, fmt or "costguard", {}, nothing, [], calibration)


def _blank(path: Path) -> bool:
    """The file exists and holds no line but blank ones (a BOM aside)."""
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return all(not raw.strip().removeprefix(b"\xef\xbb\xbf").strip() for raw in handle)


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One model, size and quality before and after a change (None: not in that queue)."""

    provider: str
    model: str
    size: str
    quality: str | None
    before: Group | None
    after: Group | None

    @property
    def changed(self) -> bool:
        """The change adds or removes requests or images of this group, or moves its price."""
        if self.before is None or self.after is None:
            return True
        b, a = self.before, self.after
        return (b.totals.requests, b.totals.images, b.cost) != (
            a.totals.requests,
            a.totals.images,
            a.cost,
        )


@dataclass(frozen=True, slots=True)
class QueueDiff:
    """What a change to a queue adds or saves: the base and the new queue, group by group."""

    before: QueueEstimate
    after: QueueEstimate
    groups: list[GroupChange]


def diff(before: QueueEstimate, after: QueueEstimate) -> QueueDiff:
    """Pair the groups of two priced queues by provider, model, size and quality: the new
    queue's groups in its order, each model's groups the change removes after its others."""
    old = {(g.provider, g.model, g.size, g.quality): g for g in before.estimate.groups}
    new = {(g.provider, g.model, g.size, g.quality): g for g in after.estimate.groups}
    keys = list(new) + [k for k in old if k not in new]
    rank = {model: i for i, model in enumerate(dict.fromkeys(k[:2] for k in keys))}
    keys.sort(key=lambda k: rank[k[:2]])  # stable: a removed group joins its model's rows
    groups = [GroupChange(*key, old.get(key), new.get(key)) for key in keys]
    return QueueDiff(before, after, groups)


def compare(queue: QueueEstimate, book: RateBook, at: dt.date, models: list[str]) -> list[Estimate]:
    """The same queue priced on each of `models` (sizes it lacks fall back to its default)."""
    return [
        estimate(queue.grouped, book, at, substitute=m, calibration=queue.calibration)
        for m in models
    ]


@dataclass(slots=True)
class Advice:
    """What would fit a budget the queue does not fit."""

    decision: Decision
    first_requests: int | None = None
    """How many of the queue's first requests fit (None when not worked out)."""
    first_requests_cost: Decimal | None = None
    cheapest_settings: Decimal | None = None
    """Maximum cost of the queue at each model's cheapest size and quality."""
    cheaper_models: list[tuple[str, Decimal]] = field(default_factory=list)
    """Other models on which the whole queue fits, cheapest first: (model, max cost)."""
    smaller_sizes: list[SmallerSize] = field(default_factory=list)
    """For models that take any size (gpt-image-2): the largest size of the same shape at
    which the whole queue fits, per group."""


@dataclass(frozen=True, slots=True)
class SmallerSize:
    """The queue fits if one group's images are made at a smaller size of the same shape."""

    model: str
    size: str
    quality: str | None
    instead: str
    """The smaller size."""
    max_cost: Decimal
    """Maximum cost of the whole queue with that group at `instead`."""


def advise(
    queue: QueueEstimate,
    book: RateBook,
    at: dt.date,
    mode: Mode,
    limit: Decimal,
    *,
    defaults: Defaults = NO_DEFAULTS,
) -> Advice:
    """Check the queue's maximum against `limit` in `mode`; when it misses, say what would fit."""
    total = queue.estimate.total(mode)
    needed = total.max if total is not None else Decimal("Infinity")
    decision = check(needed, limit)
    advice = Advice(decision)
    if decision.fits:
        return advice
    advice.first_requests, advice.first_requests_cost = _first_fitting(
        queue, book, at, mode, limit, defaults
    )
    advice.cheapest_settings = _at_cheapest_settings(queue, book, at, mode)
    current = {g.model for g in queue.estimate.groups}
    options = []
    for candidate in book.models_at(at):
        if candidate.model.id in current or not has_mode(candidate.model, mode):
            continue
        if candidate.warning is not None:  # shutting down soon: no model to move a queue to
            continue
        priced = estimate(
            queue.grouped, book, at, substitute=candidate.model.id, calibration=queue.calibration
        ).total(mode)
        if priced is not None and priced.max <= limit:
            options.append((candidate.model.id, priced.max))
    advice.cheaper_models = sorted(options, key=lambda o: o[1])[:3]
    advice.smaller_sizes = _smaller_sizes(queue, book, at, mode, limit)
    return advice


def _smaller_sizes(
    queue: QueueEstimate, book: RateBook, at: dt.date, mode: Mode, limit: Decimal
) -> list[SmallerSize]:
    """Per group on a model with an any-size rule: the largest smaller size of the same aspect
    ratio (within a few percent) at which the whole queue fits, the other groups unchanged."""
    found = []
    for key in queue.grouped:
        model_id, size, quality = key
        model = book.resolve(model_id, at).model
        for candidate in smaller_sizes(model, size):
            grouped = dict(queue.grouped)
            del grouped[key]
            moved = (model_id, candidate, quality)
            merged = Totals()
            merged.merge(queue.grouped[key])
            if moved in grouped:
                merged.merge(grouped[moved])
            grouped[moved] = merged
            total = estimate(grouped, book, at, calibration=queue.calibration).total(mode)
            if total is not None and total.max <= limit:
                found.append(SmallerSize(model.id, size, quality, candidate, total.max))
                break
    return found


def _first_fitting(
    queue: QueueEstimate,
    book: RateBook,
    at: dt.date,
    mode: Mode,
    limit: Decimal,
    defaults: Defaults,
) -> tuple[int | None, Decimal | None]:
    """Second pass in queue order: how many first requests fit under `limit`.

    A queue read from a stream was counted while it was read (`price_queue(budget=...)`), or
    not at all (None).
    """
    if queue.streamed:
        return queue.first_fit if queue.first_fit is not None else (None, None)
    fitting = _FirstFit(book, at, mode, limit, queue.calibration)
    for request in QueueReader(queue.path, book, at, defaults=defaults, fmt=queue.format):
        if not fitting.add(request):
            break
    return fitting.count, fitting.spent


class _FirstFit:
    """Counts requests in queue order while their maximum cost still fits under `limit`."""

    def __init__(
        self,
        book: RateBook,
        at: dt.date,
        mode: Mode,
        limit: Decimal,
        calibration: Calibration | None,
    ) -> None:
        self.book, self.at, self.mode, self.limit = book, at, mode, limit
        self.calibration = calibration
        self.count = 0
        self.spent = Decimal(0)
        self.full = False

    def add(self, request: ImageRequest) -> bool:
        """Count `request` if it still fits; False once one did not (later ones never count)."""
        if self.full:
            return False
        one = Totals()
        one.add(request)
        cost = price(
            self.book.resolve(request.model, self.at).model,
            self.mode,
            request.size,
            request.quality,
            one,
            calibration=self.calibration,
        )
        if cost is None or self.spent + cost.max > self.limit:
            self.full = True
            return False
        self.spent += cost.max
        self.count += 1
        return True


def _at_cheapest_settings(
    queue: QueueEstimate, book: RateBook, at: dt.date, mode: Mode
) -> Decimal | None:
    total = Decimal(0)
    for (model_id, _size, _quality), totals in queue.grouped.items():
        model = book.resolve(model_id, at).model
        if not has_mode(model, mode):
            return None
        qualities: list[str | None] = list(model.qualities) or [None]
        size, quality = min(
            ((s, q) for s in model.sizes for q in qualities),
            key=lambda sq: image_unit_price(model, mode, sq[0], sq[1]),
        )
        cost = price(model, mode, size, quality, totals, calibration=queue.calibration)
        assert cost is not None
        total += cost.max
    return total
