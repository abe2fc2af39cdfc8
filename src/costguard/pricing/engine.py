"""The pure pricing engine: no I/O, no clock. Dates come in as arguments.

A request is priced before any tokens exist, from its parameters:

    output images  x image tokens (by size, quality) x image rate  (or a flat price per image)
  + prompt tokens  (estimated from the prompt's UTF-8 length)  x input text rate
  + input images   x tokens per input image                      x input image rate
  + thinking       (models that always think)                    x output text rate
  + text output    (requests that ask for text: up to maxOutputTokens, maximum only)
                                                                 x output text rate

Each part has an expected and a maximum figure; the maximum is what a budget must hold.
Prompt tokens: expected = ceil(bytes / 4) (the usual ~4 bytes a token for English text),
maximum = bytes (a tokenizer never emits more tokens than the text has bytes).
Every quantity is linear, so a group of requests is priced from its totals, exactly.
With a `Calibration` (`pricing.calibration`), the thinking, input-image and prompt allowances
learned from real runs replace the card's where it has enough requests.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from costguard.errors import ModelUnavailableError, RateCardError
from costguard.models import ImageRequest, Provider, Usage
from costguard.money import ZERO, per_mtok
from costguard.pricing.schema import MODES, Mode, ModelCard, ModeRates, RateCard
from costguard.pricing.sizes import accepts, rule_tokens
from costguard.pricing.sizes import order as size_order

if TYPE_CHECKING:
    from costguard.pricing.calibration import Calibration

SHUTDOWN_WARNING_DAYS = 30


def prompt_tokens(prompt_bytes: int) -> tuple[int, int]:
    """Expected and maximum prompt tokens for a prompt of `prompt_bytes` UTF-8 bytes."""
    return (prompt_bytes + 3) // 4, prompt_bytes


@dataclass(frozen=True, slots=True)
class Resolved:
    """A model id resolved against the card in force at a date."""

    card: RateCard
    model: ModelCard
    warning: str | None = None
    """Set when the model shuts down within `SHUTDOWN_WARNING_DAYS` of the date."""

    @property
    def provider(self) -> Provider:
        return self.card.provider


class RateBook:
    """All cards, by provider and effective date; answers "which card, which model, at date"."""

    def __init__(self, cards: list[RateCard], *, origins: dict[str, str] | None = None) -> None:
        self.cards = sorted(cards, key=lambda c: (c.provider, c.effective_from))
        self.origins = origins or {}
        """card id -> file the card was loaded from."""
        self._cache: dict[tuple[str, dt.date], Resolved] = {}

    def card_at(self, provider: str, at: dt.date) -> RateCard:
        """The card in force for `provider` on `at` (latest effective_from <= at)."""
        found: RateCard | None = None
        for card in self.cards:
            if card.provider == provider and card.effective_from <= at:
                found = card
        if found is None:
            first = [c.effective_from for c in self.cards if c.provider == provider]
            since = f"; the first {provider} card is {min(first)}" if first else ""
            msg = f"no {provider} rate card is in force on {at}{since}"
            raise RateCardError(msg)
        return found

    def cards_in_force(self, at: dt.date) -> list[RateCard]:
        """One card per provider: those in force on `at`."""
        providers = sorted({c.provider for c in self.cards})
        out = []
        for provider in providers:
            try:
                out.append(self.card_at(provider, at))
            except RateCardError:
                continue
        return out

    def resolve(self, model_id: str, at: dt.date) -> Resolved:
        """Find `model_id` (or an alias) in the cards in force on `at`; check its lifecycle."""
        key = (model_id, at)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        for card in self.cards_in_force(at):
            for model in card.models:
                if model_id in model.names:
                    resolved = Resolved(card, model, _lifecycle_warning(model, model_id, at))
                    self._cache[key] = resolved
                    return resolved
        raise self._unknown(model_id, at)

    def _unknown(self, model_id: str, at: dt.date) -> Exception:
        later = [
            c
            for c in self.cards
            if c.effective_from > at and any(model_id in m.names for m in c.models)
        ]
        if later:
            listed = min(later, key=lambda c: c.effective_from)
            if all(c.provider != listed.provider for c in self.cards_in_force(at)):
                # before the provider's first card nothing is priced: a rate-card gap (exit 4)
                first = min(c.effective_from for c in self.cards if c.provider == listed.provider)
                return RateCardError(
                    f"no {listed.provider} rate card is in force on {at} (for {model_id!r}); "
                    f"the first {listed.provider} card is {first}"
                )
            return ModelUnavailableError(
                f"model {model_id!r} is not priced until {listed.effective_from} "
                f"(the cards in force on {at} do not list it)"
            )
        models = {m.id: (c, m) for c in self.cards_in_force(at) for m in c.models}
        status = {i: _status(m, at) for i, (_, m) in sorted(models.items())}
        by_name = {name: m for _, m in models.values() for name in m.names}
        callable_names = sorted(n for n, m in by_name.items() if status[m.id] == "available")
        # suggest models that can still be called; a shut-down one only if nothing else is close
        close = difflib.get_close_matches(model_id, callable_names, n=3, cutoff=0.6) or (
            difflib.get_close_matches(model_id, sorted(by_name), n=3, cutoff=0.6)
        )
        if close:
            named = [
                f"{n}{_when(by_name[n], at, status[by_name[n].id], short=False)}" for n in close
            ]
            hint = f". Did you mean: {', '.join(named)}?"
        else:
            hint = ". " + "; ".join(
                f"{heading}: {', '.join(_listed(m, at, state) for _, m in group)}"
                for heading, state in _KNOWN_HEADINGS
                if (group := [models[i] for i, st in status.items() if st == state])
            )
        listing = [
            {
                "id": m.id,
                "also": [n for n in m.names if n != m.id],
                "provider": c.provider,
                "status": status[m.id],
                "available_from": _iso(m.lifecycle.available_from),
                "shutdown_on": _iso(m.lifecycle.shutdown_on),
            }
            for c, m in (models[i] for i in status)
        ]
        details: dict[str, object] = {"model": model_id, "did_you_mean": close, "models": listing}
        return UnknownModelError(f"unknown model {model_id!r}{hint}", details=details)

    def models_at(self, at: dt.date) -> list[Resolved]:
        """Every model callable on `at` (not shut down, already available)."""
        out = []
        for card in self.cards_in_force(at):
            for model in card.models:
                life = model.lifecycle
                if life.shutdown_on is not None and life.shutdown_on <= at:
                    continue
                if life.available_from is not None and life.available_from > at:
                    continue
                out.append(Resolved(card, model, _lifecycle_warning(model, model.id, at)))
        return out


class UnknownModelError(ModelUnavailableError):
    """The model id is in no card in force (the message suggests close matches)."""

    kind = "unknown_model"


_KNOWN_HEADINGS = (
    ("Known models", "available"),
    ("not yet available", "not_yet_available"),
    ("shut down", "shut_down"),
)


def _status(model: ModelCard, at: dt.date) -> str:
    """`available`, `shut_down` or `not_yet_available` on `at`, by the model's lifecycle."""
    life = model.lifecycle
    if life.shutdown_on is not None and life.shutdown_on <= at:
        return "shut_down"
    if life.available_from is not None and life.available_from > at:
        return "not_yet_available"
    return "available"


def _when(model: ModelCard, at: dt.date, status: str, *, short: bool) -> str:
    """` (shut down 2026-10-23)`, ` (from 2027-01-01)`, ` (shuts down 2026-12-01)` or ``.

    `short`: under a heading that already says shut down: ` (on 2026-10-23)`.
    """
    life = model.lifecycle
    if status == "shut_down":
        return f" (on {life.shutdown_on})" if short else f" (shut down {life.shutdown_on})"
    if status == "not_yet_available":
        return f" (from {life.available_from})"
    if life.shutdown_on is not None and life.shutdown_on > at:
        return f" (shuts down {life.shutdown_on})"
    return ""


def _listed(model: ModelCard, at: dt.date, status: str) -> str:
    """A model in an unknown-model message: its id, the other names it goes by (aliases and
    nicknames, from its card) and its lifecycle date."""
    also = [n for n in model.names if n != model.id]
    note = _when(model, at, status, short=True).strip(" ()")
    inside = "; ".join(x for x in (f"also {', '.join(also)}" if also else "", note) if x)
    return f"{model.id} ({inside})" if inside else model.id


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _lifecycle_warning(model: ModelCard, model_id: str, at: dt.date) -> str | None:
    life = model.lifecycle
    successors = f"; use {' or '.join(life.successors)}" if life.successors else ""
    name = f"{model_id!r} ({model.id})" if model_id in model.nicknames else repr(model_id)
    if life.shutdown_on is not None and life.shutdown_on <= at:
        msg = f"model {name} was shut down on {life.shutdown_on}{successors}"
        raise ModelUnavailableError(msg)
    if life.available_from is not None and life.available_from > at:
        msg = f"model {name} is not available until {life.available_from}"
        raise ModelUnavailableError(msg)
    if life.shutdown_on is not None and (life.shutdown_on - at).days <= SHUTDOWN_WARNING_DAYS:
        days = (life.shutdown_on - at).days
        return f"model {name} shuts down on {life.shutdown_on} (in {days} days){successors}"
    return None


@dataclass(slots=True)
class Totals:
    """Additive quantities of a set of requests; everything the price depends on."""

    requests: int = 0
    images: int = 0
    prompt_tokens: int = 0
    prompt_tokens_max: int = 0
    input_images: int = 0
    text_tokens_max: int = 0
    """Text output tokens the requests may produce besides thinking (their maxOutputTokens)."""
    prompt_bytes: int = 0
    """UTF-8 bytes of their prompts (calibrated prompts are priced per byte)."""

    def add(self, request: ImageRequest) -> None:
        """Count one request."""
        self.add_request(
            n=request.n,
            prompt_bytes=request.prompt_bytes,
            input_images=len(request.images),
            text_tokens_max=request.text_tokens_max,
        )

    def add_request(
        self, *, n: int, prompt_bytes: int, input_images: int, text_tokens_max: int = 0
    ) -> None:
        """Count one request from its quantities."""
        expected, maximum = prompt_tokens(prompt_bytes)
        self.requests += 1
        self.images += n
        self.prompt_tokens += expected
        self.prompt_tokens_max += maximum
        self.input_images += input_images
        self.text_tokens_max += text_tokens_max
        self.prompt_bytes += prompt_bytes

    def merge(self, other: Totals) -> None:
        """Add another set's totals into this one."""
        self.requests += other.requests
        self.images += other.images
        self.prompt_tokens += other.prompt_tokens
        self.prompt_tokens_max += other.prompt_tokens_max
        self.input_images += other.input_images
        self.text_tokens_max += other.text_tokens_max
        self.prompt_bytes += other.prompt_bytes


@dataclass(frozen=True, slots=True)
class Cost:
    """Expected and maximum USD of something, exact."""

    expected: Decimal
    max: Decimal

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.expected + other.expected, self.max + other.max)


NO_COST = Cost(ZERO, ZERO)


def image_unit_price(model: ModelCard, mode: Mode, size: str, quality: str | None) -> Decimal:
    """USD for one output image (image output only: no prompt, inputs or thinking)."""
    rates = _rates(model, mode)
    if rates.per_image_by_quality is not None:
        return rates.per_image_by_quality[_quality(model, quality)][size]
    if rates.per_image is not None:
        return rates.per_image[size]
    assert rates.output_image_per_mtok is not None  # the schema guarantees one pricing form
    return per_mtok(output_image_tokens(model, size, quality), rates.output_image_per_mtok)


def output_image_tokens(model: ModelCard, size: str, quality: str | None) -> int:
    """Output image tokens per image at `size` (and `quality`); 0 for per-image-priced models.

    A size the card does not list, but its `any_size` rule accepts, is priced by the rule.
    """
    if model.output_image_tokens_by_quality is not None and model.qualities:
        row = model.output_image_tokens_by_quality[_quality(model, quality)]
        if size not in row and model.any_size is not None:
            return rule_tokens(model.any_size, size, _quality(model, quality))
        return row[size]
    if model.output_image_tokens is not None:
        return model.output_image_tokens[size]
    return 0


def has_mode(model: ModelCard, mode: Mode) -> bool:
    """Whether the model is sold in `mode` (Imagen 4 has no batch tier)."""
    return mode in model.modes


def price(
    model: ModelCard,
    mode: Mode,
    size: str,
    quality: str | None,
    totals: Totals,
    *,
    calibration: Calibration | None = None,
) -> Cost | None:
    """Expected and maximum cost of `totals` requests at one size and quality; None if no mode.

    With `calibration`, the thinking, input-image and prompt allowances it has learned for
    this model, size and quality replace the card's (`pricing.calibration`).
    """
    if mode not in model.modes:
        return None
    rates = model.modes[mode]
    images = image_unit_price(model, mode, size, quality) * totals.images
    text_rate = rates.input_text_per_mtok or ZERO
    prompt_tokens, prompt_tokens_max = totals.prompt_tokens, totals.prompt_tokens_max
    learned = calibration.allowances(model, size, quality) if calibration is not None else None
    if learned is not None and learned.prompt is not None:
        prompt_tokens, prompt_tokens_max = learned.prompt.tokens(totals.prompt_bytes)
    prompt = Cost(per_mtok(prompt_tokens, text_rate), per_mtok(prompt_tokens_max, text_rate))
    inputs = NO_COST
    if totals.input_images and model.input_image_tokens is not None:
        image_rate = _or(rates.input_image_per_mtok, text_rate)
        per = (learned and learned.input_image) or model.input_image_tokens
        inputs = Cost(
            per_mtok(per.typical * totals.input_images, image_rate),
            per_mtok(per.max * totals.input_images, image_rate),
        )
    out_rate = rates.output_text_per_mtok or ZERO
    thinking = NO_COST
    if model.thinking_tokens is not None:
        think = (learned and learned.thinking) or model.thinking_tokens
        thinking = Cost(
            per_mtok(think.typical * totals.requests, out_rate),
            per_mtok(think.max * totals.requests, out_rate),
        )
    # the length of text output cannot be known: none is expected, all of it is held
    text = Cost(ZERO, per_mtok(totals.text_tokens_max, out_rate))
    return Cost(images, images) + prompt + inputs + thinking + text


def max_tokens(model: ModelCard, request: ImageRequest) -> int:
    """The most tokens one request can count, input and output: what a provider's quota on
    enqueued tokens may count for it. Output images at the card's tokens for the request's
    size and quality, the prompt at its maximum (a token per byte), input images, thinking
    and text output at their maxima. An upper bound, so parts sized with it fit a quota."""
    images = output_image_tokens(model, request.size, request.quality) * request.n
    _, prompt = prompt_tokens(request.prompt_bytes)
    inputs = len(request.images) * model.input_image_tokens.max if model.input_image_tokens else 0
    thinking = model.thinking_tokens.max if model.thinking_tokens is not None else 0
    return images + prompt + inputs + thinking + request.text_tokens_max


def usage_cost(
    model: ModelCard, mode: Mode, usage: Usage, *, size: str, quality: str | None
) -> Decimal:
    """Actual USD of one request from the token counts the provider reported.

    Token-priced models: every count times its rate. Per-image-priced models: the card's
    price per returned image, plus input tokens at their rates.
    """
    rates = _rates(model, mode)
    text_in = rates.input_text_per_mtok or ZERO
    cost = per_mtok(usage.input_text_tokens, text_in)
    cost += per_mtok(usage.input_image_tokens, _or(rates.input_image_per_mtok, text_in))
    cost += per_mtok(usage.output_text_tokens, rates.output_text_per_mtok or ZERO)
    if rates.output_image_per_mtok is not None:
        cost += per_mtok(usage.output_image_tokens, rates.output_image_per_mtok)
    else:
        cost += image_unit_price(model, mode, size, quality) * usage.images
    return cost


def _or(rate: Decimal | None, fallback: Decimal) -> Decimal:
    """`rate` unless it is unset (an explicit 0 is a price, not a missing one)."""
    return fallback if rate is None else rate


def _rates(model: ModelCard, mode: Mode) -> ModeRates:
    try:
        return model.modes[mode]
    except KeyError:
        msg = f"model {model.id!r} has no {mode} pricing"
        raise RateCardError(msg) from None


def _quality(model: ModelCard, quality: str | None) -> str:
    return quality if quality is not None else (model.default_quality or "")


@dataclass(slots=True)
class Group:
    """Requests that share provider, model, size and quality, with their prices."""

    provider: Provider
    model: str
    size: str
    quality: str | None
    card_id: str
    totals: Totals
    unit: dict[Mode, Decimal | None] = field(default_factory=dict)
    """Per output image, image part only, per mode (None where the mode is not sold)."""
    cost: dict[Mode, Cost | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assumption:
    """A card fact no source publishes that an estimate rests on."""

    model: str
    fact: str
    """`output_image_tokens`, `input_image_tokens` or `thinking_tokens`."""
    assumed: str
    """What the card assumes, in its words."""


FACT_NAMES = {
    "output_image_tokens": "output image tokens",
    "input_image_tokens": "input image tokens",
    "thinking_tokens": "thinking tokens",
}


@dataclass(slots=True)
class Estimate:
    """The priced queue."""

    as_of: dt.date
    groups: list[Group]
    rate_cards: list[str]
    warnings: list[str]
    requests: int
    images: int
    totals: dict[Mode, Cost | None]
    """Per mode; None when some group's model is not sold in that mode."""
    assumptions: list[Assumption] = field(default_factory=list)
    """Assumed card facts the figures rest on. Not in `warnings` (which ask for action): shown
    as one line of their own, `assumption_line`."""

    @property
    def assumption_line(self) -> str | None:
        """One line naming every assumed fact the figures rest on, or None."""
        if not self.assumptions:
            return None
        facts = "; ".join(f"{a.model} {FACT_NAMES[a.fact]}: {a.assumed}" for a in self.assumptions)
        return f"assumed: these figures rest on card facts no source publishes: {facts}"

    def total(self, mode: Mode) -> Cost | None:
        return self.totals[mode]

    def saving(self) -> Cost | None:
        """What batch saves against sync, or None when something cannot be batched."""
        batch, sync = self.totals["batch"], self.totals["standard"]
        if batch is None or sync is None:
            return None
        return Cost(sync.expected - batch.expected, sync.max - batch.max)


GroupKey = tuple[str, str, str | None]
"""(model id as written, size, quality)."""


def estimate(
    grouped: dict[GroupKey, Totals],
    book: RateBook,
    at: dt.date,
    *,
    substitute: str | None = None,
    calibration: Calibration | None = None,
) -> Estimate:
    """Price grouped requests with the cards in force on `at`.

    With `substitute`, every group is priced on that model instead (for `--compare`): sizes,
    qualities the substitute lacks fall back to its defaults. With `calibration`, allowances
    learned from real runs replace the card's where it has them (`price`).
    """
    merged: dict[tuple[str, str, str | None], tuple[Resolved, Totals]] = {}
    warnings: list[str] = []
    for (model_id, size, quality), totals in grouped.items():
        resolved = book.resolve(substitute or model_id, at)
        if resolved.warning and resolved.warning not in warnings:
            warnings.append(resolved.warning)
        model = resolved.model
        if substitute is not None:
            key = (
                model.id,
                size if accepts(model, size) else model.default_size,
                quality if quality in model.qualities else model.default_quality,
            )
        else:
            key = (model.id, size, quality)
        if key in merged:
            merged[key][1].merge(totals)
        else:
            fresh = Totals()
            fresh.merge(totals)
            merged[key] = (resolved, fresh)
    groups: list[Group] = []

    def order(item: tuple[tuple[str, str, str | None], tuple[Resolved, Totals]]) -> tuple[Any, ...]:
        (model_id, size, quality), (resolved, _) = item
        model = resolved.model
        rank = model.qualities.index(quality) if quality in model.qualities else 0
        return (resolved.provider, model_id, size_order(model, size), rank)

    for (model_id, size, quality), (resolved, totals) in sorted(merged.items(), key=order):
        group = Group(resolved.provider, model_id, size, quality, resolved.card.card_id, totals)
        for mode in MODES:
            sold = has_mode(resolved.model, mode)
            group.unit[mode] = (
                image_unit_price(resolved.model, mode, size, quality) if sold else None
            )
            group.cost[mode] = price(
                resolved.model, mode, size, quality, totals, calibration=calibration
            )
        groups.append(group)
    assumptions = _assumptions(merged.values())
    totals_by_mode: dict[Mode, Cost | None] = {}
    for mode in MODES:
        costs = [g.cost[mode] for g in groups]
        total: Cost | None = NO_COST
        for cost in costs:
            total = None if cost is None or total is None else total + cost
        totals_by_mode[mode] = total
    return Estimate(
        as_of=at,
        groups=groups,
        rate_cards=sorted({g.card_id for g in groups}),
        warnings=warnings,
        requests=sum(g.totals.requests for g in groups),
        images=sum(g.totals.images for g in groups),
        totals=totals_by_mode,
        assumptions=assumptions,
    )


def _assumptions(groups: Iterable[tuple[Resolved, Totals]]) -> list[Assumption]:
    """The assumed facts priced groups rest on (input image tokens only where there are input
    images), once per model and fact."""
    found: dict[tuple[str, str], Assumption] = {}
    for resolved, totals in groups:
        model = resolved.model
        for fact, assumed in model.assumed.items():
            if fact == "input_image_tokens" and not totals.input_images:
                continue
            found.setdefault((model.id, fact), Assumption(model.id, fact, assumed))
    return [found[key] for key in sorted(found)]
