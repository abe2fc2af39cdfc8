"""The requests a pipeline hands the API, as the queue the reader reads.

`estimate()` and `run()` take a queue file's path, or requests in memory: `ImageRequest`s or
dicts in any of the three queue formats (costguard's, a Gemini batch line, an OpenAI batch
line). In-memory requests become JSON lines read exactly as a file's, so they get the same
defaults, the same figures and the same errors, which name `<requests>` and the request's
position (1-based) as its line. Their relative input-image paths are relative to the current
directory.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from costguard.errors import UsageError

IN_MEMORY = Path("<requests>")
"""The name in-memory requests go by in error messages (`<requests>:3: model: ...`)."""

Requests = str | PathLike[str] | Iterable["ImageRequest | Mapping[str, Any]"]
"""A queue file's path, or requests: `ImageRequest`s or dicts in a queue format."""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image request, as a line of costguard's own queue format.

    Fields left out are filled as a queue file's are: from the call's `model`, `size`,
    `quality` and `aspect_ratio`, then from the model's rate-card defaults.

    Attributes:
        key: The request's unique name; its image is saved as `<key>.<ext>`.
        prompt: What to draw.
        model: A model id or alias on the rate cards (e.g. `gpt-image-2`,
            `gemini-3.1-flash-image`).
        size: `1K`/`2K`/`4K` (Gemini) or `WxH` (OpenAI).
        quality: `low`/`medium`/`high` where the model has qualities.
        aspect_ratio: Gemini's aspect ratio, e.g. `16:9`.
        n: Images for this prompt.
        images: Input images (paths, relative to the current directory), for edits.
    """

    key: str
    prompt: str
    model: str | None = None
    size: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None
    n: int = 1
    images: tuple[str, ...] = field(default=())

    def as_line(self) -> dict[str, Any]:
        """The costguard-format queue line: the fields that are set."""
        line: dict[str, Any] = {"key": self.key, "prompt": self.prompt}
        for name in ("model", "size", "quality", "aspect_ratio"):
            value = getattr(self, name)
            if value is not None:
                line[name] = value
        if self.n != 1:
            line["n"] = self.n
        if self.images:
            line["images"] = list(self.images)
        return line


@dataclass(frozen=True, slots=True)
class Queue:
    """Requests as the reader takes them: a file, or JSON lines held in memory."""

    path: Path
    lines: bytes | None = None
    """The JSON lines of in-memory requests; None for a file."""

    def stream(self) -> io.BytesIO | None:
        """A fresh stream over the in-memory lines (None for a file)."""
        return None if self.lines is None else io.BytesIO(self.lines)

    @property
    def digest(self) -> str:
        """SHA-256 of the in-memory lines (what names their queue file in a run)."""
        return hashlib.sha256(self.lines or b"").hexdigest()


def as_queue(requests: Requests) -> Queue:
    """`requests` as a `Queue`.

    Raises:
        UsageError: `requests` is a plain string that names no file (a common slip: a prompt
            passed where a queue was meant), or an item is neither an `ImageRequest` nor a
            dict, or a dict holds something JSON cannot carry.
    """
    if isinstance(requests, str | PathLike):
        path = Path(requests)
        if not path.is_file():
            msg = f"queue {str(path)!r}: no such file (give a queue file, or a list of requests)"
            raise UsageError(msg)
        return Queue(path)
    if isinstance(requests, Mapping | ImageRequest):
        msg = "requests: give a list of requests (or a queue file), not one request"
        raise UsageError(msg)
    buffer = io.BytesIO()
    for position, item in enumerate(requests, start=1):
        if isinstance(item, ImageRequest):
            line: Mapping[str, Any] = item.as_line()
        elif isinstance(item, Mapping):
            line = item
        else:
            kind = type(item).__name__
            msg = f"{IN_MEMORY}:{position}: a request is an ImageRequest or a dict, not {kind}"
            raise UsageError(msg)
        try:
            text = json.dumps(_absolute_images(line), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{IN_MEMORY}:{position}: not JSON: {exc}") from None
        buffer.write(text.encode() + b"\n")
    return Queue(IN_MEMORY, buffer.getvalue())


_NOT_FILES = ("data:", "http://", "https://", "gs://", "file-", "files/")


def _absolute_images(line: Mapping[str, Any]) -> Mapping[str, Any]:
    """A costguard-format line with its relative input-image paths made absolute (against the
    current directory), so they name the same files wherever the queue is kept."""
    images = line.get("images")
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return line
    cwd = Path.cwd()
    fixed = [
        i if i.startswith(_NOT_FILES) or Path(i).is_absolute() else str(cwd / i) for i in images
    ]
    return {**line, "images": fixed}
