"""Stream queue files into `ImageRequest`s, in constant memory, with errors by line and field.

Three formats, detected per file from its first non-blank line (or forced with `--format`):

- `costguard`: `{"key", "prompt", "model"?, "size"?, "aspect_ratio"?, "quality"?, "n"?, "images"?}`
- `gemini`: a Gemini batch line `{"key", "request": GenerateContentRequest}`; the model comes
  from `--model` (a Gemini batch job has one model).
- `openai`: an OpenAI batch line `{"custom_id", "method": "POST", "url":
  "/v1/images/generations" | "/v1/images/edits", "body": {...}}`.

Lines are read as bytes: UTF-8 with or without BOM, LF or CRLF, blank lines skipped. Every bad
line is reported as `file:line: field: message`; the reader keeps going so one run lists them
all (the CLI shows the first 20), and callers must not use what they read when `errors` is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from costguard.errors import (
    CostguardError,
    ModelUnavailableError,
    QueueError,
    RateCardError,
    UsageError,
)
from costguard.models import ImageRequest, Provider
from costguard.pricing.engine import RateBook, Resolved

Format = Literal["costguard", "gemini", "openai"]
FORMATS: tuple[Format, ...] = ("costguard", "gemini", "openai")
MAX_ERRORS_KEPT = 20
OPENAI_URLS = ("/v1/images/generations", "/v1/images/edits")
_URI_PREFIXES = ("http://", "https://", "gs://", "data:", "file-", "files/")
MB = 1024 * 1024
INPUT_IMAGE_LIMITS: dict[Provider, int] = {"openai": 50 * MB, "gemini": 15 * MB}
"""The largest local input image each provider takes, in bytes.

OpenAI's image edits take files under 50 MB each. Gemini takes images inline, in requests of
at most 20 MB, and base64 makes an image a third larger: about 15 MB of image per request.
"""


@dataclass(frozen=True, slots=True)
class Defaults:
    """Values for fields a queue line leaves out (from CLI options or settings)."""

    model: str | None = None
    size: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None


NO_DEFAULTS = Defaults()


class KeySet:
    """Compact set of keys for duplicate detection: 16 bytes a slot, not ~80 for a `set[str]`.

    Open addressing (load <= 1/2) over parallel arrays: a 64-bit and an independent 32-bit hash
    of each key (a false duplicate needs a 96-bit collision: about 1e-17 for a million keys),
    and the line each key was first seen on.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._mask = capacity - 1
        self._h1 = array("q", [0]) * capacity
        self._h2 = array("I", [0]) * capacity
        self._line = array("I", [0]) * capacity
        self._count = 0

    def add(self, key: str, line: int) -> int:
        """Record `key` first seen on `line`; return the earlier line if it was seen, else 0."""
        h1 = hash(key) or 1
        h2 = (hash((key, 0x5BD1E995)) & 0xFFFFFFFF) or 1
        table1, table2 = self._h1, self._h2
        idx = h1 & self._mask
        while True:
            slot = table1[idx]
            if slot == 0:
                break
            if slot == h1 and table2[idx] == h2:
                return int(self._line[idx])
            idx = (idx + 1) & self._mask
        table1[idx] = h1
        table2[idx] = h2
        self._line[idx] = line
        self._count += 1
        if self._count * 2 > self._mask:
            self._grow()
        return 0

    def _grow(self) -> None:
        old = (self._h1, self._h2, self._line)
        capacity = (self._mask + 1) * 2
        self._mask = capacity - 1
        self._h1 = array("q", [0]) * capacity
        self._h2 = array("I", [0]) * capacity
        self._line = array("I", [0]) * capacity
        for h1, h2, line in zip(*old, strict=True):
            if h1 == 0:
                continue
            idx = h1 & self._mask
            while self._h1[idx] != 0:
                idx = (idx + 1) & self._mask
            self._h1[idx], self._h2[idx], self._line[idx] = h1, h2, line

    def __len__(self) -> int:
        return self._count


_DECODER = json.JSONDecoder()

_GEMINI_FIELDS = {
    "size": "request.generationConfig.imageConfig.imageSize",
    "aspect_ratio": "request.generationConfig.imageConfig.aspectRatio",
    "n": "request.generationConfig.candidateCount",
    "images": "request.contents",
}

_Checked = tuple[str, Provider, str, str | None, str | None, bool]
"""A validated combination: model id, provider, size, quality, aspect ratio, takes images."""


def _json_problem(text: str) -> str:
    """json's own description of why `text` is not one JSON value."""
    try:
        json.loads(text)
    except ValueError as exc:
        return str(exc)
    return "not a single JSON value"


class _LineError(Exception):
    """One bad line: the field and the message (the reader adds file and line)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def detect_format(path: Path) -> Format:
    """The format of a queue file, from its first non-blank line (costguard when unsure)."""
    with path.open("rb") as handle:
        for raw in handle:
            line = raw.strip().removeprefix(b"\xef\xbb\xbf").strip()
            if not line:
                continue
            try:
                first = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                return "costguard"
            return _format_of(first) or "costguard"
    return "costguard"


def _format_of(obj: object) -> Format | None:
    if not isinstance(obj, dict):
        return None
    if "custom_id" in obj or "body" in obj:
        return "openai"
    if "request" in obj:
        return "gemini"
    if "prompt" in obj:
        return "costguard"
    return None


class QueueReader:
    """Iterate a queue file's valid requests; collect errors for the bad lines.

    Use: `reader = QueueReader(...)`, iterate it to the end, then `reader.check()` raises
    `QueueError` when any line was bad. Nothing read from a file with errors may be used.
    """

    def __init__(
        self,
        path: Path,
        book: RateBook,
        at: dt.date,
        *,
        defaults: Defaults = NO_DEFAULTS,
        fmt: Format | None = None,
        check_images: bool = True,
    ) -> None:
        self.path = path
        self.book = book
        self.at = at
        self.defaults = defaults
        self.check_images = check_images
        if not path.is_file():
            msg = f"{path}: queue file not found"
            raise UsageError(msg)
        self.format: Format = fmt or detect_format(path)
        self.errors: list[str] = []
        self.error_count = 0
        self.warnings: list[str] = []
        self.lines = 0
        self._keys = KeySet()
        self._models: dict[str, Resolved | _LineError] = {}
        self._combos: dict[object, _Checked | _LineError] = {}
        self._base = path.parent

    def __iter__(self) -> Iterator[ImageRequest]:
        parse = {
            "costguard": self._costguard,
            "gemini": self._gemini,
            "openai": self._openai,
        }[self.format]
        scan = _DECODER.scan_once  # type: ignore[attr-defined]  # the C scanner, public in practice
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                data = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                try:
                    text = data.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    self.lines += 1
                    self._error(number, "(line)", f"not valid UTF-8 at byte {exc.start}")
                    continue
                if not text:
                    continue
                self.lines += 1
                try:
                    obj, end = scan(text, 0)
                except (StopIteration, ValueError):  # ValueError: JSONDecodeError mid-value
                    end = -1
                if end != len(text):
                    self._error(number, "(line)", f"invalid JSON: {_json_problem(text)}")
                    continue
                if not isinstance(obj, dict):
                    self._error(number, "(line)", "each line must be a JSON object")
                    continue
                try:
                    request = parse(obj, number)
                except _LineError as exc:
                    self._error(number, exc.field, exc.message)
                    continue
                first = self._keys.add(request.key, number)
                if first:
                    self._error(
                        number,
                        self._key_field,
                        f"duplicate key {request.key!r} (first used on line {first}); "
                        "results are matched by key, so keys must be unique",
                    )
                    continue
                yield request
        if self.lines == 0 and not self.errors:
            self._error(0, "(file)", "the queue is empty")

    @property
    def _key_field(self) -> str:
        return "custom_id" if self.format == "openai" else "key"

    def check(self) -> None:
        """Raise `QueueError` listing the bad lines (first 20, with the total)."""
        if self.errors:
            raise QueueError(self.errors, total=self.error_count)

    def _error(self, line: int, field: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            where = f"{self.path}:{line}" if line else str(self.path)
            self.errors.append(f"{where}: {field}: {message}")

    # formats -----------------------------------------------------------------------------

    def _costguard(self, obj: dict[str, Any], line: int) -> ImageRequest:
        if "prompt" not in obj and _format_of(obj) not in (None, "costguard"):
            raise _LineError(
                "(line)",
                f"this line is in the {_format_of(obj)} format but the file was read as "
                f"{self.format} (from its first line); use one format per file or --format",
            )
        key = obj.get("key")
        if type(key) is not str or not key.strip():
            key = _string(obj, "key")
        prompt = obj.get("prompt")
        if type(prompt) is not str or not prompt.strip():
            prompt = _string(obj, "prompt")
        images = obj.get("images")
        if images is not None and (
            not isinstance(images, list) or not all(isinstance(i, str) and i for i in images)
        ):
            raise _LineError("images", "must be a list of paths or URIs (strings)")
        get = obj.get
        return self._request(
            line,
            key=key,
            prompt=prompt,
            model=_optional_string(obj, "model") if "model" in obj else None,
            size=s if type(s := get("size")) is str and s else _optional_string(obj, "size"),
            quality=_optional_string(obj, "quality") if "quality" in obj else None,
            aspect_ratio=_optional_string(obj, "aspect_ratio") if "aspect_ratio" in obj else None,
            n=get("n", 1),
            images=tuple(images) if images else (),
            extra_bytes=0,
        )

    def _gemini(self, obj: dict[str, Any], line: int) -> ImageRequest:  # noqa: PLR0912 - walks a nested request
        key = _string(obj, "key")
        request = obj.get("request")
        if not isinstance(request, dict):
            raise _LineError("request", "missing or not an object (GenerateContentRequest)")
        texts: list[str] = []
        images: list[str] = []
        contents = request.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _LineError("request.contents", "missing or empty")
        for i, content in enumerate(contents):
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list):
                raise _LineError(f"request.contents[{i}].parts", "missing or not a list")
            for j, part in enumerate(parts):
                where = f"request.contents[{i}].parts[{j}]"
                if not isinstance(part, dict):
                    raise _LineError(where, "must be an object")
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif "inlineData" in part or "inline_data" in part:
                    images.append(f"inline:{where}")
                elif "fileData" in part or "file_data" in part:
                    data = part.get("fileData") or part.get("file_data") or {}
                    images.append(str(data.get("fileUri") or data.get("file_uri") or where))
                else:
                    raise _LineError(where, "expected text, inlineData or fileData")
        prompt = "\n".join(texts)
        if not prompt.strip():
            raise _LineError("request.contents", "no text part: the prompt is missing")
        system = request.get("systemInstruction") or request.get("system_instruction") or {}
        system_bytes = sum(
            len(p["text"].encode())
            for p in (system.get("parts", []) if isinstance(system, dict) else [])
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
        config = request.get("generationConfig") or request.get("generation_config") or {}
        image_config: Any = {}
        if isinstance(config, dict):
            image_config = config.get("imageConfig") or config.get("image_config") or {}
        if not isinstance(image_config, dict):
            raise _LineError("request.generationConfig.imageConfig", "must be an object")
        model = request.get("model")
        model = model.removeprefix("models/") if isinstance(model, str) else None
        return self._request(
            line,
            key=key,
            prompt=prompt,
            model=model,
            size=_optional_string(
                image_config,
                "imageSize" if "imageSize" in image_config else "image_size",
                "request.generationConfig.imageConfig.imageSize",
            ),
            quality=None,
            aspect_ratio=_optional_string(
                image_config,
                "aspectRatio" if "aspectRatio" in image_config else "aspect_ratio",
                "request.generationConfig.imageConfig.aspectRatio",
            ),
            n=config.get("candidateCount", 1) if isinstance(config, dict) else 1,
            images=tuple(images),
            extra_bytes=system_bytes,
            check_local=False,
        )

    def _openai(self, obj: dict[str, Any], line: int) -> ImageRequest:
        key = _string(obj, "custom_id")
        if obj.get("method") != "POST":
            raise _LineError("method", f'must be "POST", got {obj.get("method")!r}')
        url = obj.get("url")
        if url not in OPENAI_URLS:
            allowed = " or ".join(OPENAI_URLS)
            raise _LineError("url", f"must be {allowed}, got {url!r}")
        body = obj.get("body")
        if not isinstance(body, dict):
            raise _LineError("body", "missing or not an object")
        prompt = _string(body, "prompt", "body.prompt")
        images: list[str] = []
        if url == "/v1/images/edits":
            raw_images = body.get("images", body.get("image"))
            if isinstance(raw_images, (str, dict)):
                raw_images = [raw_images]
            if not isinstance(raw_images, list) or not raw_images:
                raise _LineError("body.images", "an edit needs at least one input image")
            for i, ref in enumerate(raw_images):
                if isinstance(ref, dict):
                    ref = ref.get("image_url") or ref.get("file_id")  # noqa: PLW2901
                if not isinstance(ref, str) or not ref:
                    raise _LineError(f"body.images[{i}]", "needs an image_url or a file_id")
                images.append(ref)
        return self._request(
            line,
            key=key,
            prompt=prompt,
            model=_optional_string(body, "model", "body.model"),
            size=_optional_string(body, "size", "body.size"),
            quality=_optional_string(body, "quality", "body.quality"),
            aspect_ratio=None,
            n=body.get("n", 1),
            images=tuple(images),
            extra_bytes=0,
            field_prefix="body.",
            check_local=False,
        )

    # shared validation ------------------------------------------------------------------

    def _field(self, name: str, prefix: str) -> str:
        """A request field as the queue line spells it (Gemini nests them in generationConfig)."""
        if self.format == "gemini":
            return _GEMINI_FIELDS[name]
        return f"{prefix}{name}"

    def _resolve(self, model_id: str, field: str) -> Resolved:
        cached = self._models.get(model_id)
        if cached is None:
            try:
                cached = self.book.resolve(model_id, self.at)
                if cached.warning and cached.warning not in self.warnings:
                    self.warnings.append(cached.warning)
            except RateCardError:
                raise  # no card in force at all: not this line's fault (exit 4)
            except ModelUnavailableError as exc:
                cached = _LineError(field, str(exc))
            except CostguardError as exc:
                cached = _LineError(field, str(exc))
            self._models[model_id] = cached
        if isinstance(cached, _LineError):
            raise cached
        return cached

    def _request(
        self,
        line: int,
        *,
        key: str,
        prompt: str,
        model: str | None,
        size: str | None,
        quality: str | None,
        aspect_ratio: str | None,
        n: object,
        images: tuple[str, ...],
        extra_bytes: int,
        field_prefix: str = "",
        check_local: bool = True,
    ) -> ImageRequest:
        """Validate one request's parameters (each distinct combination is checked once)."""
        signature = (model, size, quality, aspect_ratio, n) if type(n) is int else None
        checked = self._combos.get(signature) if signature is not None else None
        if checked is None:
            try:
                checked = self._validate(model, size, quality, aspect_ratio, n, field_prefix)
            except _LineError as exc:
                checked = exc
            if signature is not None:
                self._combos[signature] = checked
        if isinstance(checked, _LineError):
            raise _LineError(checked.field, checked.message)
        model_id, provider, size, quality, aspect_ratio, takes_images = checked
        if images:
            if not takes_images:
                raise _LineError(
                    self._field("images", field_prefix), f"{model_id} does not take input images"
                )
            if check_local and self.check_images:
                for i, ref in enumerate(images):
                    if ref.startswith(_URI_PREFIXES):
                        continue
                    path = Path(ref) if Path(ref).is_absolute() else self._base / ref
                    problem = _local_image_problem(path, provider)
                    if problem is not None:
                        raise _LineError(f"images[{i}]", problem)
        return ImageRequest(
            key,
            prompt,
            model_id,
            provider,
            size,
            quality,
            aspect_ratio,
            n,  # type: ignore[arg-type]  # _validate checked it is an int
            images,
            line,
            len(prompt.encode()) + extra_bytes,
        )

    def _validate(
        self,
        model: str | None,
        size: str | None,
        quality: str | None,
        aspect_ratio: str | None,
        n: object,
        field_prefix: str,
    ) -> _Checked:
        model_field = f"{field_prefix}model"
        model_id = model or self.defaults.model
        if model_id is None:
            raise _LineError(model_field, "no model: set it on the line or pass --model")
        resolved = self._resolve(model_id, model_field)
        card = resolved.model
        size = size or self.defaults.size or card.default_size
        if size not in card.sizes:
            hint = (
                "; 'auto' cannot be priced before the response, so name a size"
                if size == "auto"
                else ""
            )
            raise _LineError(
                self._field("size", field_prefix),
                f"{model_id} does not support size {size!r}; allowed: "
                f"{', '.join(card.sizes)}{hint}",
            )
        if card.qualities:
            quality = quality or self.defaults.quality or card.default_quality
            if quality not in card.qualities:
                raise _LineError(
                    f"{field_prefix}quality",
                    f"{model_id} does not support quality {quality!r}; allowed: "
                    f"{', '.join(card.qualities)}",
                )
        elif quality is not None:
            raise _LineError(f"{field_prefix}quality", f"{model_id} has no quality setting")
        aspect_ratio = aspect_ratio or self.defaults.aspect_ratio
        if aspect_ratio is not None:
            if not card.aspect_ratios:
                raise _LineError(
                    self._field("aspect_ratio", field_prefix),
                    f"{model_id} takes no aspect ratio; the size sets the shape",
                )
            if aspect_ratio not in card.aspect_ratios:
                raise _LineError(
                    self._field("aspect_ratio", field_prefix),
                    f"{model_id} does not support aspect ratio {aspect_ratio!r}; allowed: "
                    f"{', '.join(card.aspect_ratios)}",
                )
        n_field = self._field("n", field_prefix)
        if isinstance(n, bool) or not isinstance(n, int):
            raise _LineError(n_field, f"must be a whole number, got {n!r}")
        if not 1 <= n <= card.max_n:
            raise _LineError(n_field, f"{n} is out of range for {model_id} (1 to {card.max_n})")
        takes_images = card.input_image_tokens is not None
        return model_id, resolved.provider, size, quality, aspect_ratio, takes_images


def _string(obj: dict[str, Any], name: str, field: str | None = None) -> str:
    value = obj.get(name)
    if value is None:
        raise _LineError(field or name, "missing")
    if not isinstance(value, str):
        raise _LineError(field or name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _LineError(field or name, "is empty")
    return value


def _optional_string(obj: dict[str, Any], name: str, field: str | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _LineError(field or name, f"must be a non-empty string, got {value!r}")
    return value


def _local_image_problem(path: Path, provider: Provider) -> str | None:
    """Why a local input image cannot be sent (checked before anything is priced), or None."""
    if not path.is_file():
        return f"input image not found: {path}"
    if not os.access(path, os.R_OK):
        return f"input image cannot be read: {path}"
    size, limit = path.stat().st_size, INPUT_IMAGE_LIMITS[provider]
    if size > limit:
        return (
            f"input image {path} is {size / MB:,.1f} MB; {provider} takes at most "
            f"{limit // MB} MB per image"
        )
    return None
