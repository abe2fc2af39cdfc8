"""The `files.*` route handlers (get, list, delete, download) and resumable uploads. A job's
result file (`files/batch-<job id>`) is served beside the uploaded files."""

from __future__ import annotations

import base64
import re

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.gemini.batches import BatchStatus, _Batch, batch_status
from costguard.simulator.gemini.errors import ApiError, payload_too_large
from costguard.simulator.gemini.files import MAX_FILE_BYTES, _File, _Upload
from costguard.simulator.gemini.results import BatchResults
from costguard.simulator.gemini.wire import JSON, _get, timestamp

FILE_TTL_S = 48 * 3600.0
"""Files expire 48 h after upload (reported in `expirationTime`, not enforced)."""
UPLOAD_GRANULARITY = 8 * 1024 * 1024
FILE_PAGE_DEFAULT, FILE_PAGE_MAX = 10, 100
_FILE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class FileRoutes(BatchResults):
    """Uploaded files, result files and resumable uploads."""

    def _result_batch(self, file_id: str) -> tuple[_Batch, BatchStatus] | None:
        """The job whose result file is `file_id`, when that file exists now."""
        if not file_id.startswith("batch-"):
            return None
        batch = self._batches.get(file_id.removeprefix("batch-"))
        if batch is None or batch.input_file is None or batch.output_deleted:
            return None
        status = batch_status(batch, self._now())
        if not status.terminal or status.kept == 0:
            return None
        return batch, status

    def _file_json(self, file_id: str, request: SimRequest, match: re.Match[str]) -> JSON:
        origin = self._origin(request, match)
        ver = match["ver"]
        generated = self._result_batch(file_id)
        if generated is not None:
            batch, status = generated
            size, hex_digest = self._output_digest(batch, status.kept)
            create_t, display, mime = status.end_t or batch.create_t, None, "application/json"
        else:
            stored = self._files.get(file_id)
            if stored is None or stored.deleted:
                raise ApiError(404, f"File files/{file_id} not found.")
            size, hex_digest = stored.size, stored.blob
            create_t, display, mime = stored.create_t, stored.display_name, stored.mime_type
        body: JSON = {"name": f"files/{file_id}"}
        if display:
            body["displayName"] = display
        body.update(
            {
                "mimeType": mime,
                "sizeBytes": str(size),
                "createTime": timestamp(create_t),
                "updateTime": timestamp(create_t),
                "expirationTime": timestamp(create_t + FILE_TTL_S),
                "sha256Hash": base64.b64encode(hex_digest.encode()).decode("ascii"),
                "uri": f"{origin}/{ver}/files/{file_id}",
                "state": "ACTIVE",
                "source": "GENERATED" if generated else "UPLOADED",
            }
        )
        if generated:
            body["downloadUri"] = f"{origin}/download/{ver}/files/{file_id}:download?alt=media"
        return body

    def _file_get(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        return SimResponse.json(self._file_json(match["id"], request, match))

    def _file_list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        size, token = self._page(request, FILE_PAGE_DEFAULT, FILE_PAGE_MAX)
        keys = [(f.create_t, f.id) for f in self._files.values() if not f.deleted]
        for batch in self._batches.values():
            generated = self._result_batch(f"batch-{batch.id}")
            if generated is not None and generated[1].end_t is not None:
                keys.append((generated[1].end_t, f"batch-{batch.id}"))
        keys.sort(key=lambda k: (-k[0], k[1]))
        start, end = self._paginate(keys, size, token)
        payload: JSON = {}
        if end > start:
            payload["files"] = [self._file_json(k[1], request, match) for k in keys[start:end]]
        if end < len(keys):
            payload["nextPageToken"] = self._token(keys[end - 1])
        return SimResponse.json(payload)

    def _file_delete(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        file_id = match["id"]
        generated = self._result_batch(file_id)
        if generated is not None:
            generated[0].output_deleted = True
            return SimResponse.json({})
        stored = self._files.get(file_id)
        if stored is None or stored.deleted:
            raise ApiError(404, f"File files/{file_id} not found.")
        stored.deleted = True
        self._release(stored.blob)
        return SimResponse.json({})

    def _release(self, blob: str) -> None:
        """Drop uploaded bytes once no live file and no job's input refers to them."""
        inputs = {b.input_file for b in self._batches.values()}
        for stored in self._files.values():
            if stored.blob == blob and (not stored.deleted or stored.id in inputs):
                return
        self._sim.blobs.discard(blob)

    def _file_download(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        file_id = match["id"]
        generated = self._result_batch(file_id)
        if generated is None:
            stored = self._files.get(file_id)
            if stored is None or stored.deleted:
                raise ApiError(404, f"File files/{file_id} not found.")
            message = f"Only generated files can be downloaded; files/{file_id} was uploaded."
            raise ApiError(400, message)
        batch, status = generated
        headers = {"content-type": "application/octet-stream"}
        if batch.output_digest is not None:
            headers["content-length"] = str(batch.output_digest[0])
        return SimResponse(200, headers, self._result_chunks(batch, status.kept))

    # ---- resumable upload -------------------------------------------------------------------

    def _upload(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        if request.arg("upload_id") is None:
            return self._upload_start(request, match)
        return self._upload_chunk(request, match)

    def _upload_start(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        protocol = request.headers.get("x-goog-upload-protocol", "")
        command = request.headers.get("x-goog-upload-command", "")
        if protocol.lower() != "resumable" or command.lower().strip() != "start":
            message = "Only resumable uploads are served: send X-Goog-Upload-Protocol: resumable"
            raise ApiError(400, f"{message} and X-Goog-Upload-Command: start.")
        body = request.json()
        meta = _get(body, "file") or {}
        if not isinstance(meta, dict):
            raise ApiError(400, "'file' must be an object.")
        file_id = str(_get(meta, "name") or "").removeprefix("files/") or self._new_id(12)
        if not _FILE_ID.fullmatch(file_id) or file_id.startswith("batch-"):
            message = f"Invalid file name {file_id!r}: use [a-z0-9-], at most 40, not batch-*."
            raise ApiError(400, message)
        taken = {u.file_id for u in self._uploads.values()}
        if file_id in self._files or file_id in taken:
            raise ApiError(409, f"File files/{file_id} already exists.")
        declared = _get(meta, "sizeBytes")
        if declared is None:
            declared = request.headers.get("x-goog-upload-header-content-length")
        try:
            size = None if declared is None else int(declared)
        except (TypeError, ValueError):
            raise ApiError(400, f"Invalid size_bytes {declared!r}.") from None
        if size is not None and size > MAX_FILE_BYTES:
            raise ApiError(400, payload_too_large(MAX_FILE_BYTES))
        mime = (
            _get(meta, "mimeType")
            or request.headers.get("x-goog-upload-header-content-type")
            or "application/octet-stream"
        )
        display = _get(meta, "displayName") or None
        filename = request.headers.get("x-goog-upload-file-name") or display or file_id
        upload = _Upload(self._new_id(24), file_id, display, str(mime), size, filename, self._now())
        self._uploads[upload.id] = upload
        url = (
            f"{self._origin(request, match)}/upload/{match['ver']}/files"
            f"?upload_id={upload.id}&upload_protocol=resumable"
        )
        headers = {
            "X-Goog-Upload-URL": url,
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-Chunk-Granularity": str(UPLOAD_GRANULARITY),
            "content-type": "text/plain; charset=utf-8",
        }
        return SimResponse(200, headers, b"")

    def _upload_chunk(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        upload = self._uploads.get(request.arg("upload_id") or "")
        if upload is None:
            raise ApiError(404, "Upload session not found (it was finalized or never started).")
        raw = request.headers.get("x-goog-upload-command", "")
        commands = {c.strip().lower() for c in raw.split(",")}
        if "query" in commands:
            headers = {
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Size-Received": str(len(upload.buffer)),
            }
            return SimResponse(200, headers, b"")
        if not commands & {"upload", "finalize"}:
            raise ApiError(400, "X-Goog-Upload-Command must be upload, finalize or query.")
        offset = request.headers.get("x-goog-upload-offset")
        if offset is not None and offset.strip() != str(len(upload.buffer)):
            message = f"X-Goog-Upload-Offset {offset} does not match {len(upload.buffer)} received."
            raise ApiError(400, message)
        if "upload" in commands:
            if len(upload.buffer) + len(request.body) > MAX_FILE_BYTES:
                raise ApiError(400, payload_too_large(MAX_FILE_BYTES))
            upload.buffer.extend(request.body)
        if "finalize" not in commands:
            return SimResponse(200, {"X-Goog-Upload-Status": "active"}, b"")
        if upload.declared_size is not None and upload.declared_size != len(upload.buffer):
            message = f"Upload declared {upload.declared_size} bytes but sent {len(upload.buffer)}."
            raise ApiError(400, message)
        data = bytes(upload.buffer)
        blob = self._sim.blobs.put(data)
        stored = _File(
            upload.file_id, upload.display_name, upload.mime_type, blob, len(data), self._now()
        )
        del self._uploads[upload.id]
        self._files[stored.id] = stored
        self._sim.record_upload(self.name, stored.id, upload.filename, len(data), "")
        body = {"file": self._file_json(stored.id, request, match)}
        return SimResponse.json(body, headers={"X-Goog-Upload-Status": "final"})
