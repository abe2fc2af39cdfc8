"""Stream queue files into `ImageRequest`s, in constant memory, with errors by line and field.

Three formats, detected per file from its first non-blank line (or forced with `--format`):

- `costguard`: `{"key", "prompt", "model"?, "size"?, "aspect_ratio"?, "quality"?, "n"?, "images"?}`
- `gemini`: a Gemini batch line `{"key", "request": GenerateContentRequest}`; the model comes
  from `--model` (a Gemini batch job has one model).
- `openai`: an OpenAI batch line `{"custom_id", "method": "POST", "url":
  "/v1/images/generations" | "/v1/images/edits", "body": {...}}`.

Lines are read as bytes: UTF-8 with or without BOM, LF or CRLF, blank lines skipped. A queue
can also come from a stream (`costguard estimate -` reads stdin): it is read once, as it
arrives, its format detected from its first non-blank line. Every bad line is reported as
`file:line: field: message` (`<stdin>:LINE` for stdin); the reader keeps going so one run
lists them all (the CLI shows the first 20), and callers must not use what they read when
`errors` is set.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from costguard.errors import (
    CostguardError,
    ModelUnavailableError,
    QueueError,
    RateCardError,
    UsageError,
)
from costguard.media import file_problem
from costguard.models import ImageRequest, Provider
from costguard.pricing.engine import RateBook, Resolved
from costguard.pricing.sizes import size_problem
from costguard.queue.lines import (
    Line,
    LineError,
    costguard_line,
    data_url_problem,
    gemini_line,
    openai_line,
)

Format = Literal["costguard", "gemini", "openai"]
FORMATS: tuple[Format, ...] = ("costguard", "gemini", "openai")
MAX_ERRORS_KEPT = 20
STDIN = Path("<stdin>")
"""The name a queue read from stdin goes by in messages (`<stdin>:14: model: ...`)."""
_URI_PREFIXES = ("http://", "https://", "gs://", "file-", "files/")
_PARSERS: dict[Format, Callable[[dict[str, Any]], Line]] = {
    "costguard": costguard_line,
    "gemini": gemini_line,
    "openai": openai_line,
}


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


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner, public in practice
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")

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


def detect_format(path: Path) -> Format:
    """The format of a queue file, from its first non-blank line (costguard when unsure)."""
    with path.open("rb") as handle:
        return _detect(handle, [])


def _detect(lines: Iterable[bytes], seen: list[bytes]) -> Format:
    """The format, from the first non-blank of `lines`; the lines read are appended to `seen`."""
    for raw in lines:
        seen.append(raw)
        line = raw.strip().removeprefix(b"\xef\xbb\xbf").strip()
        if not line:
            continue
        try:
            first = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "costguard"  # the reader reports the line
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

    With `stream` (stdin), the lines come from it instead of `path`, which only names them
    (`STDIN`); a stream is read once, so such a reader can be iterated once, and relative
    image paths are relative to the current directory.
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
        stream: IO[bytes] | None = None,
    ) -> None:
        self.path = path
        self.book = book
        self.at = at
        self.defaults = defaults
        self.check_images = check_images
        self._stream = stream
        self.streamed = stream is not None
        """Whether the queue comes from a stream (read once), not a file."""
        self._head: list[bytes] = []
        """Lines of the stream read to detect its format, read again first."""
        if stream is not None:
            self.format: Format = fmt or _detect(stream, self._head)
            self._base = Path()
        elif not path.is_file():
            what = "is a folder, not a queue file" if path.is_dir() else "queue file not found"
            msg = f"{path}: {what}"
            raise UsageError(msg)
        else:
            self.format = fmt or detect_format(path)
            self._base = path.parent
        self._format_from = "--format" if fmt else "from its first line"
        self.errors: list[str] = []
        self.error_count = 0
        self.warnings: list[str] = []
        self.lines = 0
        self._keys = KeySet()
        self._models: dict[str, Resolved | LineError] = {}
        self._combos: dict[object, _Checked | LineError] = {}

    def _raw_lines(self) -> Iterator[bytes]:
        """The queue's lines as bytes: the file's, or the stream's (once)."""
        if not self.streamed:
            with self.path.open("rb") as handle:
                yield from handle
            return
        stream, self._stream = self._stream, None
        if stream is None:
            msg = f"{self.path}: a queue read from a stream can be read only once"
            raise CostguardError(msg)
        yield from self._head
        self._head = []
        yield from stream

    def __iter__(self) -> Iterator[ImageRequest]:
        for number, raw in enumerate(self._raw_lines(), start=1):
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
                request = self._read(number, text)
            except LineError as exc:
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

    def _read(self, number: int, text: str) -> ImageRequest:
        """One non-blank line as a request, or LineError."""
        try:
            obj, end = _SCAN(text, 0)
        except (StopIteration, ValueError):  # ValueError: JSONDecodeError mid-value
            end = -1
        except RecursionError:
            raise LineError("(line)", "invalid JSON: nested too deeply") from None
        if end != len(text):
            raise LineError("(line)", f"invalid JSON: {_json_problem(text)}")
        if not isinstance(obj, dict):
            raise LineError("(line)", "each line must be a JSON object")
        if _ESCAPED_SURROGATE.search(text):
            where = _lone_surrogate(obj)
            if where is not None:
                raise LineError(
                    where,
                    "holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair): "
                    "not valid Unicode text",
                )
        found = _format_of(obj)
        if found is not None and found != self.format:
            raise LineError(
                "(line)",
                f"this line is in the {found} format but the file is read as {self.format} "
                f"({self._format_from}); use one format per file, or --format",
            )
        return self._request(number, _PARSERS[self.format](obj))

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
                cached = LineError(field, str(exc))
            except CostguardError as exc:
                cached = LineError(field, str(exc))
            self._models[model_id] = cached
        if isinstance(cached, LineError):
            raise cached
        return cached

    def _request(self, number: int, line: Line) -> ImageRequest:
        """Validate one line's parameters (each distinct combination is checked once)."""
        n = line.n
        signature = (
            (line.model, line.size, line.quality, line.aspect_ratio, n) if type(n) is int else None
        )
        checked = self._combos.get(signature) if signature is not None else None
        if checked is None:
            try:
                checked = self._validate(
                    line.model, line.size, line.quality, line.aspect_ratio, n, line.field_prefix
                )
            except LineError as exc:
                checked = exc
            if signature is not None:
                self._combos[signature] = checked
        if isinstance(checked, LineError):
            raise LineError(checked.field, checked.message)
        model_id, provider, size, quality, aspect_ratio, takes_images = checked
        if line.provider is not None and provider != line.provider:
            raise LineError(
                f"{line.field_prefix}model",
                f"{model_id} is a {provider} model, but this is a {line.provider} queue line",
            )
        if line.text_tokens_max:
            rates = self._resolve(model_id, f"{line.field_prefix}model").model.modes.values()
            if any(r.output_text_per_mtok is None for r in rates):
                raise LineError(
                    "request.generationConfig.responseModalities",
                    f"{model_id} has no text output price on its rate card, so TEXT cannot be "
                    "priced; ask for IMAGE only",
                )
        if line.images:
            if not takes_images:
                raise LineError(
                    self._field("images", line.field_prefix),
                    f"{model_id} does not take input images",
                )
            if line.local_images:
                self._check_images(line.images, provider, line.images_field)
        return ImageRequest(
            line.key,
            line.prompt,
            model_id,
            provider,
            size,
            quality,
            aspect_ratio,
            n,  # type: ignore[arg-type]  # _validate checked it is an int
            line.images,
            number,
            len(line.prompt.encode()) + line.extra_bytes,
            line.text_tokens_max,
            line.passthrough,
        )

    def _check_images(self, images: tuple[str, ...], provider: Provider, field: str) -> None:
        """Refuse an input image the provider would not take (type, size, data: URL)."""
        for i, ref in enumerate(images):
            if ref.startswith("data:"):
                problem = data_url_problem(ref, provider)
                if problem:
                    raise LineError(f"{field}[{i}]", f"the image {problem}")
            elif self.check_images and not ref.startswith(_URI_PREFIXES):
                path = Path(ref) if Path(ref).is_absolute() else self._base / ref
                problem = file_problem(path, provider)
                if problem is not None:
                    raise LineError(f"{field}[{i}]", problem)

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
            raise LineError(model_field, "no model: set it on the line or pass --model")
        resolved = self._resolve(model_id, model_field)
        card = resolved.model
        size = size or self.defaults.size or card.default_size
        problem = size_problem(card, size)
        if problem is not None:
            hint = (
                "; 'auto' cannot be priced before the response, so name a size"
                if size == "auto"
                else ""
            )
            raise LineError(self._field("size", field_prefix), f"{problem}{hint}")
        if card.qualities:
            quality = quality or self.defaults.quality or card.default_quality
            if quality not in card.qualities:
                raise LineError(
                    f"{field_prefix}quality",
                    f"{model_id} does not support quality {quality!r}; allowed: "
                    f"{', '.join(card.qualities)}",
                )
        elif quality is not None:
            raise LineError(f"{field_prefix}quality", f"{model_id} has no quality setting")
        aspect_ratio = aspect_ratio or self.defaults.aspect_ratio
        if aspect_ratio is not None:
            if not card.aspect_ratios:
                raise LineError(
                    self._field("aspect_ratio", field_prefix),
                    f"{model_id} takes no aspect ratio; the size sets the shape",
                )
            if aspect_ratio not in card.aspect_ratios:
                raise LineError(
                    self._field("aspect_ratio", field_prefix),
                    f"{model_id} does not support aspect ratio {aspect_ratio!r}; allowed: "
                    f"{', '.join(card.aspect_ratios)}",
                )
        n_field = self._field("n", field_prefix)
        if isinstance(n, bool) or not isinstance(n, int):
            raise LineError(n_field, f"must be a whole number, got {n!r}")
        if not 1 <= n <= card.max_n:
            raise LineError(n_field, f"{n} is out of range for {model_id} (1 to {card.max_n})")
        takes_images = card.input_image_tokens is not None
        if model_id in card.nicknames:
            model_id = card.id  # the API knows the model by its id, not by the nickname
        return model_id, resolved.provider, size, quality, aspect_ratio, takes_images


def _lone_surrogate(obj: object) -> str | None:
    """The field (`key`, `request.contents[0]`) of the first string holding a lone surrogate."""
    stack: list[tuple[str, object]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return where or "(line)"
        elif isinstance(value, dict):
            for name, item in value.items():
                if not _encodes(name):
                    return f"{where}.(name)" if where else "(field name)"
                stack.append((f"{where}.{name}" if where else name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
