"""Image requests: validation as the API does it, and their token usage.

Sizes and output image tokens per model come from `fixtures/openai/usage.yaml`: a model either
lists its sizes with their tokens, or takes any size within limits and bills it by a rule whose
parameters are data (`SizeRule`). Input text tokens are estimated from the prompt's length.
Synchronous calls, batch lines and the batch `usage` totals all count through `ImageCall`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costguard.resources import data_dir
from costguard.simulator.openai import params
from costguard.simulator.openai.errors import ApiError, _supported, api_error

if TYPE_CHECKING:
    from costguard.simulator.scenario import TokenSpread

OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
QUALITIES = ("low", "medium", "high", "auto")
_WXH = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SizeRule(_Data):
    """Any `WxH` within limits, billed by the gpt-image-2 rule (parameters from the table)."""

    step: int = Field(gt=0)
    """Both edges are multiples of this many pixels."""
    min_pixels: int = Field(gt=0)
    max_pixels: int = Field(gt=0)
    max_edge: int = Field(gt=0)
    """The longest edge, at most."""
    max_aspect_ratio: int = Field(gt=0)
    """Longest edge / shortest edge, at most (N for N:1)."""
    quality_factors: dict[str, int] = Field(min_length=1)
    """q per quality (low, medium, high)."""
    base_pixels: int = Field(gt=0)
    divisor: int = Field(gt=0)

    def problem(self, size: str) -> str | None:  # noqa: PLR0911 - one return per rule, in order
        """Why the API refuses `size` (the sentence after "Invalid size 'WxH'."), or None.

        The checks run in the order the API's messages were observed: format, step, longest
        edge, aspect ratio [inferred position], pixel budget.
        """
        match = _WXH.fullmatch(size)
        if match is None:
            return "Expected WIDTHxHEIGHT, for example '1824x1024'."
        width, height = int(match.group(1)), int(match.group(2))
        long, short = max(width, height), min(width, height)
        if width % self.step or height % self.step:
            return f"Width and height must both be divisible by {self.step}."
        if long > self.max_edge:
            return f"The longest edge must be less than or equal to {self.max_edge}."
        if long > self.max_aspect_ratio * short:
            return (
                "The aspect ratio (longest edge / shortest edge) must be less than or equal "
                f"to {self.max_aspect_ratio}:1."
            )
        if width * height < self.min_pixels:
            return "Requested resolution is below the current minimum pixel budget."
        if width * height > self.max_pixels:
            return "Requested resolution exceeds the current pixel budget."
        return None

    def tokens(self, width: int, height: int, quality: str) -> int:
        """Output tokens of one image: `f = (2*q*S + L) // (2*L)`, then
        `ceil(q * f * (base_pixels + W*H) / divisor)`, in exact integers."""
        q = self.quality_factors[quality]
        long, short = max(width, height), min(width, height)
        f = (2 * q * short + long) // (2 * long)
        return -(-q * f * (self.base_pixels + width * height) // self.divisor)


class Family(_Data):
    """How a group of models sizes and bills its output images: listed sizes, or a rule."""

    sizes: dict[str, dict[str, int]] | None = None
    """Tokens of one image by size (`WxH`), then quality."""
    any_size: SizeRule | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Family:
        if (self.sizes is None) == (self.any_size is None):
            msg = "give exactly one of sizes and any_size"
            raise ValueError(msg)
        return self

    def tokens(self, size: str, quality: str) -> int:
        """Output tokens of one image of a size the family accepts."""
        if self.sizes is not None:
            return self.sizes[size][quality]
        assert self.any_size is not None
        width, height = size.split("x")
        return self.any_size.tokens(int(width), int(height), quality)


class _Defaults(_Data):
    size: str
    quality: str


class UsageTable(_Data):
    """`fixtures/openai/usage.yaml`: each model's sizes and output image tokens."""

    defaults: _Defaults
    edit_input_image_tokens: int = Field(gt=0)
    families: dict[str, Family] = {}
    """Named families, referenced by YAML anchors."""
    output_image_tokens: dict[str, Family] = Field(min_length=1)
    """The models served, each with its family."""

    @model_validator(mode="after")
    def _defaults_priced(self) -> UsageTable:
        for name, family in self.output_image_tokens.items():
            rule = family.any_size
            if rule is not None:
                if rule.problem(self.defaults.size) is not None:
                    msg = f"output_image_tokens.{name}: refuses the default size"
                    raise ValueError(msg)
                missing = [q for q in QUALITIES[:3] if q not in rule.quality_factors]
            else:
                listed = family.sizes or {}
                missing = [
                    f"{size} {q}"
                    for size, row in listed.items()
                    for q in QUALITIES[:3]
                    if q not in row
                ]
                if self.defaults.size not in listed:
                    missing.append(self.defaults.size)
            if missing:
                msg = f"output_image_tokens.{name}: no tokens for {', '.join(missing)}"
                raise ValueError(msg)
        return self

    @property
    def default_size(self) -> str:
        """The size `auto` is billed and drawn as."""
        return self.defaults.size

    @property
    def default_quality(self) -> str:
        """The quality `auto` is billed as."""
        return self.defaults.quality

    @classmethod
    @cache
    def load(cls) -> UsageTable:
        """The shipped table, validated."""
        path = data_dir("fixtures") / "openai" / "usage.yaml"
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValueError) as exc:
            msg = f"{path}: invalid OpenAI usage table: {exc}"
            raise ValueError(msg) from exc

    def size_error(self, model: str, size: str) -> ApiError | None:
        """The API's 400 for a size `model` does not take (None when it takes it)."""
        family = self.output_image_tokens[model]
        if size == "auto":
            return None
        if family.any_size is not None:
            problem = family.any_size.problem(size)
            if problem is None:
                return None
            return api_error(400, "400_invalid_size", rule=problem, value=size)
        if size in (family.sizes or {}):
            return None
        supported = _supported([*(family.sizes or {}), "auto"])
        return api_error(400, "400_invalid_value", value=size, supported=supported, param="size")


def text_tokens(prompt: str) -> int:
    """Input text tokens of a prompt, estimated as ceil(UTF-8 bytes / 4)."""
    return math.ceil(len(prompt.encode("utf-8")) / 4)


@dataclass(frozen=True)
class ImageCall:
    """A validated image request: what it asks for and what it will be billed."""

    model: str
    prompt: str
    size: str
    quality: str
    n: int
    output_format: str
    background: str
    input_images: int
    key: str
    """What per-request draws are seeded from: a batch line's `custom_id`, or a digest of a
    synchronous call's body (`body_key`)."""
    stream: bool = False
    """Answer as server-sent events (synchronous calls only)."""
    partial_images: int = 0
    """Partial images streamed before each final one (0 to 3)."""

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of each output image, from `size` (`WxH`)."""
        width, height = self.size.split("x")
        return int(width), int(height)

    @property
    def input_text_tokens(self) -> int:
        """Estimated prompt tokens."""
        return text_tokens(self.prompt)

    def input_image_tokens(self, table: UsageTable, spread: TokenSpread | None = None) -> int:
        """Tokens of the input images (edits only): the table's figure per image, or with
        `spread` (the scenario's `input_image_tokens`) a draw per image for this request."""
        if spread is None:
            return self.input_images * table.edit_input_image_tokens
        return sum(
            spread.draw(self.key, f"input_image_tokens:{i}") for i in range(self.input_images)
        )

    def output_tokens(self, table: UsageTable) -> int:
        """Image tokens of all output images (a streamed call's partial images add
        `PARTIAL_IMAGE_TOKENS` each)."""
        one = table.output_image_tokens[self.model].tokens(self.size, self.quality)
        if self.stream:
            one += self.partial_images * params.PARTIAL_IMAGE_TOKENS
        return one * self.n

    def usage(self, table: UsageTable, spread: TokenSpread | None = None) -> dict[str, Any]:
        """The response's `usage` object (`spread`: as for `input_image_tokens`)."""
        text = self.input_text_tokens
        image = self.input_image_tokens(table, spread)
        out = self.output_tokens(table)
        return {
            "input_tokens": text + image,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": out,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
            "total_tokens": text + image + out,
        }


def enqueued_tokens(call: ImageCall, table: UsageTable, spread: TokenSpread | None = None) -> int:
    """The tokens one batch request enqueues, counted against `Quota.enqueued_tokens`.

    The figures the request's `usage` reports when it is answered (`ImageCall.usage`), with
    no image drawn: input text tokens (ceil(UTF-8 bytes of the prompt / 4)) + input image
    tokens (edits: `edit_input_image_tokens` per input image, or the scenario's
    `input_image_tokens` draws) + output image tokens (the model's table figure for the
    request's size and quality, times `n`). A refusal is not foreseen: the provider counts a
    request when it is enqueued, before the model runs. A batch enqueues the sum over its
    requests; requests the API would reject (bad parameters, unknown model) count 0.
    """
    return (
        call.input_text_tokens + call.input_image_tokens(table, spread) + call.output_tokens(table)
    )


def body_key(body: dict[str, Any]) -> str:
    """The key of a request without one (a synchronous call): a digest of its body, so the
    same request draws the same figures on every run."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "body:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_image_call(
    body: dict[str, Any],
    table: UsageTable,
    *,
    edit: bool,
    input_images: int = 0,
    key: str | None = None,
) -> ImageCall:
    """Validate an images.generate / images.edit body as the API does.

    `key` is the request's key (a batch line's `custom_id`); None: `body_key(body)`.

    Raises:
        ApiError: 400 for a missing or invalid parameter, 404 for an unknown model.
    """
    params.check_names(body, edit=edit)
    model = body.get("model")
    if model is None or model == "":
        model = params.default_model(body, edit=edit)
    if not isinstance(model, str):
        raise api_error(400, "400_missing_required_parameter", param="model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise api_error(400, "400_missing_required_parameter", param="prompt")
    if model in params.RETIRED_MODELS:
        raise params.retired(model)
    if model not in table.output_image_tokens:
        raise api_error(404, "404_model", model=model)
    size = str(body.get("size") or "auto")
    size_error = table.size_error(model, size)
    if size_error is not None:
        raise size_error
    quality = str(body.get("quality") or "auto")
    if quality not in QUALITIES:
        supported = _supported(QUALITIES)
        raise api_error(
            400, "400_invalid_value", value=quality, supported=supported, param="quality"
        )
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise api_error(
            400, "400_invalid_value", value=str(n), supported="integers 1 to 10", param="n"
        )
    output_format = str(body.get("output_format") or "png")
    if output_format not in OUTPUT_FORMATS:
        supported = _supported(list(OUTPUT_FORMATS))
        raise api_error(
            400,
            "400_invalid_value",
            value=output_format,
            supported=supported,
            param="output_format",
        )
    background, partial_images = params.check_gpt_options(body, output_format)
    if edit and input_images < 1:
        raise api_error(400, "400_missing_required_parameter", param="image")
    return ImageCall(
        model=model,
        prompt=prompt,
        size=table.default_size if size == "auto" else size,
        quality=table.default_quality if quality == "auto" else quality,
        n=n,
        output_format=output_format,
        background="transparent" if background == "transparent" else "opaque",
        input_images=input_images,
        key=body_key(body) if key is None else key,
        stream=params.flag(body.get("stream")),
        partial_images=partial_images,
    )


def _json_images_count(body: dict[str, Any]) -> int:
    """Input images of a JSON edit body (`images: [{image_url|file_id}]`, or `image`)."""
    images = body.get("images", body.get("image"))
    if isinstance(images, list):
        return len(images)
    return 1 if images else 0
