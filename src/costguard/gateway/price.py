"""Price what a call asks for: one sync body, Gemini inline requests, or an uploaded JSONL file.

Every call is turned into queue lines in the provider's own batch format (a sync OpenAI body
becomes a one-line OpenAI batch file, a Gemini body a `{"key", "request"}` line) and read by
the same `QueueReader` and `price_queue` that `estimate` and `run` use, so the gateway holds
exactly the maximum `run` would. What the reader cannot price is `UnpriceableError`, with its
reason. After the call, `actual_cost` prices the usage the answer reported.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from costguard.errors import CostguardError
from costguard.models import ImageRequest, Usage
from costguard.money import ZERO
from costguard.pricing.engine import GroupKey, RateBook, Totals, estimate, price, usage_cost
from costguard.pricing.schema import Mode
from costguard.queue.estimate import price_queue
from costguard.queue.reader import Defaults, Format, QueueReader

__all__ = [
    "Priced",
    "UnpriceableError",
    "actual_cost",
    "edit_fields",
    "gemini_body_lines",
    "gemini_inline_lines",
    "openai_body_line",
    "price_lines",
    "price_sync",
    "requests_of",
]

WHERE = Path("<gateway>")


class UnpriceableError(Exception):
    """A call the rate cards cannot price (unknown model, a field the reader refuses); the
    gateway answers it to the client, it never ends a command."""


@dataclass(frozen=True, slots=True)
class Priced:
    """What one call may cost at most, and what it asks for."""

    maximum: Decimal
    expected: Decimal
    requests: int
    images: int
    models: tuple[str, ...]
    mode: Mode
    input_images: int = 0


def price_lines(
    stream: IO[bytes], fmt: Format, book: RateBook, at: dt.date, mode: Mode, *, model: str | None
) -> Priced:
    """Price queue lines in `fmt` (`model`: for lines that name none, as a Gemini path does)."""
    try:
        found = price_queue(WHERE, book, at, defaults=Defaults(model=model), fmt=fmt, stream=stream)
    except CostguardError as exc:
        raise UnpriceableError(str(exc)) from None
    total = found.estimate.total(mode)
    if total is None:
        msg = f"the rate cards do not sell these requests in {mode} mode"
        raise UnpriceableError(msg)
    grouped = found.grouped.values()
    return Priced(
        maximum=total.max,
        expected=total.expected,
        requests=found.estimate.requests,
        images=found.estimate.images,
        models=tuple(sorted({key[0] for key in found.grouped})),
        mode=mode,
        input_images=sum(t.input_images for t in grouped),
    )


def price_sync(
    lines: bytes, fmt: Format, book: RateBook, at: dt.date, mode: Mode, *, model: str | None
) -> tuple[Priced, list[ImageRequest]]:
    """`price_lines` and `requests_of` of a sync call's line(s) in one read of the body: the
    same checks (images included) and figures as `price_lines`, and the requests."""
    reader = QueueReader(
        WHERE, book, at, defaults=Defaults(model=model), fmt=fmt, stream=io.BytesIO(lines)
    )
    grouped: dict[GroupKey, Totals] = {}
    try:
        requests = list(reader)
        reader.check()
        for request in requests:
            key = (request.model, request.size, request.quality)
            totals = grouped.get(key)
            if totals is None:
                totals = grouped[key] = Totals()
            totals.add(request)
        found = estimate(grouped, book, at)
    except CostguardError as exc:
        raise UnpriceableError(str(exc)) from None
    total = found.total(mode)
    if total is None:
        msg = f"the rate cards do not sell these requests in {mode} mode"
        raise UnpriceableError(msg)
    priced = Priced(
        maximum=total.max,
        expected=total.expected,
        requests=found.requests,
        images=found.images,
        models=tuple(sorted({key[0] for key in grouped})),
        mode=mode,
        input_images=sum(t.input_images for t in grouped.values()),
    )
    return priced, requests


def requests_of(
    lines: bytes, fmt: Format, book: RateBook, at: dt.date, *, model: str | None
) -> list[ImageRequest]:
    """The requests in a few queue lines (a sync call's one), validated as `price_lines` does."""
    reader = QueueReader(
        WHERE,
        book,
        at,
        defaults=Defaults(model=model),
        fmt=fmt,
        check_images=False,
        stream=io.BytesIO(lines),
    )
    try:
        found = list(reader)
        reader.check()
    except CostguardError as exc:
        raise UnpriceableError(str(exc)) from None
    return found


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def openai_body_line(url: str, body: dict[str, Any]) -> bytes:
    """A sync Images API body as a one-line OpenAI batch file."""
    return _line({"custom_id": "call", "method": "POST", "url": url, "body": body})


def gemini_body_lines(body: dict[str, Any]) -> bytes:
    """A generateContent body as a one-line Gemini batch file."""
    return _line({"key": "call", "request": body})


def gemini_inline_lines(requests: Iterable[object]) -> bytes:
    """Inline batch requests (`{"request", "metadata"}` items) as Gemini batch lines.

    Lines are keyed by position: the provider does not need keys to be unique, the reader
    does.
    """
    out = io.BytesIO()
    for number, item in enumerate(requests):
        request = item.get("request") if isinstance(item, dict) else None
        out.write(_line({"key": f"r{number}", "request": request}))
    return out.getvalue()


def edit_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The priced fields of a multipart `/v1/images/edits` body, as a JSON Images body.

    Text fields are kept as sent (`n` as a number); each image part becomes an opaque file
    reference (the reader counts input images; their bytes do not change the maximum).
    """
    boundary = _boundary(content_type)
    fields: dict[str, Any] = {}
    images: list[dict[str, str]] = []
    for headers, value in _parts(body, boundary):
        name, filename = _disposition(headers)
        if name is None:
            continue
        if filename is not None or name.startswith("image"):
            images.append({"file_id": f"file-upload{len(images)}"})
        elif name == "n":
            text = value.decode("utf-8", "replace").strip()
            fields["n"] = int(text) if text.isdigit() else text
        elif name in ("model", "prompt", "size", "quality"):
            fields[name] = value.decode("utf-8", "replace")
    if images:
        fields["images"] = images
    return fields


def _boundary(content_type: str) -> bytes:
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode()
    msg = "a multipart body without a boundary"
    raise UnpriceableError(msg)


def _parts(body: bytes, boundary: bytes) -> Iterable[tuple[bytes, bytes]]:
    """(headers, value) of each part of a multipart body held in memory."""
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if sep:
            yield head, value.removesuffix(b"\r\n")


def _disposition(headers: bytes) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition."""
    name = filename = None
    for line in headers.split(b"\r\n"):
        key, _, rest = line.partition(b":")
        if key.strip().lower() != b"content-disposition":
            continue
        for piece in rest.decode("utf-8", "replace").split(";"):
            field, _, value = piece.strip().partition("=")
            if field == "name":
                name = value.strip('"')
            elif field == "filename":
                filename = value.strip('"')
    return name, filename


def actual_cost(
    book: RateBook,
    at: dt.date,
    mode: Mode,
    request: ImageRequest,
    usage: Usage | None,
    *,
    ok: bool,
) -> Decimal:
    """One request's actual cost from its reported usage, else the card's expected price for a
    success (the same rule `costguard run` collects with)."""
    model = book.resolve(request.model, at).model
    if usage is not None:
        return usage_cost(model, mode, usage, size=request.size, quality=request.quality)
    if not ok:
        return ZERO
    one = Totals()
    one.add(request)
    cost = price(model, mode, request.size, request.quality, one)
    return cost.expected if cost is not None else ZERO
