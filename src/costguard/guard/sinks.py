"""Where the gateway keeps the bodies it must read: nothing, a bounded buffer, or a spool file.

Bodies stream through the proxy to the upstream and back; the gateway keeps a copy only of
what it prices or reconciles from: JSON answers of paid and batch calls (`Buffer`, bounded),
and uploaded batch input files and downloaded result files (`Spool`, on disk, so memory stays
bounded whatever their size).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

__all__ = ["NULL", "Buffer", "Null", "Spool"]


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


class Buffer:
    """Keeps up to `limit` bytes; `finish` gives `{"json": value}` when they parse as JSON."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.over = False

    def write(self, chunk: bytes) -> None:
        """Keep the chunk unless the limit is passed (then nothing is kept)."""
        self.size += len(chunk)
        if self.size > self.limit:
            self.over = True
            self.chunks = []
        elif not self.over:
            self.chunks.append(chunk)

    def data(self) -> bytes | None:
        """The bytes kept, or None past the limit."""
        return None if self.over else b"".join(self.chunks)

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
        self.chunks = []


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
