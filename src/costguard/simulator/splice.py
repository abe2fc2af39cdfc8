"""Large JSON bodies without copying their images: base64 spliced into dumped JSON, in pieces.

An image in a response is base64 text inside a JSON string. `json.dumps` over a 2 MB string
scans and copies it (about as slow as the base64 itself), so a `Base64` value holds the text as
ASCII pieces instead (a padded image's cached head, then its own rest, see `images.py`), and
`dump_pieces` dumps the rest of the object with a placeholder string where each one goes, then
splits the text there and puts the pieces in. Base64 needs no JSON escaping, so the bytes are
exactly what `json.dumps(..., separators=(",", ":"))` gives with the joined strings. `chunked`
groups pieces for a streamed body, passing a large piece on alone (a cached head is sent as is).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_MARKER = f"costguard-sim:base64:{secrets.token_hex(16)}"
_QUOTED_MARKER = json.dumps(_MARKER).encode("ascii")
_SEPARATORS = (",", ":")


@dataclass(frozen=True, slots=True)
class Base64:
    """Base64 text as ASCII pieces, every piece but the last a whole number of 4-character
    groups (the base64 of bytes whose length is a multiple of 3)."""

    pieces: tuple[bytes, ...]

    @classmethod
    def of(cls, data: bytes) -> Base64:
        """The base64 of `data`, in one piece."""
        return cls((base64.b64encode(data),))

    def __len__(self) -> int:
        return sum(len(piece) for piece in self.pieces)

    def text(self) -> str:
        """The whole text."""
        return b"".join(self.pieces).decode("ascii")

    def decoded(self) -> bytes:
        """The bytes it encodes."""
        return base64.b64decode(b"".join(self.pieces))


def dump_pieces(obj: Any) -> list[bytes]:
    """`obj` as compact JSON (UTF-8), in pieces to join or send in turn; `Base64` values are
    strings whose pieces appear in the list as they are."""
    found: list[Base64] = []

    def placeholder(value: object) -> str:
        if isinstance(value, Base64):
            found.append(value)
            return _MARKER
        msg = f"Object of type {type(value).__name__} is not JSON serializable"
        raise TypeError(msg)

    text = json.dumps(obj, separators=_SEPARATORS, default=placeholder).encode()
    if not found:
        return [text]
    parts = text.split(_QUOTED_MARKER)
    if len(parts) != len(found) + 1:  # the marker also occurs in the data: no splicing
        joined = json.dumps(obj, separators=_SEPARATORS, default=_joined)
        return [joined.encode()]
    pieces = [parts[0]]
    for value, after in zip(found, parts[1:], strict=True):
        pieces.append(b'"')
        pieces.extend(value.pieces)
        pieces.append(b'"' + after)
    return pieces


def dump(obj: Any) -> bytes:
    """`obj` as compact JSON (UTF-8) bytes, `Base64` values as strings."""
    return b"".join(dump_pieces(obj))


def _joined(value: object) -> str:
    if isinstance(value, Base64):
        return value.text()
    msg = f"Object of type {type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


def chunked(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """`pieces` joined into chunks of about `size` bytes; a piece of `size` or more goes alone,
    uncopied."""
    buffer: list[bytes] = []
    held = 0
    for piece in pieces:
        if len(piece) >= size:
            if buffer:
                yield b"".join(buffer)
                buffer, held = [], 0
            yield piece
            continue
        if held and held + len(piece) > size:
            yield b"".join(buffer)
            buffer, held = [], 0
        buffer.append(piece)
        held += len(piece)
    if buffer:
        yield b"".join(buffer)
