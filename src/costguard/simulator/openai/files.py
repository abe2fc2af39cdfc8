"""The file record: an uploaded file or a batch's result file, and the rules files follow.

A client uploads with one of `FILE_PURPOSES`; a batch's output and error files are listed with
purpose `batch_output`. Batch input files and result files expire 30 days after creation
unless the client sets `expires_after` / `output_expires_after` (3600 to 2,592,000 seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
"""Purposes a client may upload with."""

FILE_TTL_S = 30 * 24 * 3600
"""purpose=batch input files and batch output files expire after 30 days by default."""


@dataclass
class FileRecord:
    """One file: an upload (bytes in the blob store) or a batch's generated result file."""

    id: str
    filename: str
    purpose: str
    created_at: int
    seq: int
    expires_at: int | None
    bytes: int | None = None
    """None for a result file until its size is first needed."""
    blob: str | None = None
    result_of: str | None = None
    """Batch id whose result this is (generated on download)."""
    kind: Literal["output", "error"] | None = None

    def to_json(self) -> dict[str, Any]:
        """The persisted form."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
