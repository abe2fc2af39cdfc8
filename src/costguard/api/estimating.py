"""`costguard.estimate()` and `costguard.price()`: the rate cards' figures for a queue or one
image, from code. The same reader, defaults, engine and JSON as `costguard estimate`, so a
pipeline and the CLI can never disagree on a figure or on what is wrong with a request.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from costguard.api.requests import Requests, as_queue
from costguard.api.values import as_date, as_usd
from costguard.errors import UsageError
from costguard.pricing.engine import Cost
from costguard.pricing.schema import Mode as CardMode

if TYPE_CHECKING:
    from costguard.pricing.engine import Group
    from costguard.queue.estimate import Advice, QueueEstimate

Mode = Literal["batch", "sync"]
"""How requests are sent: `batch` (half price, asynchronous) or `sync` (one call each)."""
QueueFormat = Literal["costguard", "gemini", "openai"]
_CARD_MODE: dict[str, CardMode] = {"batch": "batch", "sync": "standard"}


@dataclass(frozen=True, slots=True)
class EstimateGroup:
    """Requests that share provider, model, size and quality, with their prices."""

    provider: str
    model: str
    size: str
    quality: str | None
    rate_card: str
    """The card the prices come from, `provider/effective-date` (`costguard prices`)."""
    requests: int
    images: int
    batch_unit_usd: Decimal | None
    """Per output image, image part only, in batch (None: the model has no batch tier)."""
    sync_unit_usd: Decimal | None
    batch: Cost | None
    """Expected and maximum USD of the group in batch (None: no batch tier)."""
    sync: Cost | None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A priced queue: what `costguard estimate` shows, as values.

    `batch` and `sync` are the queue's expected and maximum cost in each mode (None where a
    model in it is not sold in that mode). A figure that rests on a card fact no source
    publishes says so in `assumptions`. With `max_usd`, `fits` says whether the maximum in
    `mode` fits it.
    """

    queue: str
    """The queue file, or `<requests>` for requests given in memory."""
    format: QueueFormat
    requests: int
    images: int
    as_of: dt.date
    rate_cards: tuple[str, ...]
    batch: Cost | None
    sync: Cost | None
    batch_saving: Cost | None
    """What batch saves against sync (None when something cannot be batched)."""
    groups: tuple[EstimateGroup, ...]
    warnings: tuple[str, ...]
    """What asks for attention: models shutting down soon, text output held at its maximum."""
    assumptions: tuple[str, ...]
    """`model fact: what is assumed`, for each unpublished card fact the figures rest on."""
    mode: Mode
    """The mode `max_usd` is checked in (what `run` would send)."""
    max_usd: Decimal | None
    fits: bool | None
    """Whether the maximum in `mode` fits `max_usd` (None without `max_usd`)."""
    shortfall_usd: Decimal | None
    """How much more `max_usd` would need (0 when it fits; None without `max_usd`)."""
    _document: dict[str, Any]

    @property
    def max(self) -> Decimal:
        """The maximum cost in `mode`: what a run in that mode reserves.

        Raises:
            UsageError: A model in the queue is not sold in `mode` (then `batch` or `sync`
                is None), so the queue cannot be sent that way.
        """
        cost = self.batch if self.mode == "batch" else self.sync
        if cost is None:
            msg = (
                f"mode: the queue cannot be sent in {self.mode} mode: a model in it is not sold so"
            )
            raise UsageError(msg)
        return cost.max

    def to_json(self) -> str:
        """The estimate as `costguard estimate --output json` prints it for the same queue and
        options (the CLI adds an `error` key when it exits 3 over `--max-usd`)."""
        return json.dumps(self._document, indent=2)

    def as_dict(self) -> dict[str, Any]:
        """`to_json()` as a dict (money as exact decimal strings)."""
        return json.loads(self.to_json())  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one request for one image, from the card in force on `as_of`."""

    model: str
    """The model's id (an alias given is resolved)."""
    provider: str
    size: str
    quality: str | None
    mode: Mode
    as_of: dt.date
    image_usd: Decimal
    """Per output image, image part only: what `costguard prices` lists."""
    expected_usd: Decimal
    """One request with `prompt`: the image plus prompt, input-image and thinking tokens at
    their typical figures."""
    max_usd: Decimal
    """The same at the card's worst-case figures: what a run reserves for it."""
    rate_card: str
    sources: tuple[str, ...]
    """Where the model's figures come from: `url (checked YYYY-MM-DD)`."""
    assumptions: tuple[str, ...]
    warning: str | None
    """Set when the model shuts down soon after `as_of`."""


def estimate(
    requests: Requests,
    *,
    as_of: dt.date | str | None = None,
    mode: Mode = "batch",
    max_usd: Decimal | int | str | None = None,
    model: str | None = None,
    size: str | None = None,
    quality: str | None = None,
    aspect_ratio: str | None = None,
    queue_format: QueueFormat | None = None,
    pricing: Sequence[str | Path] | None = None,
) -> Estimate:
    """Price a queue before anything is sent: per model, size and quality, batch and sync.

    Args:
        requests: A queue file's path, or requests: `ImageRequest`s or dicts in any of the
            three queue formats (costguard's, Gemini batch lines, OpenAI batch lines).
        as_of: Price with the cards in force on this date (default: today, UTC).
        mode: Which mode's maximum `max_usd` is checked against.
        max_usd: A budget to check the queue against (`fits`, `shortfall_usd`).
        model: Model for requests that name none (default: `COSTGUARD_DEFAULT_MODEL`).
        size: Size for requests that give none (default: the card's).
        quality: Quality for requests that give none (default: the card's).
        aspect_ratio: Aspect ratio for Gemini requests that give none.
        queue_format: Read every request in this format instead of detecting it.
        pricing: Extra rate-card folders (their cards win for the same date).

    Returns:
        The `Estimate`.

    Raises:
        QueueError: Requests are invalid; `errors` lists each distinct one with its line
            (the request's position for in-memory requests) and field, as the CLI does.
        RateCardError: No card covers a model on `as_of`.
        UsageError: An argument is invalid (a date, an amount, a mode).
    """
    from costguard.api.settings import Settings
    from costguard.api.setup import load_rate_book
    from costguard.queue.document import estimate_document
    from costguard.queue.estimate import advise, price_queue
    from costguard.queue.reader import Defaults

    card_mode = _card_mode(mode)
    at = as_date(as_of)
    limit = None if max_usd is None else as_usd(max_usd, "max_usd")
    book = load_rate_book([Path(p) for p in pricing or ()])
    queue = as_queue(requests)
    defaults = Defaults(model or Settings().default_model, size, quality, aspect_ratio)
    priced = price_queue(
        queue.path,
        book,
        at,
        defaults=defaults,
        fmt=queue_format,
        stream=queue.stream(),
        budget=(card_mode, limit) if limit is not None else None,
    )
    advice = None
    if limit is not None:
        advice = advise(priced, book, at, card_mode, limit, defaults=defaults)
    document = estimate_document(priced, budget=advice, budget_mode=card_mode)
    return _estimate(priced, advice, mode, limit, document)


def price(
    model: str,
    *,
    size: str | None = None,
    quality: str | None = None,
    mode: Mode = "batch",
    prompt: str = "",
    as_of: dt.date | str | None = None,
    pricing: Sequence[str | Path] | None = None,
) -> Price:
    """The price of one image: per image, and for one request with `prompt`.

    Args:
        model: A model id or alias on the rate cards.
        size: Any size the model accepts (default: the card's default size).
        quality: A quality the model has (default: the card's default quality).
        mode: `batch` or `sync`.
        prompt: The prompt, whose tokens the request's price counts (default: none).
        as_of: Price with the cards in force on this date (default: today, UTC).
        pricing: Extra rate-card folders.

    Raises:
        ModelUnavailableError: The model is unknown, shut down or not yet out on `as_of`.
        UsageError: The model has no such size, quality or mode.
    """
    from costguard.api.setup import load_rate_book
    from costguard.pricing.engine import Totals
    from costguard.pricing.engine import estimate as priced
    from costguard.pricing.sizes import size_problem

    card_mode = _card_mode(mode)
    at = as_date(as_of)
    book = load_rate_book([Path(p) for p in pricing or ()])
    resolved = book.resolve(model, at)
    card = resolved.model
    chosen_size = size if size is not None else card.default_size
    problem = size_problem(card, chosen_size)
    if problem is not None:
        raise UsageError(f"size: {problem}")
    chosen_quality = quality if quality is not None else card.default_quality
    if chosen_quality is not None and chosen_quality not in card.qualities:
        allowed = ", ".join(card.qualities) or "none (the model has no quality setting)"
        msg = f"quality: {card.id} does not support {chosen_quality!r}; allowed: {allowed}"
        raise UsageError(msg)
    if card_mode not in card.modes:
        raise UsageError(f"mode: {card.id} is not sold in {mode} mode")
    totals = Totals()
    totals.add_request(n=1, prompt_bytes=len(prompt.encode()), input_images=0)
    result = priced({(model, chosen_size, chosen_quality): totals}, book, at)
    group = result.groups[0]
    cost = group.cost[card_mode]
    unit = group.unit[card_mode]
    if cost is None or unit is None:  # the card sells the mode: checked above
        raise UsageError(f"mode: {card.id} is not sold in {mode} mode")
    sources = {s.id: s for s in resolved.card.sources}
    return Price(
        model=card.id,
        provider=resolved.provider,
        size=chosen_size,
        quality=chosen_quality,
        mode=mode,
        as_of=at,
        image_usd=unit,
        expected_usd=cost.expected,
        max_usd=cost.max,
        rate_card=resolved.card.card_id,
        sources=tuple(
            f"{sources[s].url} (checked {sources[s].checked.isoformat()})"
            for s in card.sources
            if s in sources
        ),
        assumptions=tuple(_assumed(result.assumptions)),
        warning=resolved.warning,
    )


def actual_cost(
    model: str,
    usage: Mapping[str, Any] | Any,
    *,
    size: str | None = None,
    quality: str | None = None,
    mode: Mode = "batch",
    images: int = 1,
    as_of: dt.date | str | None = None,
    pricing: Sequence[str | Path] | None = None,
) -> Decimal:
    """What one request really cost, from the usage the provider reported for it: what to
    settle a reservation with. Priced as costguard's own runs price their results.

    Args:
        model: The model the request ran on.
        usage: The answer's usage as the provider gives it: OpenAI's `usage`
            (`response.usage`, or its JSON) or Gemini's `usageMetadata`
            (`response.usage_metadata`, or its JSON); SDK objects are read as their JSON.
        size, quality: What the request asked for (default: the card's defaults); they price
            the models billed per image.
        mode: `batch` or `sync`: how the request was sent.
        images: Images the answer returned (models billed per image).
        as_of: The cards in force on this date (default: today, UTC).
        pricing: Extra rate-card folders.

    Raises:
        ModelUnavailableError: The model is unknown on `as_of`.
        UsageError: `usage` is no usage object, or the model is not sold in `mode`.
    """
    from costguard.api.setup import load_rate_book
    from costguard.pricing.engine import usage_cost
    from costguard.providers import gemini, openai

    card_mode = _card_mode(mode)
    at = as_date(as_of)
    resolved = load_rate_book([Path(p) for p in pricing or ()]).resolve(model, at)
    card = resolved.model
    if card_mode not in card.modes:
        raise UsageError(f"mode: {card.id} is not sold in {mode} mode")
    raw = _json_of(usage)
    if resolved.provider == "gemini":
        counted = gemini.usage_of(_camel(raw))
        if counted is not None:
            counted = counted._replace(images=images)
    else:
        counted = openai.usage_of(raw, images)
    if counted is None:
        raise UsageError(f"usage: {type(usage).__name__} is no usage the provider reported")
    return usage_cost(
        card,
        card_mode,
        counted,
        size=size if size is not None else card.default_size,
        quality=quality if quality is not None else card.default_quality,
    )


def _json_of(usage: object) -> object:
    """An SDK object as its JSON (pydantic models of both SDKs), anything else as it is."""
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    return usage


def _camel(raw: object) -> object:
    """Gemini usage with snake_case keys (the Python SDK's fields) in the wire's camelCase."""
    if isinstance(raw, list):
        return [_camel(item) for item in raw]
    if not isinstance(raw, dict):
        return raw
    out: dict[str, object] = {}
    for key, value in raw.items():
        head, *rest = str(key).split("_")
        out[head + "".join(word.title() for word in rest)] = _camel(value)
    return out


def _estimate(
    priced: QueueEstimate,
    advice: Advice | None,
    mode: Mode,
    limit: Decimal | None,
    document: dict[str, Any],
) -> Estimate:
    est = priced.estimate
    decision = advice.decision if advice is not None else None
    return Estimate(
        queue=str(priced.path),
        format=priced.format,
        requests=est.requests,
        images=est.images,
        as_of=est.as_of,
        rate_cards=tuple(est.rate_cards),
        batch=est.total("batch"),
        sync=est.total("standard"),
        batch_saving=est.saving(),
        groups=tuple(_group(g) for g in est.groups),
        warnings=tuple(priced.warnings),
        assumptions=tuple(_assumed(est.assumptions)),
        mode=mode,
        max_usd=limit,
        fits=None if decision is None else decision.fits,
        shortfall_usd=None if decision is None else decision.shortfall,
        _document=document,
    )


def _group(group: Group) -> EstimateGroup:
    return EstimateGroup(
        provider=group.provider,
        model=group.model,
        size=group.size,
        quality=group.quality,
        rate_card=group.card_id,
        requests=group.totals.requests,
        images=group.totals.images,
        batch_unit_usd=group.unit.get("batch"),
        sync_unit_usd=group.unit.get("standard"),
        batch=group.cost.get("batch"),
        sync=group.cost.get("standard"),
    )


def _assumed(assumptions: Sequence[Any]) -> list[str]:
    from costguard.pricing.engine import FACT_NAMES

    return [f"{a.model} {FACT_NAMES[a.fact]}: {a.assumed}" for a in assumptions]


def _card_mode(mode: str) -> CardMode:
    if mode not in _CARD_MODE:
        raise UsageError(f"mode: {mode!r} is not a mode; use 'batch' or 'sync'")
    return _CARD_MODE[mode]
