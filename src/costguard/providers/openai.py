"""OpenAI GPT Image through the official `openai` SDK: Files + Batch, and sync Images calls.

A batch job is one JSONL input file uploaded with purpose `batch`, then `batches.create` with
`metadata.costguard_tag` so a crashed run can find its job again instead of creating another.
Output and error files are streamed to disk and parsed line by line. The SDK retries 408, 409,
429 and 5xx itself (honouring `retry-after`); `OPENAI_BASE_URL` is honoured by the SDK.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.errors import ProviderError
from costguard.models import ImageRequest, Usage
from costguard.providers.base import (
    JobStatus,
    Outcome,
    Status,
    SubmittedJob,
    data_url,
    decode_base64,
    read_image,
    scrub,
    translating,
)
from costguard.providers.resultfiles import Sink, download_lines, loads
from costguard.providers.states import job_state

if TYPE_CHECKING:
    from openai import OpenAI

TAG_KEY = "costguard_tag"
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
LOOKBACK_S = 3 * 24 * 3600
"""How far back `find_job` looks (a batch window is 24 h)."""

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
_ERROR_STATUS: dict[str, Status] = {
    "moderation_blocked": "refused",
    "content_policy_violation": "refused",
    "batch_expired": "expired",
    "batch_cancelled": "cancelled",
}


def endpoint_for(request: ImageRequest) -> str:
    """The Images endpoint a request goes to: edits when it has input images."""
    return EDITS if request.images else GENERATIONS


QUOTA_CODE = "token_limit_exceeded"
"""A batch's error code when it failed at validation because the organisation's enqueued
tokens for its model would pass the limit."""
_QUOTA_LIMIT = re.compile(r"Limit: ([0-9][0-9,]*) enqueued tokens")
"""The limit in that error's message ("... Limit: 2,000,000 enqueued tokens. ...")."""


def translate(exc: BaseException) -> ProviderError | None:
    """The `openai` SDK's errors as ProviderError (None for anything else)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        error = _error_body(exc.body) or {}
        said = str(error.get("message") or exc.message)
        rejected = 400 <= code < 500 and code not in (408, 409, 429)
        return ProviderError(
            f"OpenAI answered {code}: {scrub(said)}", rejected=rejected, quota=code == 429
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"OpenAI could not be reached: {scrub(str(exc))}", rejected=False)
    return None


@translating(translate)
class OpenAIProvider:
    """`Provider` for OpenAI."""

    name = "openai"

    def __init__(self, api_key: str, *, base: Path, max_retries: int = 5) -> None:
        from openai import OpenAI

        self.client: OpenAI = OpenAI(api_key=api_key, max_retries=max_retries)
        self.base = base
        """Folder that relative input-image paths are read from (the queue's)."""

    # batch -------------------------------------------------------------------------------

    def find_job(self, tag: str) -> str | None:
        since = time.time() - LOOKBACK_S
        for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get(TAG_KEY) == tag:
                return batch.id
            if batch.created_at < since:
                break
        return None

    def body(self, request: ImageRequest) -> dict[str, Any]:
        """The Images API body for a request (batch line body and sync call alike)."""
        body: dict[str, Any] = json.loads(request.passthrough) if request.passthrough else {}
        body.update(model=request.model, prompt=request.prompt)
        body["size"] = request.size
        if request.quality is not None:
            body["quality"] = request.quality
        if request.n > 1:
            body["n"] = request.n
        if request.images:
            refs = []
            for ref in request.images:
                if ref.startswith("file-"):
                    refs.append({"file_id": ref})
                    continue
                local = None if ref.startswith("data:") else read_image(ref, self.base)
                refs.append({"image_url": data_url(*local) if local is not None else ref})
            body["images"] = refs
        return body

    def submit(
        self, model: str, requests: Iterable[ImageRequest], tag: str, workdir: Path
    ) -> SubmittedJob:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "input.jsonl"
        endpoint: str | None = None
        with path.open("w", encoding="utf-8") as out:
            for request in requests:
                url = endpoint_for(request)
                if endpoint is None:
                    endpoint = url
                elif url != endpoint:
                    msg = "one OpenAI batch takes one endpoint: split generations from edits"
                    raise ProviderError(msg, rejected=True)
                line = {"custom_id": request.key, "method": "POST", "url": url}
                line["body"] = self.body(request)  # type: ignore[assignment]
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
        if endpoint is None:
            msg = f"no requests to submit for {model}"
            raise ProviderError(msg, rejected=True)
        with path.open("rb") as handle:
            uploaded = self.client.files.create(file=handle, purpose="batch")
        batch = self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata={TAG_KEY: tag},
        )
        return SubmittedJob(batch.id, uploaded.id)

    def status(self, job_id: str) -> JobStatus:
        batch = self.client.batches.retrieve(job_id)
        counts = batch.request_counts
        error, quota, limit = None, False, None
        if batch.errors is not None and batch.errors.data:
            first = batch.errors.data[0]
            where = f"line {first.line}: " if first.line else ""
            error = f"{where}{first.code}: {first.message}"
            quota = first.code == QUOTA_CODE
            if quota and (named := _QUOTA_LIMIT.search(first.message or "")):
                limit = int(named.group(1).replace(",", ""))
        return JobStatus(
            state=job_state(self.name, batch.status),
            raw_state=batch.status,
            total=counts.total if counts else None,
            completed=counts.completed if counts else None,
            failed=counts.failed if counts else None,
            error=error,
            quota=quota,
            quota_limit=limit,
        )

    def results(self, job_id: str, workdir: Path, *, keep: bool = False) -> Iterator[Outcome]:
        batch = self.client.batches.retrieve(job_id)
        workdir.mkdir(parents=True, exist_ok=True)
        for name, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
            if not file_id:
                continue
            download = functools.partial(self._download, file_id)
            for raw in download_lines(download, workdir / f"{name}.jsonl", keep=keep):
                yield parse_line(loads(raw, "b64_json"))

    def _download(self, file_id: str, sink: Sink) -> None:
        """Stream a result file into `sink` (read as it arrives: see `download_lines`)."""
        with self.client.files.with_streaming_response.content(file_id) as response:
            for chunk in response.iter_bytes():
                sink.write(chunk)

    def cancel(self, job_id: str) -> None:
        self.client.batches.cancel(job_id)

    # sync --------------------------------------------------------------------------------

    def generate(self, request: ImageRequest) -> Outcome:
        from openai import APIStatusError

        body = self.body(request)
        try:
            if request.images:
                files = []
                for i, ref in enumerate(request.images, start=1):
                    local = read_image(ref, self.base)
                    if local is None:
                        return Outcome(request.key, "failed", reason="sync edits need local images")
                    name = f"image-{i}" if ref.startswith("data:") else Path(ref).name
                    files.append((name, local[0], local[1]))
                del body["images"]
                raw = self.client.images.edit(image=files, **body)
            else:
                raw = self.client.images.generate(**body)
        except APIStatusError as exc:
            error = _error_body(exc.body)
            return _error_outcome(request.key, error or {"message": str(exc)})
        return _success(request.key, raw.model_dump(mode="json"))


def _error_body(body: object) -> dict[str, Any] | None:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return None


def _error_outcome(key: str, error: dict[str, Any]) -> Outcome:
    code = str(error.get("code") or error.get("type") or "error")
    status = _ERROR_STATUS.get(code, "failed")
    return Outcome(key, status, reason=f"{code}: {error.get('message', '')}".strip())


def _success(key: str, body: dict[str, Any]) -> Outcome:
    mime = _MIME.get(str(body.get("output_format") or "png"), "image/png")
    images = [
        (decode_base64(item["b64_json"]), mime)
        for item in body.get("data") or []
        if item.get("b64_json")
    ]
    usage = usage_of(body.get("usage"), len(images))
    if not images:
        return Outcome(key, "failed", reason="no image in the response", usage=usage)
    return Outcome(key, "ok", images, usage=usage)


def usage_of(raw: object, images: int) -> Usage | None:
    """Token counts from an images answer's `usage` (None when it has none)."""
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_tokens_details") or {}
    out = raw.get("output_tokens_details") or {}
    input_tokens = int(raw.get("input_tokens") or 0)
    output_tokens = int(raw.get("output_tokens") or 0)
    image_in = int(inp.get("image_tokens") or 0)
    image_out = int(out["image_tokens"]) if "image_tokens" in out else output_tokens
    return Usage(
        input_text_tokens=int(inp.get("text_tokens", input_tokens - image_in) or 0),
        input_image_tokens=image_in,
        output_image_tokens=image_out,
        output_text_tokens=int(out.get("text_tokens") or 0),
        images=images,
    )


def parse_line(line: dict[str, Any]) -> Outcome:
    """One output- or error-file line -> Outcome (matched by `custom_id`, never by position)."""
    key = str(line.get("custom_id"))
    response = line.get("response")
    if isinstance(response, dict) and response.get("status_code") == 200:
        body = response.get("body")
        return _success(key, body if isinstance(body, dict) else {})
    if isinstance(response, dict):
        error = _error_body(response.get("body"))
        status = response.get("status_code")
        return _error_outcome(key, error or {"code": f"http_{status}", "message": ""})
    error = line.get("error")
    return _error_outcome(key, error if isinstance(error, dict) else {"code": "unknown"})
