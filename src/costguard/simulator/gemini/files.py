"""Uploaded files and unfinished resumable uploads as the face stores them (uploaded bytes
live in the simulator's `BlobStore`; these records hold their keys)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from costguard.simulator.gemini.wire import JSON

MAX_FILE_BYTES = 2 * 1024**3
"""The largest file the Files API takes (docs: input file <= 2 GB)."""


@dataclass(slots=True)
class _File:
    id: str
    display_name: str | None
    mime_type: str
    blob: str
    """Key of the bytes in the simulator's `BlobStore` (its sha256 hex digest)."""
    size: int
    create_t: float
    deleted: bool = False

    def to_state(self) -> JSON:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "mime_type": self.mime_type,
            "blob": self.blob,
            "size": self.size,
            "create_t": self.create_t,
            "deleted": self.deleted,
        }

    @classmethod
    def from_state(cls, state: JSON) -> _File:
        return cls(
            id=state["id"],
            display_name=state["display_name"],
            mime_type=state["mime_type"],
            blob=state["blob"],
            size=int(state["size"]),
            create_t=state["create_t"],
            deleted=state["deleted"],
        )


@dataclass(slots=True)
class _Upload:
    id: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    filename: str
    create_t: float
    buffer: bytearray = field(default_factory=bytearray)

    def to_state(self) -> JSON:
        """Unfinished uploads keep their bytes inline (they are rare and short-lived)."""
        return {
            "id": self.id,
            "file_id": self.file_id,
            "display_name": self.display_name,
            "mime_type": self.mime_type,
            "declared_size": self.declared_size,
            "filename": self.filename,
            "create_t": self.create_t,
            "buffer": base64.b64encode(bytes(self.buffer)).decode("ascii"),
        }

    @classmethod
    def from_state(cls, state: JSON) -> _Upload:
        return cls(
            id=state["id"],
            file_id=state["file_id"],
            display_name=state["display_name"],
            mime_type=state["mime_type"],
            declared_size=state["declared_size"],
            filename=state["filename"],
            create_t=state["create_t"],
            buffer=bytearray(base64.b64decode(state["buffer"])),
        )
