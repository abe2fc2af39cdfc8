"""Where the gateway keeps the bodies it must read: nothing, a bounded buffer, or a spool file.

Bodies stream through the proxy to the upstream and back; the gateway keeps a copy only of
what it prices or reconciles from: JSON answers of paid and batch calls without their images
(`Skeleton`: long strings dropped as they pass, so a 20 MB answer leaves a few hundred bytes),
and uploaded batch input files and downloaded result files (`Spool`, on disk, so memory stays
bounded whatever their size).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

__all__ = ["LONG_STRING", "NULL", "Null", "Skeleton", "Spool"]


class Null:
    """Keeps nothing."""

    def write(self, chunk: bytes) -> None:
        """Drop the chunk."""

    def finish(self, content_type: str) -> dict[str, Any] | None:  # noqa: ARG002 - protocol
        """Nothing kept."""
        return None

    def abort(self) -> None:
        """Nothing to drop."""


NULL = Null()


LONG_STRING = 4096
"""Strings longer than this many bytes (base64 images) are not kept by `Skeleton`."""
BACKSLASH = ord("\\")
STAND_IN = b"AAAA"
"""What a string too long to keep reads as: valid base64 (three zero bytes), so a parser
still sees an image there, and its usage and status next to it."""


class Skeleton:
    """Keeps a JSON answer (or an SSE stream of them) with every string longer than
    `LONG_STRING` bytes replaced by `STAND_IN`: the usage, status and counts the gateway
    reconciles from, without the images. Memory stays small whatever the answer weighs (a
    Gemini answer holds its images inline: ~2 MB each at 1K, ~20 MB at 4K), and so does the
    cost of parsing it. Up to `limit` bytes of skeleton are kept; past it nothing is.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out: list[bytes] = []
        self.size = 0
        self.over = False
        self.in_string = False
        self.escaped = False
        """Inside a string, the bytes so far end in an odd run of backslashes."""
        self.text: list[bytes] = []
        """The current string's bytes so far (while it is short enough to keep)."""
        self.text_size = 0

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            self.out = []
        elif not self.over:
            self.out.append(data)

    def _string(self, chunk: bytes, start: int, stop: int) -> None:
        """Bytes `start:stop` of `chunk` are part of the current string."""
        self.text_size += stop - start
        if self.text_size <= LONG_STRING:
            self.text.append(chunk[start:stop])
        elif self.text:
            self.text = []

    def _escapes(self, chunk: bytes, pos: int, stop: int) -> bool:
        """Whether the string's bytes up to `stop` end in an odd run of backslashes (so the
        next byte is escaped), given the run carried in from before `pos`."""
        run = 0
        while stop - run > pos and chunk[stop - run - 1] == BACKSLASH:
            run += 1
        odd = run % 2 == 1
        return odd != self.escaped if run == stop - pos else odd

    def write(self, chunk: bytes) -> None:
        """Scan the chunk: outside strings keep everything; inside, keep short strings.

        Only quotes are looked for (`bytes.find`, memchr); a quote ends the string unless an
        odd run of backslashes precedes it. So a 20 MB image string costs well under a
        millisecond, whatever escapes it holds."""
        pos, end = 0, len(chunk)
        while pos < end:
            if not self.in_string:
                found = chunk.find(b'"', pos)
                if found < 0:
                    self._keep(chunk[pos:])
                    return
                self._keep(chunk[pos : found + 1])
                self.in_string, self.escaped, self.text, self.text_size = True, False, [], 0
                pos = found + 1
                continue
            start = pos
            quote = chunk.find(b'"', pos)
            while quote >= 0 and self._escapes(chunk, start, quote):
                quote = chunk.find(b'"', quote + 1)
            if quote < 0:
                self._string(chunk, start, end)
                self.escaped = self._escapes(chunk, start, end)
                return
            self._string(chunk, start, quote)
            self._keep(STAND_IN if self.text_size > LONG_STRING else b"".join(self.text))
            self._keep(b'"')
            self.in_string = False
            pos = quote + 1

    def data(self) -> bytes | None:
        """The skeleton, or None past the limit."""
        if self.in_string:  # cut off inside a string: close it so the rest still parses
            self.write(b'"')
        return None if self.over else b"".join(self.out)

    def finish(self, content_type: str) -> dict[str, Any] | None:  # noqa: ARG002 - protocol
        """`{"json": value}`, `{"raw": bytes}` when not JSON, or None past the limit."""
        data = self.data()
        if data is None:
            return None
        try:
            return {"json": json.loads(data)}
        except ValueError:
            return {"raw": data}

    def abort(self) -> None:
        """Drop what was kept."""
        self.out = []


class Spool:
    """Appends to a file (an upload in several chunks appends to the same one)."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.handle = path.open("ab" if append else "wb")

    def write(self, chunk: bytes) -> None:
        """Append the chunk to the file."""
        self.handle.write(chunk)

    def finish(self, content_type: str) -> dict[str, Any] | None:
        """`{"spool": path, "content_type": ...}` once the file is closed."""
        self.handle.close()
        return {"spool": str(self.path), "content_type": content_type}

    def abort(self) -> None:
        """Close and remove the file."""
        self.handle.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
