"""One queue line of each format, read into what costguard prices and what it sends as written.

Every field a line may hold is in one of three kinds, per format:

- **priced**: the fields the price depends on (prompt and system text, input images, size,
  quality, aspect ratio, image count, text output and its `maxOutputTokens`);
- **sent as written**: fields that cannot change the price (Gemini `safetySettings`,
  `temperature`, `seed`; OpenAI `background`, `output_format`, ...), passed to the provider
  unchanged so what is sent is what the line asked for;
- **refused**: everything else, with the reason: a field costguard cannot price (Gemini
  `tools`, `cachedContent`, `thinkingConfig`; OpenAI `partial_images`, `input_fidelity`) or does
  not know. Nothing is ever dropped silently: a dropped field would be priced as absent and,
  worse, sent as absent.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from costguard.media import base64_problem, type_problem
from costguard.models import INLINE_IMAGE, Provider


class LineError(Exception):
    """One bad line: the field and the message (the reader adds file and line)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(slots=True)
class Line:
    """What one queue line asks for, before its model, size and quality are checked."""

    key: str
    prompt: str
    model: str | None
    size: str | None
    quality: str | None
    aspect_ratio: str | None
    n: object
    images: tuple[str, ...] = ()
    """Input images: local paths (checked by the reader), URIs, `data:` URLs, or (Gemini
    lines) the location of an image carried in the line itself."""
    extra_bytes: int = 0
    """UTF-8 length of input text besides the prompt (a Gemini system instruction)."""
    text_tokens_max: int = 0
    passthrough: str = ""
    provider: Provider | None = None
    """The provider the format belongs to (None: the costguard format, any provider)."""
    field_prefix: str = ""
    local_images: bool = False
    """Whether `images` may name local files, checked by the reader (costguard and OpenAI
    lines; a Gemini line carries its images inline or as URIs)."""
    images_field: str = "images"
    """How the line names its images, for errors (`images`, `body.image`, `body.images`)."""


# costguard ---------------------------------------------------------------------------------

COSTGUARD_FIELDS = ("key", "prompt", "model", "size", "aspect_ratio", "quality", "n", "images")


def costguard_line(obj: dict[str, Any]) -> Line:
    """A costguard-format line: `{"key", "prompt", "model"?, "size"?, ...}`."""
    _known(obj, COSTGUARD_FIELDS, "")
    key = obj.get("key")
    if type(key) is not str or not key.strip():
        key = string(obj, "key")
    prompt = obj.get("prompt")
    if type(prompt) is not str or not prompt.strip():
        prompt = string(obj, "prompt")
    images = obj.get("images")
    if images is not None and (
        not isinstance(images, list) or not all(isinstance(i, str) and i for i in images)
    ):
        raise LineError("images", "must be a list of paths or URIs (strings)")
    get = obj.get
    return Line(
        key=key,
        prompt=prompt,
        model=optional_string(obj, "model") if "model" in obj else None,
        size=s if type(s := get("size")) is str and s else optional_string(obj, "size"),
        quality=optional_string(obj, "quality") if "quality" in obj else None,
        aspect_ratio=optional_string(obj, "aspect_ratio") if "aspect_ratio" in obj else None,
        n=get("n", 1),
        images=tuple(images) if images else (),
        local_images=True,
    )


# gemini ------------------------------------------------------------------------------------

_GEMINI_REFUSED = {
    "tools": "tools cannot be priced before the response (function declarations are billed as "
    "input, Google Search grounding per query); costguard sends image requests without tools",
    "toolConfig": "tool settings cannot be priced; costguard sends image requests without tools",
    "cachedContent": "cached content cannot be priced from the line (its tokens and storage are "
    "billed by the cache); put its text in the request instead",
}
_GEMINI_REQUEST = (
    "contents",
    "model",
    "systemInstruction",
    "safetySettings",
    "generationConfig",
    *_GEMINI_REFUSED,
)
_CONFIG_PRICED = ("imageConfig", "candidateCount", "responseModalities", "maxOutputTokens")
_CONFIG_SENT = (
    "temperature",
    "topP",
    "topK",
    "seed",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
)
_CONFIG_REFUSED = {
    "thinkingConfig": "changes how much the model thinks; costguard prices the thinking on the "
    "model's rate card, so remove it",
    "mediaResolution": "changes the tokens each input image costs; costguard prices the default "
    "resolution, so remove it",
    "responseMimeType": "structured text output cannot be priced; remove it",
    "responseSchema": "structured text output cannot be priced; remove it",
    "responseJsonSchema": "structured text output cannot be priced; remove it",
    "speechConfig": "audio output cannot be priced; remove it",
    "responseLogprobs": "log probabilities are not returned for image output; remove it",
    "logprobs": "log probabilities are not returned for image output; remove it",
}
_IMAGE_CONFIG = ("aspectRatio", "imageSize")
_MODALITIES = ("IMAGE", "TEXT")
_PART_KINDS = ("text", "inlineData", "fileData")
_CAMEL = re.compile(r"_([a-z])")


def gemini_line(obj: dict[str, Any]) -> Line:  # noqa: PLR0912 - one walk over a nested request
    """A Gemini batch line `{"key", "request": GenerateContentRequest}` (REST or proto names)."""
    _known(obj, ("key", "request"), "")
    key = string(obj, "key")
    raw = obj.get("request")
    if not isinstance(raw, dict):
        raise LineError("request", "missing or not an object (GenerateContentRequest)")
    request = _camel_keys(raw)
    for name in request:
        if name in _GEMINI_REFUSED:
            raise LineError(f"request.{name}", _GEMINI_REFUSED[name])
    _known(request, _GEMINI_REQUEST, "request.")
    sent: dict[str, Any] = {}
    texts: list[str] = []
    images: list[str] = []
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise LineError("request.contents", "missing or empty")
    sent["contents"] = [
        _content(content, f"request.contents[{i}]", texts, images)
        for i, content in enumerate(contents)
    ]
    prompt = "\n".join(texts)
    if not prompt.strip():
        raise LineError("request.contents", "no text part: the prompt is missing")
    extra_bytes = 0
    if "systemInstruction" in request:
        system_texts: list[str] = []
        sent["systemInstruction"] = _content(
            request["systemInstruction"], "request.systemInstruction", system_texts, None
        )
        extra_bytes = sum(len(t.encode()) for t in system_texts)
    if "safetySettings" in request:
        sent["safetySettings"] = _safety_settings(request["safetySettings"])
    config = request.get("generationConfig", {})
    if not isinstance(config, dict):
        raise LineError("request.generationConfig", "must be an object")
    for name in config:
        if name in _CONFIG_REFUSED:
            raise LineError(f"request.generationConfig.{name}", _CONFIG_REFUSED[name])
    _known(config, (*_CONFIG_PRICED, *_CONFIG_SENT), "request.generationConfig.")
    image_config = config.get("imageConfig", {})
    if not isinstance(image_config, dict):
        raise LineError("request.generationConfig.imageConfig", "must be an object")
    _known(image_config, _IMAGE_CONFIG, "request.generationConfig.imageConfig.")
    sent_config = {name: _sent_value(name, config[name]) for name in _CONFIG_SENT if name in config}
    text_tokens_max = _text_output(config, sent_config)
    if sent_config:
        sent["generationConfig"] = sent_config
    model = request.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise LineError("request.model", f"must be a non-empty string, got {model!r}")
    return Line(
        key=key,
        prompt=prompt,
        model=model.removeprefix("models/") if model else None,
        size=optional_string(
            image_config, "imageSize", "request.generationConfig.imageConfig.imageSize"
        ),
        quality=None,
        aspect_ratio=optional_string(
            image_config, "aspectRatio", "request.generationConfig.imageConfig.aspectRatio"
        ),
        n=config.get("candidateCount", 1),
        images=tuple(images),
        extra_bytes=extra_bytes,
        text_tokens_max=text_tokens_max,
        passthrough=json.dumps(sent, ensure_ascii=False, separators=(",", ":")),
        provider="gemini",
    )


_NUMBERS = ("temperature", "topP", "presencePenalty", "frequencyPenalty")
_INTEGERS = ("topK", "seed")


def _sent_value(name: str, value: object) -> object:
    """A price-neutral generationConfig value, checked for the type the API takes (a value the
    API would refuse must fail here, not after the run is admitted)."""
    where = f"request.generationConfig.{name}"
    if name in _NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise LineError(where, f"must be a number, got {value!r}")
    if name in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
        raise LineError(where, f"must be a whole number, got {value!r}")
    if name == "stopSequences" and (
        not isinstance(value, list) or not all(isinstance(s, str) for s in value)
    ):
        raise LineError(where, f"must be a list of strings, got {value!r}")
    return value


def _safety_settings(settings: object) -> list[dict[str, str]]:
    """`safetySettings`, each `{"category", "threshold"}` strings (a misspelt key would make
    the SDK refuse the whole batch after admission)."""
    if not isinstance(settings, list):
        raise LineError("request.safetySettings", "must be a list of objects")
    out = []
    for i, setting in enumerate(settings):
        where = f"request.safetySettings[{i}]"
        if not isinstance(setting, dict):
            raise LineError(where, "must be an object")
        _known(setting, ("category", "threshold"), f"{where}.")
        for name in ("category", "threshold"):
            string(setting, name, f"{where}.{name}")
        out.append(setting)
    return out


def _text_output(config: dict[str, Any], sent: dict[str, Any]) -> int:
    """Text tokens the request may produce besides thinking (priced in the maximum)."""
    where = "request.generationConfig."
    limit = config.get("maxOutputTokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise LineError(
                f"{where}maxOutputTokens", f"must be a whole number >= 1, got {limit!r}"
            )
        sent["maxOutputTokens"] = limit
    modalities = config.get("responseModalities")
    if modalities is None:
        return 0
    if not isinstance(modalities, list) or not all(m in _MODALITIES for m in modalities):
        raise LineError(
            f"{where}responseModalities",
            f"must be a list of IMAGE and TEXT, got {modalities!r} (audio cannot be priced)",
        )
    if "IMAGE" not in modalities:
        raise LineError(
            f"{where}responseModalities", "must include IMAGE: costguard runs image queues"
        )
    sent["responseModalities"] = modalities
    if "TEXT" not in modalities:
        return 0
    if limit is None:
        raise LineError(
            f"{where}maxOutputTokens",
            "responseModalities asks for TEXT, whose length has no bound without "
            "maxOutputTokens: set it, so the maximum cost is known",
        )
    return int(limit)


def _content(
    content: object, where: str, texts: list[str], images: list[str] | None
) -> dict[str, Any]:
    """Check one Content (its role and parts); collect its text and image parts."""
    if not isinstance(content, dict):
        raise LineError(where, "must be an object")
    _known(content, ("role", "parts"), f"{where}.")
    role = content.get("role")
    if role is not None and role not in ("user", "model"):
        raise LineError(f"{where}.role", f'must be "user" or "model", got {role!r}')
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise LineError(f"{where}.parts", "missing, empty or not a list")
    for j, part in enumerate(parts):
        _part(part, f"{where}.parts[{j}]", texts, images)
    return content


def _part(part: object, where: str, texts: list[str], images: list[str] | None) -> None:
    if not isinstance(part, dict):
        raise LineError(where, "must be an object")
    kinds = [k for k in _PART_KINDS if k in part]
    others = [k for k in part if k not in _PART_KINDS and k != "thoughtSignature"]
    if others:
        raise LineError(
            f"{where}.{others[0]}",
            "cannot be priced: costguard prices text, inlineData and fileData parts",
        )
    if len(kinds) != 1:
        raise LineError(where, "needs exactly one of text, inlineData or fileData")
    kind = kinds[0]
    if kind == "text":
        text = part["text"]
        if not isinstance(text, str):
            raise LineError(f"{where}.text", f"must be a string, got {type(text).__name__}")
        texts.append(text)
        return
    if images is None:
        raise LineError(f"{where}.{kind}", "a system instruction takes text only")
    value = part[kind]
    if not isinstance(value, dict):
        raise LineError(f"{where}.{kind}", "must be an object")
    if kind == "inlineData":
        _known(value, ("mimeType", "data"), f"{where}.inlineData.")
        mime = string(value, "mimeType", f"{where}.inlineData.mimeType")
        data = string(value, "data", f"{where}.inlineData.data")
        problem = base64_problem(data, mime, "gemini")
        if problem:
            raise LineError(f"{where}.inlineData.data", f"the image {problem}")
        images.append(f"{INLINE_IMAGE}{where}")
        return
    _known(value, ("mimeType", "fileUri"), f"{where}.fileData.")
    uri = string(value, "fileUri", f"{where}.fileData.fileUri")
    declared = value.get("mimeType")
    if declared is not None:
        problem = type_problem(declared if isinstance(declared, str) else None, "gemini")
        if problem:
            raise LineError(f"{where}.fileData.mimeType", f"{declared!r} {problem}")
    images.append(uri)


def _camel_keys(request: dict[str, Any]) -> dict[str, Any]:
    """The request with proto field names (`generation_config`) in REST form (`generationConfig`).

    Walks only the structures costguard reads, to a fixed depth.
    """

    def camel(obj: object) -> Any:
        if not isinstance(obj, dict):
            return obj
        return {_CAMEL.sub(lambda m: m[1].upper(), k): v for k, v in obj.items()}

    def content(obj: object) -> Any:
        obj = camel(obj)
        if isinstance(obj, dict) and isinstance(obj.get("parts"), list):
            parts = []
            for part in obj["parts"]:
                part = camel(part)  # noqa: PLW2901
                if isinstance(part, dict):
                    part = {k: camel(v) if k in _PART_KINDS else v for k, v in part.items()}  # noqa: PLW2901
                parts.append(part)
            obj = {**obj, "parts": parts}
        return obj

    out: dict[str, Any] = camel(request)
    if isinstance(out.get("contents"), list):
        out["contents"] = [content(c) for c in out["contents"]]
    if "systemInstruction" in out:
        out["systemInstruction"] = content(out["systemInstruction"])
    config = camel(out.get("generationConfig"))
    if isinstance(config, dict):
        if "imageConfig" in config:
            config["imageConfig"] = camel(config["imageConfig"])
        out["generationConfig"] = config
    if isinstance(out.get("safetySettings"), list):
        out["safetySettings"] = [camel(s) for s in out["safetySettings"]]
    return out


# openai ------------------------------------------------------------------------------------

OPENAI_URLS = ("/v1/images/generations", "/v1/images/edits")
_OPENAI_PRICED = ("model", "prompt", "size", "quality", "n")
_OPENAI_SENT = ("background", "moderation", "output_format", "output_compression", "user")
_OPENAI_REFUSED = {
    "stream": "a batch cannot stream, and streamed partial images are billed extra; remove it",
    "partial_images": "partial images are billed as extra output tokens that cannot be known "
    "in advance; remove it",
    "input_fidelity": "changes the tokens each input image costs; costguard prices the "
    "model's default, so remove it",
    "mask": "masked edits are not supported by costguard yet; send the edit without a mask",
    "response_format": "GPT Image models always return base64 images; remove it",
}


def openai_line(obj: dict[str, Any]) -> Line:
    """An OpenAI batch line `{"custom_id", "method": "POST", "url", "body"}`."""
    _known(obj, ("custom_id", "method", "url", "body"), "")
    key = string(obj, "custom_id")
    if obj.get("method") != "POST":
        raise LineError("method", f'must be "POST", got {obj.get("method")!r}')
    url = obj.get("url")
    if url not in OPENAI_URLS:
        allowed = " or ".join(OPENAI_URLS)
        raise LineError("url", f"must be {allowed}, got {url!r}")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise LineError("body", "missing or not an object")
    for name in body:
        if name in _OPENAI_REFUSED:
            raise LineError(f"body.{name}", _OPENAI_REFUSED[name])
    edits = url == "/v1/images/edits"
    image_fields = ("images", "image") if edits else ()
    _known(body, (*_OPENAI_PRICED, *_OPENAI_SENT, *image_fields), "body.")
    prompt = string(body, "prompt", "body.prompt")
    images = _openai_images(body) if edits else ()
    sent = {name: _openai_sent(name, body[name]) for name in _OPENAI_SENT if name in body}
    return Line(
        key=key,
        prompt=prompt,
        model=optional_string(body, "model", "body.model"),
        size=optional_string(body, "size", "body.size"),
        quality=optional_string(body, "quality", "body.quality"),
        aspect_ratio=None,
        n=body.get("n", 1),
        images=images,
        passthrough=json.dumps(sent, ensure_ascii=False, separators=(",", ":")) if sent else "",
        provider="openai",
        field_prefix="body.",
        local_images=True,
        images_field=_openai_images_field(body),
    )


_OPENAI_CHOICES = {
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
    "output_format": ("png", "jpeg", "webp"),
}


def _openai_sent(name: str, value: object) -> object:
    """A price-neutral Images API value, checked against what the API takes (a request it
    would refuse must fail here, not fail again and again through retry.jsonl)."""
    where = f"body.{name}"
    choices = _OPENAI_CHOICES.get(name)
    if choices is not None and value not in choices:
        raise LineError(where, f"must be one of {', '.join(choices)}, got {value!r}")
    if name == "output_compression" and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100
    ):
        raise LineError(where, f"must be a whole number from 0 to 100, got {value!r}")
    if name == "user" and not isinstance(value, str):
        raise LineError(where, f"must be a string, got {value!r}")
    return value


def _openai_images(body: dict[str, Any]) -> tuple[str, ...]:
    field = _openai_images_field(body)
    raw = body.get("images", body.get("image"))
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise LineError(field, "an edit needs at least one input image")
    refs: list[str] = []
    for i, ref in enumerate(raw):
        if isinstance(ref, dict):
            ref = ref.get("image_url") or ref.get("file_id")  # noqa: PLW2901
        if not isinstance(ref, str) or not ref:
            raise LineError(f"{field}[{i}]", "needs an image_url or a file_id")
        refs.append(ref)
    return tuple(refs)


def _openai_images_field(body: dict[str, Any]) -> str:
    return "body.image" if "image" in body and "images" not in body else "body.images"


# shared ------------------------------------------------------------------------------------


def data_url_problem(url: str, provider: Provider) -> str | None:
    """Why the image in a `data:` URL cannot go to `provider`, or None when it can."""
    header, comma, data = url.partition(",")
    mime = header.removeprefix("data:").removesuffix(";base64")
    if not comma or not header.endswith(";base64") or not mime:
        return "is not a base64 data: URL (data:<type>;base64,<data>)"
    return base64_problem(data, mime, provider)


def string(obj: dict[str, Any], name: str, field: str | None = None) -> str:
    """A required, non-blank string field."""
    value = obj.get(name)
    if value is None:
        raise LineError(field or name, "missing")
    if not isinstance(value, str):
        raise LineError(field or name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise LineError(field or name, "is empty")
    return value


def optional_string(obj: dict[str, Any], name: str, field: str | None = None) -> str | None:
    """An optional string field: absent or null gives None; anything but a string is an error."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise LineError(field or name, f"must be a non-empty string, got {value!r}")
    return value


def _known(obj: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """Refuse the first field of `obj` that is not in `known`, suggesting a close name."""
    for name in obj:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        raise LineError(
            f"{prefix}{name}", f"unknown field: costguard cannot tell what it costs{hint}"
        )
