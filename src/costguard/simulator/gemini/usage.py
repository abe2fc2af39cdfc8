"""The usage table (`fixtures/gemini/usage.yaml`): the models served, their token figures and
the pixel sizes of their images."""

from __future__ import annotations

import re
from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costguard.resources import data_dir

_PIXELS = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")
DEFAULT_ASPECT_RATIO = "1:1"
"""The ratio of an image whose request names none."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelUsage(_Data):
    """Token figures of one image model."""

    aliases: list[str] = []
    """Other ids served with the same figures (previews)."""
    output_image_tokens: int | None = Field(None, gt=0)
    """Tokens per output image for a model without `imageSize` (every aspect ratio)."""
    output_image_tokens_by_size: dict[str, int] | None = None
    """Tokens per output image by `imageSize`, for models that take one."""
    input_image_tokens: int = Field(gt=0)
    """Prompt tokens per input image part."""
    thinking_tokens: int = Field(ge=0)
    """`thoughtsTokenCount` per request; 0 for models that do not think."""
    aspect_ratios: list[str] = Field(min_length=1)
    """Accepted `imageConfig.aspectRatio` values."""
    pixels: dict[str, dict[str, str]] = Field(min_length=1)
    """Image pixel sizes (`WxH`) by `imageSize`, then `aspectRatio`; a model without
    `imageSize` lists its one size under the table's default size."""

    @model_validator(mode="after")
    def _one_table(self) -> ModelUsage:
        if (self.output_image_tokens is None) == (self.output_image_tokens_by_size is None):
            msg = "give exactly one of output_image_tokens and output_image_tokens_by_size"
            raise ValueError(msg)
        return self

    @property
    def sizes(self) -> list[str]:
        """Accepted `imageSize` values; empty when the model takes none."""
        return list(self.output_image_tokens_by_size or {})

    def image_tokens(self, size: str | None, default_size: str) -> int:
        """Output tokens of one image of `size` (the default size when None)."""
        if self.output_image_tokens is not None:
            return self.output_image_tokens
        table = self.output_image_tokens_by_size or {}
        return table[size or default_size]

    def pixel_size(self, size: str | None, ratio: str | None, default_size: str) -> tuple[int, int]:
        """(width, height) of one image of `size` and `ratio` (defaults: `default_size`, 1:1)."""
        by_ratio = self.pixels[size if size and self.sizes else default_size]
        width, height = by_ratio[ratio or DEFAULT_ASPECT_RATIO].split("x")
        return int(width), int(height)


class UsageTable(_Data):
    """The whole `usage.yaml`."""

    default_image_size: str
    aspect_ratios: dict[str, list[str]] = {}
    """Named lists referenced by YAML anchors."""
    pixels: dict[str, dict[str, dict[str, str]]] = {}
    """Named pixel tables referenced by YAML anchors."""
    models: dict[str, ModelUsage] = Field(min_length=1)

    @model_validator(mode="after")
    def _defaults_exist(self) -> UsageTable:
        for name, usage in self.models.items():
            if usage.sizes and self.default_image_size not in usage.sizes:
                msg = f"models.{name}: default_image_size {self.default_image_size!r} not in sizes"
                raise ValueError(msg)
            for size in usage.sizes or [self.default_image_size]:
                table = usage.pixels.get(size, {})
                ratios = usage.aspect_ratios
                missing = [r for r in ratios if not _PIXELS.fullmatch(table.get(r, ""))]
                if missing:
                    msg = f"models.{name}.pixels.{size}: no WxH size for {', '.join(missing)}"
                    raise ValueError(msg)
        return self

    def lookup(self, model: str) -> ModelUsage | None:
        """The figures for a model id or alias (`models/` prefix allowed)."""
        name = model.removeprefix("models/")
        if name in self.models:
            return self.models[name]
        for usage in self.models.values():
            if name in usage.aliases:
                return usage
        return None


@cache
def load_usage_table() -> UsageTable:
    """`fixtures/gemini/usage.yaml`, validated."""
    path = data_dir("fixtures") / "gemini" / "usage.yaml"
    try:
        return UsageTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        msg = f"{path}: invalid Gemini usage table: {exc}"
        raise ValueError(msg) from exc
