"""Image requests: validation as the API does it, and their token usage.

Output image tokens per model, size and quality come from `fixtures/openai/usage.yaml`; input
text tokens are estimated from the prompt's length. Synchronous calls, batch lines and the batch
`usage` totals all count through `ImageCall`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from costguard.resources import data_dir
from costguard.simulator.openai.errors import _supported, api_error

OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
QUALITIES = ("low", "medium", "high", "auto")


@dataclass(frozen=True)
class UsageTable:
    """`fixtures/openai/usage.yaml`: output image tokens per model, size and quality."""

    output: dict[str, dict[str, dict[str, int]]]
    default_size: str
    default_quality: str
    edit_input_image_tokens: int

    @classmethod
    @cache
    def load(cls) -> UsageTable:
        """The shipped table."""
        path = data_dir("fixtures") / "openai" / "usage.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(
            output=data["output_image_tokens"],
            default_size=data["defaults"]["size"],
            default_quality=data["defaults"]["quality"],
            edit_input_image_tokens=int(data["edit_input_image_tokens"]),
        )


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

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of each output image, from `size` (`WxH`)."""
        width, height = self.size.split("x")
        return int(width), int(height)

    @property
    def input_text_tokens(self) -> int:
        """Estimated prompt tokens."""
        return text_tokens(self.prompt)

    def input_image_tokens(self, table: UsageTable) -> int:
        """Tokens of the input images (edits only)."""
        return self.input_images * table.edit_input_image_tokens

    def output_tokens(self, table: UsageTable) -> int:
        """Image tokens of all output images."""
        billed_size = table.default_size if self.size == "auto" else self.size
        billed_quality = table.default_quality if self.quality == "auto" else self.quality
        return table.output[self.model][billed_size][billed_quality] * self.n

    def usage(self, table: UsageTable) -> dict[str, Any]:
        """The response's `usage` object."""
        text = self.input_text_tokens
        image = self.input_image_tokens(table)
        out = self.output_tokens(table)
        return {
            "input_tokens": text + image,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": out,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
            "total_tokens": text + image + out,
        }


def parse_image_call(
    body: dict[str, Any], table: UsageTable, *, edit: bool, input_images: int = 0
) -> ImageCall:
    """Validate an images.generate / images.edit body as the API does.

    Raises:
        ApiError: 400 for a missing or invalid parameter, 404 for an unknown model.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise api_error(400, "400_missing_required_parameter", param="model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise api_error(400, "400_missing_required_parameter", param="prompt")
    sizes = table.output.get(model)
    if sizes is None:
        raise api_error(404, "404_model", model=model)
    size = str(body.get("size") or "auto")
    if size != "auto" and size not in sizes:
        supported = _supported([*sizes, "auto"])
        raise api_error(400, "400_invalid_value", value=size, supported=supported, param="size")
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
    if edit and input_images < 1:
        raise api_error(400, "400_missing_required_parameter", param="image")
    return ImageCall(
        model=model,
        prompt=prompt,
        size=table.default_size if size == "auto" else size,
        quality=table.default_quality if quality == "auto" else quality,
        n=n,
        output_format=output_format,
        background=str(body.get("background") or "opaque"),
        input_images=input_images,
    )


def _json_images_count(body: dict[str, Any]) -> int:
    """Input images of a JSON edit body (`images: [{image_url|file_id}]`, or `image`)."""
    images = body.get("images", body.get("image"))
    if isinstance(images, list):
        return len(images)
    return 1 if images else 0
