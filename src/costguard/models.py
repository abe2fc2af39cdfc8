"""Domain types shared by the rate cards, the queue reader, the pricing engine and the runner."""

from __future__ import annotations

from typing import Literal, NamedTuple

Provider = Literal["gemini", "openai"]
"""The providers costguard prices and drives."""


INLINE_IMAGE = "inline:"
"""Prefix of an `ImageRequest.images` entry for an image carried in the request itself (a
Gemini line's `inlineData`, sent with its `passthrough`), followed by where it is in the line."""


class ImageRequest(NamedTuple):
    """One image request from a queue, normalised across the three queue formats.

    Fields left out of the queue line are filled from the CLI options and then from the
    model's rate-card defaults, so every priced request has an explicit size (and quality
    where the model has qualities) and costguard sends exactly what it priced. A NamedTuple
    (immutable, and cheap to build a million times while streaming a queue).
    """

    key: str
    prompt: str
    model: str
    provider: Provider
    size: str
    quality: str | None = None
    aspect_ratio: str | None = None
    n: int = 1
    images: tuple[str, ...] = ()
    line: int = 0
    """1-based line in the queue file, for error messages and retry files."""
    prompt_bytes: int = 0
    """UTF-8 length of the prompt (and any system text), the basis of the token estimate."""
    text_tokens_max: int = 0
    """Text output tokens the request may produce besides thinking: a Gemini request asking
    for TEXT as well as IMAGE, bounded by its `maxOutputTokens` (0: it asks for no text)."""
    passthrough: str = ""
    """Request fields sent as written, a JSON object in the provider's wire form (Gemini:
    `contents`, `systemInstruction`, `safetySettings`, price-neutral `generationConfig`
    fields; OpenAI: `background`, `output_format`, ...). Empty: costguard builds the request."""


class Usage(NamedTuple):
    """Token counts a provider reported for one request (what it bills)."""

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0
    """Text output plus thinking tokens (both billed at the output text rate)."""
    images: int = 0
    """Output images returned (per-image-priced models bill these)."""

    def as_dict(self) -> dict[str, int]:
        """For the manifest."""
        return self._asdict()
