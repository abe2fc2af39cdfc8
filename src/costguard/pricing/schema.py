"""Rate-card schema: pydantic models for `pricing/<provider>/<YYYY-MM-DD>.yaml`.

A card is complete: it lists every model the provider sells on and after `effective_from`,
until the next card. Batch pricing is data (a `batch` mode block), never a multiplier in code.
The JSON schema in `pricing/schema.json` is generated from these models (`costguard prices
--schema`), and a test keeps it in step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costguard.models import Provider

Mode = Literal["standard", "batch"]
MODES: tuple[Mode, ...] = ("standard", "batch")

Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=10)]
"""USD, exact. YAML numbers are loaded as Decimal, never through float."""
Tokens = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Source(_Model):
    """Where a card's figures come from."""

    id: str
    """Short key the card's notes and models refer to (e.g. `P26`)."""
    url: str
    """The page the figures were read from."""
    checked: dt.date
    """The date the page (or the copy named in `note`) was read."""
    note: str | None = None
    """Which copy was read, or what it says, when that matters."""


class Allowance(_Model):
    """A token count known only as a typical and a worst-case figure."""

    typical: Tokens
    """Used for the expected cost."""
    max: Tokens
    """Used for the maximum cost (what a budget must hold)."""

    @model_validator(mode="after")
    def _ordered(self) -> Allowance:
        if self.max < self.typical:
            msg = f"max ({self.max}) must be >= typical ({self.typical})"
            raise ValueError(msg)
        return self


class ModeRates(_Model):
    """Prices in one mode (standard = synchronous calls, batch = the Batch API)."""

    input_text_per_mtok: Price | None = None
    """USD per 1M prompt text tokens."""
    input_image_per_mtok: Price | None = None
    """USD per 1M input image tokens (edits, reference images)."""
    output_text_per_mtok: Price | None = None
    """USD per 1M output text tokens; thinking tokens are billed at this rate."""
    output_image_per_mtok: Price | None = None
    """USD per 1M output image tokens."""
    per_image: dict[str, Price] | None = None
    """Flat USD per output image by size, for models priced per image (Imagen 4, DALL-E 2)."""
    per_image_by_quality: dict[str, dict[str, Price]] | None = None
    """Flat USD per output image by quality, then size (DALL-E 3, gpt-image-1-mini)."""


class Lifecycle(_Model):
    """When a model can be called."""

    available_from: dt.date | None = None
    """First day the id works; None when it predates every card."""
    shutdown_on: dt.date | None = None
    """First day the id no longer works; None while no date is announced."""
    successors: list[str] = []
    """Ids to suggest when this one is shut down."""


class SizeRule(_Model):
    """Any `WxH` within limits, priced by a published token rule (gpt-image-2).

    Valid: both edges multiples of `step`, `min_pixels` <= W*H <= `max_pixels`, longest edge at
    most `max_edge`, longest / shortest at most `max_aspect_ratio`. Output image tokens of one
    image, with q = `quality_factors[quality]`, L = longest edge and S = shortest edge:
    `f = (2*q*S + L) // (2*L)`, `tokens = ceil(q * f * (base_pixels + W*H) / divisor)`.
    """

    step: int = Field(ge=1)
    min_pixels: int = Field(ge=1)
    max_pixels: int = Field(ge=1)
    max_edge: int = Field(ge=1)
    max_aspect_ratio: Decimal = Field(gt=0)
    """Longest edge / shortest edge, at most."""
    quality_factors: dict[str, int]
    """q of the token rule, per quality."""
    base_pixels: int = Field(ge=0)
    divisor: int = Field(ge=1)


AssumedFact = Literal["output_image_tokens", "input_image_tokens", "thinking_tokens"]
"""Card facts an estimate can rest on that no source publishes."""


class ModelCard(_Model):
    """One model id and everything needed to price a request to it."""

    id: str
    """The id sent to the API (e.g. `gemini-3-pro-image`)."""
    aliases: list[str] = []
    """Other ids the API accepts, priced the same and sent as written (e.g. dated snapshots)."""
    nicknames: list[str] = []
    """Names users type that the API does not accept (e.g. `nano-banana-2`): priced as this
    model and sent as `id`."""
    display_name: str | None = None
    lifecycle: Lifecycle = Lifecycle()
    sizes: list[str]
    """Allowed output sizes (Gemini `512`/`1K`/`2K`/`4K`; OpenAI `WxH`)."""
    default_size: str
    """Size used when a request names none (costguard always sends it explicitly)."""
    qualities: list[str] = []
    """Allowed qualities; empty when the model has none (Gemini)."""
    default_quality: str | None = None
    aspect_ratios: list[str] = []
    """Allowed aspect ratios; empty when the size already fixes the shape (OpenAI)."""
    default_aspect_ratio: str | None = None
    max_n: int = Field(1, ge=1)
    """Most images one request may ask for."""
    output_image_tokens: dict[str, Tokens] | None = None
    """Output image tokens per image by size (token-priced models without qualities)."""
    output_image_tokens_by_quality: dict[str, dict[str, Tokens]] | None = None
    """Output image tokens per image by quality, then size (OpenAI GPT Image)."""
    any_size: SizeRule | None = None
    """Sizes besides `sizes` the model accepts, and their output tokens (gpt-image-2)."""
    input_image_tokens: Allowance | None = None
    """Tokens billed per input image (edits); typical and worst case."""
    thinking_tokens: Allowance | None = None
    """Thinking tokens per request for models that always think."""
    modes: dict[Mode, ModeRates]
    """Prices per mode. A model without a `batch` entry cannot be batched."""
    sources: list[str] = []
    """Ids of the card's sources these figures come from."""
    notes: list[str] = []
    """Choices made where sources disagree, and assumptions (e.g. thinking allowances)."""
    assumed: dict[AssumedFact, str] = {}
    """Facts no source publishes, each with what is assumed: every estimate that rests on one
    says so."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:  # noqa: PLR0912 - one readable list of checks
        if "standard" not in self.modes:
            msg = "modes.standard is required (batch is optional)"
            raise ValueError(msg)
        if self.default_size not in self.sizes:
            msg = f"default_size {self.default_size!r} is not in sizes {self.sizes}"
            raise ValueError(msg)
        if self.qualities and self.default_quality not in self.qualities:
            msg = f"default_quality {self.default_quality!r} is not in qualities {self.qualities}"
            raise ValueError(msg)
        if not self.qualities and self.default_quality is not None:
            msg = "default_quality is set but qualities is empty"
            raise ValueError(msg)
        if self.aspect_ratios and self.default_aspect_ratio not in self.aspect_ratios:
            msg = (
                f"default_aspect_ratio {self.default_aspect_ratio!r} "
                f"is not in aspect_ratios {self.aspect_ratios}"
            )
            raise ValueError(msg)
        token_priced = any(r.output_image_per_mtok is not None for r in self.modes.values())
        image_priced = any(
            r.per_image is not None or r.per_image_by_quality is not None
            for r in self.modes.values()
        )
        if token_priced == image_priced:
            msg = (
                "each model is priced either per output image token (output_image_per_mtok) "
                "or per image (per_image / per_image_by_quality), not both or neither"
            )
            raise ValueError(msg)
        if token_priced:
            table = self.output_image_tokens_by_quality if self.qualities else None
            if self.qualities:
                if table is None:
                    msg = "output_image_tokens_by_quality is required for a model with qualities"
                    raise ValueError(msg)
                _check_grid(table, self.qualities, self.sizes, "output_image_tokens_by_quality")
            elif self.output_image_tokens is None:
                msg = "output_image_tokens is required for a token-priced model"
                raise ValueError(msg)
            else:
                _check_keys(self.output_image_tokens, self.sizes, "output_image_tokens")
        for mode, rates in self.modes.items():
            if token_priced and rates.output_image_per_mtok is None:
                msg = f"modes.{mode}.output_image_per_mtok is required (the model is token-priced)"
                raise ValueError(msg)
            if rates.per_image is not None:
                _check_keys(rates.per_image, self.sizes, f"modes.{mode}.per_image")
            if rates.per_image_by_quality is not None:
                _check_grid(
                    rates.per_image_by_quality,
                    self.qualities,
                    self.sizes,
                    f"modes.{mode}.per_image_by_quality",
                )
        if self.any_size is not None:
            self._check_any_size(self.any_size)
        for fact in self.assumed:
            if fact != "output_image_tokens" and getattr(self, fact) is None:
                msg = f"assumed names {fact}, which this model does not have"
                raise ValueError(msg)
        return self

    def _check_any_size(self, rule: SizeRule) -> None:
        """The rule covers every quality, and the listed sizes and tokens follow it."""
        from costguard.pricing.sizes import rule_problem, rule_tokens

        if not self.qualities or sorted(rule.quality_factors) != sorted(self.qualities):
            msg = f"any_size.quality_factors must have exactly the qualities {self.qualities}"
            raise ValueError(msg)
        table = self.output_image_tokens_by_quality or {}
        for size in self.sizes:
            problem = rule_problem(rule, size)
            if problem is not None:
                msg = f"size {size!r} is listed but any_size refuses it: {problem}"
                raise ValueError(msg)
            for quality in self.qualities:
                listed, ruled = table[quality][size], rule_tokens(rule, size, quality)
                if listed != ruled:
                    msg = (
                        f"output_image_tokens_by_quality.{quality}.{size} is {listed} but "
                        f"any_size gives {ruled}"
                    )
                    raise ValueError(msg)

    @property
    def ids(self) -> list[str]:
        """The id and its aliases (the ids the API accepts)."""
        return [self.id, *self.aliases]

    @property
    def names(self) -> list[str]:
        """Every name that resolves to this model: id, aliases and nicknames."""
        return [self.id, *self.aliases, *self.nicknames]


def _check_keys(table: Mapping[str, object], sizes: list[str], where: str) -> None:
    missing = [s for s in sizes if s not in table]
    extra = [s for s in table if s not in sizes]
    if missing or extra:
        msg = f"{where} must have exactly the sizes {sizes}; missing {missing}, unknown {extra}"
        raise ValueError(msg)


def _check_grid(
    table: dict[str, dict[str, object]] | dict[str, dict[str, int]] | dict[str, dict[str, Decimal]],
    qualities: list[str],
    sizes: list[str],
    where: str,
) -> None:
    if sorted(table) != sorted(qualities):
        msg = f"{where} must have exactly the qualities {qualities}, has {sorted(table)}"
        raise ValueError(msg)
    for quality, row in table.items():
        _check_keys(dict(row), sizes, f"{where}.{quality}")


class RateCard(_Model):
    """Every price one provider charges from `effective_from` until the next card."""

    provider: Provider
    effective_from: dt.date
    """Must match the file name (`pricing/<provider>/<effective_from>.yaml`)."""
    currency: Literal["USD"] = "USD"
    sources: list[Source] = Field(min_length=1)
    notes: list[str] = []
    """Card-wide notes: which source was chosen where sources disagree."""
    models: list[ModelCard] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> RateCard:
        seen: dict[str, str] = {}
        source_ids = {s.id for s in self.sources}
        for model in self.models:
            for model_id in model.names:
                if model_id in seen:
                    msg = (
                        f"model id {model_id!r} appears twice (in {seen[model_id]} and {model.id})"
                    )
                    raise ValueError(msg)
                seen[model_id] = model.id
            unknown = [s for s in model.sources if s not in source_ids]
            if unknown:
                msg = f"models.{model.id}.sources names unknown sources {unknown}"
                raise ValueError(msg)
        return self

    @property
    def card_id(self) -> str:
        """Stable id of this card, recorded with every estimate and ledger entry."""
        return f"{self.provider}/{self.effective_from.isoformat()}"
