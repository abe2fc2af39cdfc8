"""File routes: upload, list, retrieve, delete and download under /v1/files.

Uploads are multipart with fields `purpose` and `file` (and optionally `expires_after[anchor]`,
`expires_after[seconds]`); a batch input must be a `.jsonl` file, and its lines are only checked
when a batch uses it. Downloads are the raw bytes as `application/octet-stream`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.simulator.core import BodyLimit, SimRequest, SimResponse
from costguard.simulator.openai.errors import _supported, api_error
from costguard.simulator.openai.files import FILE_PURPOSES, FILE_TTL_S, FileRecord
from costguard.simulator.openai.results import BatchResults
from costguard.simulator.openai.wire import parse_multipart

if TYPE_CHECKING:
    import re

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the form fields and part headers around an uploaded file."""


class FileRoutes(BatchResults):
    """The /v1/files endpoints."""

    def _file_json(self, record: FileRecord) -> dict[str, Any]:
        if record.bytes is None:
            record.bytes = sum(len(chunk) for chunk in self._chunks(record))
        return {
            "id": record.id,
            "object": "file",
            "bytes": record.bytes,
            "created_at": record.created_at,
            "filename": record.filename,
            "purpose": record.purpose,
            "status": "processed",
            "expires_at": record.expires_at,
            "status_details": None,
        }

    def upload_limit(self) -> BodyLimit:
        """The largest upload body: the file limit plus room for the form around the file."""
        return BodyLimit(
            self.limits.max_file_bytes + FORM_OVERHEAD_BYTES,
            self._respond(api_error(400, "400_file_too_large")),
            spool=True,
        )

    def _file(self, file_id: str) -> FileRecord:
        self._publish_due()
        record = self.files.get(file_id)
        if record is None:
            raise api_error(404, "404_file", id=file_id)
        return record

    def files_create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/files (multipart: purpose, file[, expires_after[anchor|seconds]]).

        Over HTTP the body arrives spooled to a file (`upload_limit`), so an upload over its
        purpose's limit is refused from its part's size, never read into memory.
        """
        fields = parse_multipart(request)
        purpose_parts = fields.get("purpose")
        if not purpose_parts:
            raise api_error(400, "400_missing_required_parameter", param="purpose")
        purpose = purpose_parts[0].text().strip()
        file_parts = fields.get("file")
        if not file_parts:
            raise api_error(400, "400_missing_required_parameter", param="file")
        if purpose not in FILE_PURPOSES:
            raise api_error(
                400,
                "400_invalid_value",
                value=purpose,
                supported=_supported(FILE_PURPOSES),
                param="purpose",
            )
        part = file_parts[0]
        filename = Path(part.filename or "file").name
        if purpose == "batch" and not filename.lower().endswith(".jsonl"):
            raise api_error(400, "400_invalid_file_format")
        too_big = part.size > self.limits.max_file_bytes or (
            purpose == "batch" and part.size > self.limits.max_batch_input_bytes
        )
        if too_big:
            raise api_error(400, "400_file_too_large")  # refused before its bytes are read
        data = part.read()
        now = self._now()
        expires_at = now + FILE_TTL_S if purpose == "batch" else None
        seconds = fields.get("expires_after[seconds]")
        if seconds:
            expires_at = now + self._expiry_seconds(seconds[0].text(), "expires_after")
        record = FileRecord(
            id="file-" + self.sim.new_id(22),
            filename=filename,
            purpose=purpose,
            created_at=now,
            seq=self._next_seq(),
            expires_at=expires_at,
            bytes=len(data),
            blob=self.sim.blobs.put(data),
        )
        self.files[record.id] = record
        self.sim.record_upload("openai", record.id, filename, len(data), purpose)
        return self._json(self._file_json(record))

    @staticmethod
    def _expiry_seconds(raw: object, param: str) -> int:
        try:
            seconds = int(str(raw))
        except ValueError:
            seconds = -1
        if not 3600 <= seconds <= 2_592_000:
            raise api_error(
                400,
                "400_invalid_param",
                message=f"Invalid '{param}.seconds': expected an integer between 3600 and "
                f"2592000, got {raw!r}.",
                param=f"{param}.seconds",
                code="invalid_value",
            )
        return seconds

    def files_retrieve(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """GET /v1/files/{id}."""
        return self._json(self._file_json(self._file(match["file_id"])))

    def files_delete(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """DELETE /v1/files/{id}; the bytes go once no other file or batch refers to them."""
        record = self._file(match["file_id"])
        del self.files[record.id]
        blob = record.blob
        if blob is not None:
            in_use = any(f.blob == blob for f in self.files.values()) or any(
                job.input_blob == blob for job in self.batches.values()
            )
            if not in_use:
                self.sim.blobs.discard(blob)
        return self._json({"id": record.id, "object": "file", "deleted": True})

    def files_list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """GET /v1/files?purpose&after&limit&order (newest first unless order=asc)."""
        self._publish_due()
        limit = self._limit(request, default=10_000, maximum=10_000)
        purpose = request.arg("purpose")
        records = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        records.sort(key=lambda f: (f.created_at, f.seq), reverse=request.arg("order") != "asc")
        page, has_more = self._page(records, request.arg("after"), limit)
        return self._json(self._list([self._file_json(f) for f in page], has_more))

    def content(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """GET /v1/files/{id}/content: uploads as stored, result files generated as streamed."""
        record = self._file(match["file_id"])
        headers = {
            "content-type": "application/octet-stream",
            "x-request-id": self._request_id(),
        }
        if record.blob is not None:
            headers["content-length"] = str(len(self.sim.blobs.get(record.blob)))
            return SimResponse(200, headers, self._chunks(record))
        self._analysis(self.batches[record.result_of or ""])  # built under the lock
        return SimResponse(200, headers, self._chunks(record))
