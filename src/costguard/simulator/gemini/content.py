"""GenerateContent requests and responses: what the API would reject, which requests are
refused, and the response (image, usage) for the rest.

Per-request outcome rule (position `i` is the 0-based index of the request in its batch; a
synchronous call's position is its per-simulator call index, under the default scenario):

* refused when the simulator's shared rule `Scenario.refuses(i, prompt)` says so: the
  scenario's `refusals.every` > 0 and `i % every == offset % every`, or the prompt contains
  `REFUSE_MARKER` (under every scenario). The Gemini refusal kind is
  `REFUSAL_KINDS[(i // every) % 4]` for the scenario's positions (successive refusals cycle
  through the four kinds) and `REFUSAL_KINDS[i % 4]` for marker-only refusals;
* a request the API would reject (a part field of the wrong type or bytes that are not
  base64, see `parts.py`; unsupported `imageSize`/`aspectRatio`, no `contents`, unknown
  per-request `model`) becomes a per-request error (`{"code": 3, "message": ...}`); in an
  inline batch create, the part errors refuse the whole create instead (`batch_routes.py`);
* everything else yields one PNG image (the Developer API has no output type option), at the
  pixel size of the model's table for the request's `imageSize` and `aspectRatio` (default
  1K, 1:1), drawn as the job's scenario says (`Scenario.image_pixels`, `image_bytes`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

from costguard.simulator.gemini.parts import contents_problem
from costguard.simulator.gemini.usage import UsageTable
from costguard.simulator.gemini.wire import JSON, _derived_id, _get
from costguard.simulator.scenario import Scenario, TokenSpread
from costguard.simulator.splice import Base64

MAX_INLINE_BYTES = 20 * 1024 * 1024
"""Request body limit for `generateContent` and inline `batchGenerateContent` (docs: 20 MB)."""

RefusalKind = Literal["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "NO_IMAGE", "PROMPT_BLOCKED"]
REFUSAL_KINDS: tuple[RefusalKind, ...] = (
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "NO_IMAGE",
    "PROMPT_BLOCKED",
)
"""The refusal kinds in cycle order. `PROMPT_BLOCKED` is `promptFeedback.blockReason:
PROHIBITED_CONTENT` with no candidates; the others are candidates with that `finishReason`."""

_FINISH_MESSAGES = {
    "IMAGE_SAFETY": (
        "Unable to show the generated image. The image was filtered out because it violated "
        "Google's Generative AI Prohibited Use policy. You will not be charged for blocked "
        "images. Try rephrasing the prompt."
    ),
    "IMAGE_PROHIBITED_CONTENT": (
        "Unable to show the generated image. The image was filtered out because it contained "
        "prohibited content. You will not be charged for blocked images."
    ),
}
FINISH_MESSAGES = _FINISH_MESSAGES
"""The `finishMessage` of each finish-reason refusal (public for replayed refusals)."""
_NO_IMAGE_TEXT = "I can't create that image. Try describing a different scene."
_IMAGE_TEXT = "Here is the image you asked for."


def _parts(request: JSON) -> Iterator[JSON]:
    """Every part of the request's contents and system instruction."""
    contents = _get(request, "contents")
    if isinstance(contents, dict):
        contents = [contents]
    system = _get(request, "systemInstruction")
    for content in [*(contents if isinstance(contents, list) else []), system]:
        parts = _get(content, "parts")
        if isinstance(parts, list):
            yield from (p for p in parts if isinstance(p, dict))


def prompt_text(request: JSON) -> str:
    """The text of the user's contents (what the refusal marker is looked for in)."""
    return " ".join(str(p["text"]) for p in _parts(request) if isinstance(p.get("text"), str))


def _input_images(request: JSON) -> int:
    count = 0
    for part in _parts(request):
        blob = _get(part, "inlineData") or _get(part, "fileData")
        mime = _get(blob, "mimeType")
        if isinstance(mime, str) and mime.startswith("image/"):
            count += 1
    return count


def text_tokens(text: str) -> int:
    """The simulator's text token count: ceil(utf-8 bytes / 4)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def validate_request(  # noqa: PLR0911 - one check per return, in the API's order
    model: str, request: object, table: UsageTable
) -> str | None:
    """Why the API would reject this GenerateContentRequest for `model` (None when valid)."""
    if not isinstance(request, dict):
        return "Invalid JSON payload received. Expected an object for GenerateContentRequest."
    unparsed = contents_problem(request)
    if unparsed:
        return unparsed
    usage = table.lookup(model)
    if usage is None:
        return f"models/{model} is not found."
    contents = _get(request, "contents")
    if not contents or not isinstance(contents, list | dict):
        return "* GenerateContentRequest.contents: contents is not specified"
    config = _get(request, "generationConfig") or {}
    modalities = _get(config, "responseModalities")
    if isinstance(modalities, list) and "IMAGE" not in [str(m).upper() for m in modalities]:
        text = ", ".join(str(m).lower() for m in modalities) or "none"
        return f"Model does not support the requested response modalities: {text}"
    image_config = _get(config, "imageConfig") or {}
    size = _get(image_config, "imageSize")
    if size is not None:
        if not usage.sizes:
            return f"imageSize is not supported by models/{model}."
        if size not in usage.sizes:
            allowed = ", ".join(repr(s) for s in usage.sizes)
            return f"Unsupported imageSize {size!r} for models/{model}; use one of {allowed}."
    ratio = _get(image_config, "aspectRatio")
    if ratio is not None and ratio not in usage.aspect_ratios:
        allowed = ", ".join(usage.aspect_ratios)
        return f"Unsupported aspectRatio {ratio!r} for models/{model}; use one of {allowed}."
    return None


def request_key(key: object, request: object, model: str) -> str:
    """What per-request draws are seeded from: the request's own key (a result-file line's
    `key`, an inline request's `metadata.key`) when it has one, else a digest of the model
    and the request body, so the same request draws the same figures on every run."""
    if isinstance(key, str) and key:
        return key
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return "body:" + hashlib.sha256(f"{model}\n{body}".encode()).hexdigest()[:32]


def refusal_for(scenario: Scenario, position: int, prompt: str) -> RefusalKind | None:
    """The refusal kind of the request at `position` with `prompt`, or None (see module doc).

    Whether a request is refused is the simulator's shared rule (`Scenario.refuses`); which
    Gemini refusal it gets is decided here.
    """
    if not scenario.refuses(position, prompt):
        return None
    every = scenario.refusals.every
    if every > 0 and position % every == scenario.refusals.offset % every:
        return REFUSAL_KINDS[(position // every) % len(REFUSAL_KINDS)]
    return REFUSAL_KINDS[position % len(REFUSAL_KINDS)]


ImageFn = Callable[[str, str, tuple[int, int]], Base64]
"""Draws the image of a seed: (seed, mime, (width, height)) -> its base64 (`splice.Base64`:
responses are dumped with `splice.dump_pieces`)."""


def _image_candidate(
    model: str, modalities: list[Any], seed: str, image_for: ImageFn, pixels: tuple[int, int]
) -> tuple[JSON, int]:
    """A STOP candidate carrying one image (and a short text when TEXT was asked for)."""
    parts: list[JSON] = []
    out_text = 0
    if "TEXT" in [str(m).upper() for m in modalities]:
        parts.append({"text": _IMAGE_TEXT})
        out_text = text_tokens(_IMAGE_TEXT)
    data = image_for(seed, "image/png", pixels)
    image_part: JSON = {"inlineData": {"mimeType": "image/png", "data": data}}
    if model.removeprefix("models/").startswith("gemini-3"):
        signature = hashlib.sha256(f"sig:{seed}".encode()).digest()
        image_part["thoughtSignature"] = base64.b64encode(signature).decode("ascii")
    parts.append(image_part)
    content = {"parts": parts, "role": "model"}
    return {"content": content, "finishReason": "STOP", "index": 0}, out_text


def enqueued_tokens(
    model: str,
    request: JSON,
    table: UsageTable,
    *,
    key: object = None,
    thinking: TokenSpread | None = None,
) -> int:
    """The tokens one valid batch request enqueues, counted against `Quota.enqueued_tokens`.

    The `totalTokenCount` `generate_response` reports when the request is answered with its
    image, with no image drawn: prompt text tokens (ceil(UTF-8 bytes of the text parts / 4))
    + input image tokens (the model's `input_image_tokens` per image part) + output image
    tokens (the model's figure for the request's `imageSize`) + the short text's tokens when
    TEXT is among the response modalities (the default) + thinking tokens (the model's fixed
    figure, or the scenario's `thinking_tokens` draw for the request's key). A refusal is not
    foreseen: the provider counts a request when it is enqueued, before the model runs. A batch
    enqueues the sum over its requests; requests the API would reject count 0.
    `key`: the request's own key (see `request_key`); `model` without `models/` is fine.
    """
    usage = table.lookup(model)
    assert usage is not None  # validated by the caller
    config = _get(request, "generationConfig") or {}
    tokens = text_tokens(prompt_text(request)) + _input_images(request) * usage.input_image_tokens
    size = _get(_get(config, "imageConfig") or {}, "imageSize")
    tokens += usage.image_tokens(size, table.default_image_size)
    modalities = _get(config, "responseModalities") or ["TEXT", "IMAGE"]
    if "TEXT" in [str(m).upper() for m in modalities]:
        tokens += text_tokens(_IMAGE_TEXT)
    thoughts = usage.thinking_tokens
    if thinking is not None and thoughts:
        thoughts = thinking.draw(request_key(key, request, model), "thinking_tokens")
    return tokens + thoughts


_USAGE_ORDER = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "promptTokensDetails",
    "candidatesTokensDetails",
    "thoughtsTokenCount",
)


def generate_response(
    model: str,
    request: JSON,
    *,
    refusal: RefusalKind | None,
    seed: str,
    image_for: ImageFn,
    table: UsageTable,
    key: str,
    thinking: TokenSpread | None = None,
) -> JSON:
    """The GenerateContentResponse for a valid request (see `validate_request`).

    `key` is the request's key (see `request_key`); with `thinking` (the scenario's
    `thinking_tokens`), a model that thinks reports a `thoughtsTokenCount` drawn for that key
    instead of its fixed figure.
    """
    usage = table.lookup(model)
    assert usage is not None  # validated by the caller
    config = _get(request, "generationConfig") or {}
    prompt_tokens = text_tokens(prompt_text(request))
    image_tokens_in = _input_images(request) * usage.input_image_tokens
    prompt_details = []
    if prompt_tokens:
        prompt_details.append({"modality": "TEXT", "tokenCount": prompt_tokens})
    if image_tokens_in:
        prompt_details.append({"modality": "IMAGE", "tokenCount": image_tokens_in})
    metered: JSON = {"promptTokenCount": prompt_tokens + image_tokens_in}
    thoughts = usage.thinking_tokens
    if thinking is not None and thoughts:
        thoughts = thinking.draw(key, "thinking_tokens")
    response: JSON = {}
    if refusal == "PROMPT_BLOCKED":
        thoughts = 0  # blocked before the model ran
        response["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
    elif refusal in ("IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"):
        message = _FINISH_MESSAGES[refusal]
        response["candidates"] = [{"finishReason": refusal, "finishMessage": message, "index": 0}]
    elif refusal == "NO_IMAGE":
        out = text_tokens(_NO_IMAGE_TEXT)
        content = {"parts": [{"text": _NO_IMAGE_TEXT}], "role": "model"}
        response["candidates"] = [{"content": content, "finishReason": "NO_IMAGE", "index": 0}]
        metered["candidatesTokenCount"] = out
        metered["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": out}]
    else:
        image_config = _get(config, "imageConfig") or {}
        size = _get(image_config, "imageSize")
        out_image = usage.image_tokens(size, table.default_image_size)
        ratio = _get(image_config, "aspectRatio")
        pixels = usage.pixel_size(size, ratio, table.default_image_size)
        modalities = _get(config, "responseModalities") or ["TEXT", "IMAGE"]
        candidate, out_text = _image_candidate(model, modalities, seed, image_for, pixels)
        response["candidates"] = [candidate]
        metered["candidatesTokenCount"] = out_text + out_image
        details = [{"modality": "TEXT", "tokenCount": out_text}] if out_text else []
        details.append({"modality": "IMAGE", "tokenCount": out_image})
        metered["candidatesTokensDetails"] = details
    candidates = metered.get("candidatesTokenCount", 0)
    metered["totalTokenCount"] = metered["promptTokenCount"] + candidates + thoughts
    if prompt_details:
        metered["promptTokensDetails"] = prompt_details
    if thoughts:
        metered["thoughtsTokenCount"] = thoughts
    response["usageMetadata"] = {k: metered[k] for k in _USAGE_ORDER if k in metered}
    response["modelVersion"] = model.removeprefix("models/")
    response["responseId"] = _derived_id(seed)
    return response
