"""The images endpoints' parameters as the API checks them: names, enums, defaults, retirements.

Sources: OpenAI's OpenAPI spec (`CreateImageRequest`, `CreateImageEditRequest`: the enums and
the `model` defaults) and the `openai` Python SDK 3.57 (`ImageGenerateParams`,
`ImageEditParams`: the parameter names it sends, newer than the spec; the retirement dates in
its docstrings). A name outside these is answered as the API answers one it does not know
(`Unknown parameter: 'x'.`, measured for `response_format` on gpt-image-1 in vercel/ai#6102).
"""

from __future__ import annotations

from typing import Any

from costguard.simulator.openai.errors import ApiError, _supported, api_error

GENERATE_PARAMS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "quality",
        "response_format",
        "output_format",
        "output_compression",
        "stream",
        "partial_images",
        "size",
        "moderation",
        "background",
        "style",
        "user",
        "safety_identifier",
        "complexity",
        "frame_count",
        "frame_duration_ms",
        "svg",
    }
)
"""Every body parameter of `POST /v1/images/generations` (spec and SDK 3.57)."""

EDIT_PARAMS = (GENERATE_PARAMS - {"moderation", "style"}) | {
    "image",
    "images",
    "mask",
    "markup",
    "input_fidelity",
}
"""Every body parameter of `POST /v1/images/edits` (`images` is the JSON form's list)."""

PARTIAL_IMAGE_TOKENS = 100
"""Output image tokens each streamed partial image adds (OpenAI's image generation guide,
"Streaming": "Each partial image incurs an additional 100 image output tokens")."""

MODERATIONS = ("low", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")

GPT_IMAGE_ONLY = frozenset(
    {"output_format", "output_compression", "background", "moderation", "stream", "partial_images"}
)
"""Parameters "only supported for the GPT image models" (spec): sent without `model`, they make
`images.generate` default to a GPT image model instead of `dall-e-2`."""

DEFAULT_GENERATE_MODEL = "dall-e-2"
"""`CreateImageRequest.model` default: "Defaults to `dall-e-2` unless a parameter specific to
the GPT image models is used"."""
DEFAULT_GENERATE_GPT_MODEL = "gpt-image-1"
"""The GPT image model `images.generate` falls back to when a GPT-only parameter is sent
without `model` [inferred: the spec does not name it; gpt-image-1 was the first]."""
DEFAULT_EDIT_MODEL = "gpt-image-1.5"
"""`CreateImageEditRequest.model` default."""

RETIRED_MODELS = {"dall-e-2": "2026-05-12", "dall-e-3": "2026-05-12"}
"""Models the API no longer serves, with the date (SDK 3.57 docstrings: "This model was
retired on May 12, 2026")."""

VARIATION_MODELS = ("dall-e-2", "dall-e-3", "gpt-image-1")
"""The models `POST /v1/images/variations` ever named (SDK 3.57: "Deprecated values"); the
endpoint itself "is retired and no longer available"."""


def check_names(body: dict[str, Any], *, edit: bool) -> None:
    """400 `unknown_parameter` for the first body parameter the endpoint does not take.

    A multipart field `svg[model]` counts as `svg`.
    """
    known = EDIT_PARAMS if edit else GENERATE_PARAMS
    if known.issuperset(body):
        return  # the common case, cheap for a 50,000-line batch
    for name in body:
        if name.split("[", 1)[0] not in known:
            raise unknown_parameter(name)


def unknown_parameter(name: str) -> ApiError:
    """The API's 400 for a parameter it does not take."""
    return api_error(400, "400_unknown_parameter", param=name)


def default_model(body: dict[str, Any], *, edit: bool) -> str:
    """The model the API uses when the body names none (see the constants above)."""
    if edit:
        return DEFAULT_EDIT_MODEL
    gpt_only = any(body.get(name) not in (None, False) for name in GPT_IMAGE_ONLY)
    if body.get("quality") in ("low", "medium", "high"):
        gpt_only = True
    return DEFAULT_GENERATE_GPT_MODEL if gpt_only else DEFAULT_GENERATE_MODEL


def retired(model: str) -> ApiError:
    """The API's 404 for a model it has shut down (the wording it gave for earlier shut-down
    models, e.g. text-davinci-003: openai/openai-quickstart-node#127)."""
    return api_error(404, "404_model_deprecated", model=model)


def check_enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    """The value of an enum parameter (None when absent), or a 400 `invalid_value`."""
    value = body.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise api_error(
            400, "400_invalid_value", value=str(value), supported=_supported(allowed), param=name
        )
    return str(value)


def flag(value: Any) -> bool:
    """A boolean parameter as JSON (`true`) or a multipart field (`"true"`) carries it."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


_CHECKED_OPTIONS = frozenset({"response_format", "moderation", "background", "partial_images"})


def check_gpt_options(body: dict[str, Any], output_format: str) -> tuple[str, int]:
    """Check what only GPT image models take; return the background and partial images.

    `response_format` is refused whatever its value (GPT image models always answer
    `b64_json`), `moderation` and `background` must be in their enums, a transparent
    background needs PNG or WebP [inferred wording], `partial_images` is 0 to 3.
    """
    if body.keys().isdisjoint(_CHECKED_OPTIONS):
        return "auto", 0
    if body.get("response_format") is not None:
        raise unknown_parameter("response_format")
    check_enum(body, "moderation", MODERATIONS)
    background = check_enum(body, "background", BACKGROUNDS) or "auto"
    if background == "transparent" and output_format == "jpeg":
        raise api_error(
            400,
            "400_invalid_param",
            message="Transparent background is not supported for output format 'jpeg'; "
            "use 'png' or 'webp'.",
            param="background",
            code="invalid_value",
        )
    partial = body.get("partial_images") or 0
    if isinstance(partial, str) and partial.isdigit():
        partial = int(partial)
    if not isinstance(partial, int) or isinstance(partial, bool) or not 0 <= partial <= 3:
        raise api_error(
            400,
            "400_invalid_value",
            value=str(partial),
            supported="integers 0 to 3",
            param="partial_images",
        )
    return background, partial
