"""Batch input files seen uploaded through the gateway, kept on disk until a batch uses them.

OpenAI: `POST /v1/files` (multipart; the file part is cut out of the spooled body). Gemini:
the resumable upload's chunks, appended per `upload_id`, named by the `files/...` name in the
final chunk's answer. A batch create finds its input here by file id or name.
"""

from __future__ import annotations

import contextlib
import mmap
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["Uploads"]

_COPY = 1 << 20


class Uploads:
    """Spooled uploads by (provider, file id), in a private temporary folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="costguard-guard-"))
        self._files: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()
        self._count = 0

    def new_path(self, label: str) -> Path:
        """A fresh spool file path."""
        with self._lock:
            self._count += 1
            return self.folder / f"{self._count:06d}-{label}"

    def chunk_path(self, upload_id: str) -> Path:
        """The spool of a Gemini resumable upload (its chunks append to it)."""
        safe = "".join(c for c in upload_id if c.isalnum() or c in "-_")[:100] or "upload"
        return self.folder / f"gemini-{safe}"

    def add(self, provider: str, file_id: str, path: Path) -> None:
        """Remember `path` as the content of `file_id`."""
        with self._lock:
            self._files[provider, file_id] = path

    def get(self, provider: str, file_id: str) -> Path | None:
        """The content of `file_id` if it was uploaded through the gateway."""
        with self._lock:
            return self._files.get((provider, file_id))

    def close(self) -> None:
        """Remove every spooled file."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def cut_multipart(self, spool: Path, content_type: str, out: Path) -> dict[str, str]:
        """Write the `file` part of a spooled multipart body to `out`; return its text fields.

        Reads through a memory map: the body is never held in memory whole.
        """
        boundary = _boundary(content_type)
        fields: dict[str, str] = {}
        if boundary is None or spool.stat().st_size == 0:
            return fields
        marker = b"\r\n--" + boundary
        with (
            spool.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m,
        ):
            pos = m.find(b"--" + boundary)
            while pos >= 0:
                start = pos + len(boundary) + 2
                if m[start : start + 2] == b"--":
                    break
                head_end = m.find(b"\r\n\r\n", start)
                if head_end < 0:
                    break
                head = m[start:head_end].decode("utf-8", "replace")
                body_start = head_end + 4
                end = m.find(marker, body_start)
                if end < 0:
                    break
                name = _field(head, "name")
                if name == "file":
                    with out.open("wb") as dest:
                        for at in range(body_start, end, _COPY):
                            dest.write(m[at : min(at + _COPY, end)])
                    fields["file"] = str(out)
                elif name is not None and end - body_start < _COPY:
                    fields[name] = m[body_start:end].decode("utf-8", "replace")
                pos = end + 2
        with contextlib.suppress(OSError):
            spool.unlink()
        return fields


def _boundary(content_type: str) -> bytes | None:
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode()
    return None


def _field(head: str, wanted: str) -> str | None:
    for line in head.split("\r\n"):
        key, _, rest = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        for piece in rest.split(";"):
            name, _, value = piece.strip().partition("=")
            if name == wanted:
                return value.strip('"')
    return None
