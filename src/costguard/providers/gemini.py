"""Gemini image models through the official `google-genai` SDK: Batch API, Files API, sync.

A job is submitted inline only when the whole job is small: its requests fit under the 20 MB
request limit AND the images it will return (images x typical bytes for their size) come to at
most `INLINE_OUTPUT_LIMIT`. Otherwise it goes as a JSONL file uploaded through the Files API (up
to 2 GB), and its results come back as a file. The reason: an inline job's results come back
inside the job itself, and the SDK reads and parses a whole `batches.get` body at once (every
image of the job in memory, several times over while parsing); a result file is streamed to
disk (`files.download(destination=...)`) and read one line at a time, in flat memory. For an
inline job, the `batches.get` that sees it finished is the one its results are read from (never
downloaded twice), and each response is let go as soon as its images are handed over.

The job's display name carries the costguard tag so a crashed run finds its job instead of
creating another. Results are matched by each request's `key`. The SDK honours
`GOOGLE_GEMINI_BASE_URL`; retries on 408, 429 and 5xx are switched on (the SDK does none by
default).

Gemini 2.x image models take no `imageSize` (their output is about 1 MP whatever the ratio),
so it is sent only to later models.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.errors import ProviderError
from costguard.models import ImageRequest, Usage
from costguard.providers.base import (
    JobStatus,
    Outcome,
    SubmittedJob,
    decode_base64,
    read_image,
    scrub,
    translating,
)
from costguard.providers.resultfiles import Sink, download_lines, loads
from costguard.providers.states import TERMINAL, job_state

if TYPE_CHECKING:
    import httpx2
    from google.genai import Client

INLINE_LIMIT = 20 * 1024 * 1024
"""Gemini's request size limit: larger jobs go through the Files API."""
FILE_LIMIT = 2 * 1024 * 1024 * 1024
INLINE_MARGIN = 64 * 1024
"""Room for the envelope around inline requests."""
MIB = 1024 * 1024
INLINE_OUTPUT_LIMIT = 16 * MIB
"""The most image bytes (expected) an inline job may return; larger jobs go as files."""
TYPICAL_IMAGE_BYTES: dict[str, int] = {
    "512": MIB // 2,
    "1K": 3 * MIB // 2,
    "2K": 5 * MIB,
    "4K": 16 * MIB,
}
"""Typical bytes of one returned image by size (PNG; 1-2 MB at 1K, 10-20 MB at 4K)."""
SUCCESS_FINISH = {"STOP", "FINISH_REASON_UNSPECIFIED", None}

_BATCH_GET = re.compile(r"/batches/([^/:?]+)$")
"""The path of `batches.get` (whatever the API version prefix)."""
_BATCH_STATS = re.compile(rb'"batchStats"\s*:\s*(\{[^{}]*\})')
"""The job's `metadata.batchStats` object in an Operation body (a flat object of counters)."""


def takes_image_size(model: str) -> bool:
    """Whether the model accepts `imageConfig.imageSize` (Gemini 3 and later)."""
    return not model.removeprefix("models/").startswith("gemini-2.")


def translate(exc: BaseException) -> ProviderError | None:
    """The `google-genai` SDK's errors (and its transport's) as ProviderError."""
    import httpx2
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        code = int(exc.code or 0)
        said = f"{exc.status or ''} {exc.message or ''}".strip()
        rejected = 400 <= code < 500 and code not in (408, 409, 429)
        return ProviderError(
            f"Gemini answered {code}: {scrub(said)}", rejected=rejected, quota=code == 429
        )
    if isinstance(exc, httpx2.TransportError):
        return ProviderError(f"Gemini could not be reached: {scrub(str(exc))}", rejected=False)
    return None


@translating(translate)
class GeminiProvider:
    """`Provider` for the Gemini Developer API."""

    name = "gemini"

    def __init__(self, api_key: str, *, base: Path, attempts: int = 5) -> None:
        from google import genai
        from google.genai import types

        retry = types.HttpRetryOptions(
            attempts=attempts, http_status_codes=[408, 429, 500, 502, 503, 504]
        )
        hooks = {"response": [self._note_batch_stats]}
        self.client: Client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(retry_options=retry, client_args={"event_hooks": hooks}),
        )
        self.base = base
        self.attempts = attempts
        self._finished: dict[str, Any] = {}
        """Finished inline jobs as `status` fetched them, kept for `results` (one download)."""
        self._stats: dict[str, dict[str, str] | None] = {}
        """Per job, the `batchStats` of the last `batches.get` answer (None: it had none)."""
        self._errors: dict[str, str] = {}
        """Per job, the Operation's `error` of the last `batches.get` answer, when it had one."""

    def _note_batch_stats(self, response: httpx2.Response) -> None:
        """Keep a `batches.get` answer's `metadata.batchStats` and a failed job's `error`,
        which the SDK drops (google-genai 3.x copies neither into its `BatchJob`).

        The SDK's `BatchJob` has no request counts for the Gemini API (its `completion_stats`
        is Vertex's), but the API reports them: `{"requestCount": "6", "successfulRequestCount":
        "4", "failedRequestCount": "1", "pendingRequestCount": "1"}` (int64 as strings, zeros
        left out). Only that small object is parsed, never the rest of the body (a finished
        inline job's body holds its images); no other response is read here.
        """
        found = _BATCH_GET.search(response.request.url.path)
        if response.request.method != "GET" or found is None or response.status_code != 200:
            return
        body = response.read()
        at = body.find(b'"batchStats"')
        stats = _BATCH_STATS.match(body, at) if at >= 0 else None
        try:
            parsed = json.loads(stats[1]) if stats else None
        except ValueError:
            parsed = None
        self._stats[f"batches/{found[1]}"] = parsed if isinstance(parsed, dict) else None
        error = _operation_error(body)
        if error is not None:
            self._errors[f"batches/{found[1]}"] = error

    # wire ----------------------------------------------------------------------------------

    def request_json(self, request: ImageRequest) -> dict[str, Any]:
        """The GenerateContentRequest for one request, in REST (camelCase) form.

        Fields a Gemini-format queue line set are sent as written (its `passthrough`); size
        and aspect ratio are always costguard's, the values it priced.
        """
        sent: dict[str, Any] = json.loads(request.passthrough) if request.passthrough else {}
        contents = sent.pop("contents", None) or [{"role": "user", "parts": self._parts(request)}]
        config: dict[str, Any] = {
            "responseModalities": ["IMAGE"],
            **sent.pop("generationConfig", {}),
        }
        image_config: dict[str, str] = {}
        if request.aspect_ratio:
            image_config["aspectRatio"] = request.aspect_ratio
        if takes_image_size(request.model):
            image_config["imageSize"] = request.size
        if image_config:
            config["imageConfig"] = image_config
        return {"contents": contents, **sent, "generationConfig": config}

    def _parts(self, request: ImageRequest) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        for ref in request.images:
            local = read_image(ref, self.base)
            if local is None:
                parts.append({"fileData": {"fileUri": ref}})
            else:
                data, mime = local
                parts.append(
                    {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}
                )
        return parts

    # batch -----------------------------------------------------------------------------------

    def find_job(self, tag: str) -> str | None:
        for job in self.client.batches.list(config={"page_size": 100}):
            if job.display_name == tag and job.name:
                return job.name
        return None

    def submit(
        self, model: str, requests: Iterable[ImageRequest], tag: str, workdir: Path
    ) -> SubmittedJob:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "input.jsonl"
        size = output = 0
        with path.open("w", encoding="utf-8") as out:
            for request in requests:
                line = json.dumps(
                    {"key": request.key, "request": self.request_json(request)},
                    separators=(",", ":"),
                )
                size += len(line) + 1
                output += request.n * TYPICAL_IMAGE_BYTES.get(request.size, 2 * MIB)
                out.write(line + "\n")
        if inline_fits(size, output):
            with path.open(encoding="utf-8") as lines:
                inline = [_inlined(json.loads(line)) for line in lines]
            job = self.client.batches.create(
                model=model,
                src=inline,  # type: ignore[arg-type]
                config=self._create_config(tag),
            )
            assert job.name is not None
            return SubmittedJob(job.name)
        uploaded = self.client.files.upload(
            file=str(path), config={"mime_type": "jsonl", "display_name": tag}
        )
        assert uploaded.name is not None
        job = self.client.batches.create(
            model=model, src=uploaded.name, config=self._create_config(tag)
        )
        assert job.name is not None
        return SubmittedJob(job.name, uploaded.name)

    def _create_config(self, tag: str) -> Any:
        """A batch create's config: its tag, and retries without 429. Past the batch quota
        Gemini answers 429 RESOURCE_EXHAUSTED, which seconds of backoff do not clear: the run's
        scheduler waits for room instead (`run/submit.py`)."""
        from google.genai import types

        retry = types.HttpRetryOptions(
            attempts=self.attempts, http_status_codes=[408, 500, 502, 503, 504]
        )
        return types.CreateBatchJobConfig(
            display_name=tag, http_options=types.HttpOptions(retry_options=retry)
        )

    def status(self, job_id: str) -> JobStatus:
        self._stats.pop(job_id, None)
        self._errors.pop(job_id, None)
        job = self.client.batches.get(name=job_id)
        raw = job.state.name if job.state is not None else "JOB_STATE_UNSPECIFIED"
        error = self._errors.pop(job_id, None)
        if job.error is not None:
            error = f"{job.error.code}: {job.error.message}"
        state = job_state(self.name, raw)
        if state in TERMINAL and job.dest is not None and job.dest.inlined_responses:
            self._finished[job_id] = job  # its results are in it: `results` reads this copy
        total, completed, failed = batch_counts(self._stats.pop(job_id, None))
        return JobStatus(state, raw, total, completed, failed, error=error)

    def results(self, job_id: str, workdir: Path, *, keep: bool = False) -> Iterator[Outcome]:
        job = self._finished.pop(job_id, None) or self.client.batches.get(name=job_id)
        dest = job.dest
        if dest is None:
            return
        if dest.inlined_responses:
            responses = dest.inlined_responses
            dest.inlined_responses = None
            responses.reverse()
            del job, dest
            while responses:  # each response is dropped once its images are handed over
                item = responses.pop()
                key = (item.metadata or {}).get("key", "")
                if item.error is not None:
                    yield Outcome(key, "failed", reason=f"{item.error.code}: {item.error.message}")
                elif item.response is not None:
                    yield parse_response(key, item.response.model_dump(mode="json", by_alias=True))
            return
        if dest.file_name:
            workdir.mkdir(parents=True, exist_ok=True)
            name = dest.file_name

            def download(sink: Sink) -> None:
                self.client.files.download(file=name, destination=sink)

            for raw in download_lines(download, workdir / "results.jsonl", keep=keep):
                yield parse_file_line(loads(raw, "data"))

    def cancel(self, job_id: str) -> None:
        self.client.batches.cancel(name=job_id)

    # sync --------------------------------------------------------------------------------

    def generate(self, request: ImageRequest) -> Outcome:
        from google.genai import errors

        wire = self.request_json(request)
        try:
            response = self.client.models.generate_content(
                model=request.model,
                contents=wire["contents"],
                config=_config(wire),  # type: ignore[arg-type]
            )
        except errors.APIError as exc:
            return Outcome(request.key, "failed", reason=f"{exc.code} {exc.status}: {exc.message}")
        return parse_response(request.key, response.model_dump(mode="json", by_alias=True))


ERROR_BODY_MAX = 1 << 20
"""Largest `batches.get` body read whole for its `error` (a failed job's is a few hundred
bytes; a finished inline job's holds its images and has no job error)."""


def _operation_error(body: bytes) -> str | None:
    """`code: message` of a batch Operation's top-level `error`, or None."""
    if len(body) > ERROR_BODY_MAX or b'"error"' not in body:
        return None
    try:
        operation = json.loads(body)
    except ValueError:
        return None
    error = operation.get("error") if isinstance(operation, dict) else None
    if not isinstance(error, dict):
        return None
    return f"{error.get('code')}: {error.get('message', '')}"


def batch_counts(stats: dict[str, str] | None) -> tuple[int | None, int | None, int | None]:
    """(total, succeeded, failed) from a job's `batchStats`; all None when it had none.

    A counter left out is zero (proto3 JSON omits zeros), so a running job whose stats say only
    `requestCount` and `pendingRequestCount` has 0 done and 0 failed, not unknown ones.
    """
    if stats is None:
        return None, None, None

    def count(name: str) -> int | None:
        try:
            return int(stats.get(name) or 0)
        except (TypeError, ValueError):
            return None

    total = count("requestCount") if "requestCount" in stats else None
    return total, count("successfulRequestCount"), count("failedRequestCount")


def inline_fits(input_bytes: int, output_bytes: int) -> bool:
    """Whether a job goes inline: its requests fit one API request and its expected images
    are few enough to read back from one `batches.get` body."""
    return input_bytes + INLINE_MARGIN < INLINE_LIMIT and output_bytes <= INLINE_OUTPUT_LIMIT


def _config(request: dict[str, Any]) -> dict[str, Any]:
    """A REST request's generationConfig, systemInstruction and safetySettings -> the SDK's
    snake_case GenerateContentConfig dict."""
    generation = request["generationConfig"]
    config: dict[str, Any] = {_snake(k): v for k, v in generation.items() if k != "imageConfig"}
    image = generation.get("imageConfig")
    if image:
        config["image_config"] = {_snake(k): v for k, v in image.items() if v}
    if "systemInstruction" in request:
        config["system_instruction"] = _sdk_content(request["systemInstruction"])
    if "safetySettings" in request:
        config["safety_settings"] = request["safetySettings"]
    return config


def _inlined(line: dict[str, Any]) -> dict[str, Any]:
    """A file line -> the SDK's InlinedRequest dict (contents, config, metadata.key)."""
    request = line["request"]
    return {
        "contents": [_sdk_content(content) for content in request["contents"]],
        "config": _config(request),
        "metadata": {"key": line["key"]},
    }


def _sdk_content(content: dict[str, Any]) -> dict[str, Any]:
    """A REST Content -> the SDK's: snake_case names, inline data and signatures as bytes."""
    parts = []
    for part in content["parts"]:
        sdk: dict[str, Any] = {}
        for name, value in part.items():
            if name == "inlineData":
                sdk["inline_data"] = {
                    "mime_type": value["mimeType"],
                    "data": decode_base64(value["data"]),
                }
            elif name == "thoughtSignature":
                sdk["thought_signature"] = decode_base64(value)
            elif isinstance(value, dict):
                sdk[_snake(name)] = {_snake(k): v for k, v in value.items()}
            else:
                sdk[_snake(name)] = value
        parts.append(sdk)
    out: dict[str, Any] = {"parts": parts}
    if "role" in content:
        out["role"] = content["role"]
    return out


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def parse_file_line(line: dict[str, Any]) -> Outcome:
    """One result-file line (`{"key", "response"}` or `{"key", "error"}`) -> Outcome."""
    key = str(line.get("key", ""))
    error = line.get("error")
    if isinstance(error, dict):
        return Outcome(key, "failed", reason=f"{error.get('code')}: {error.get('message', '')}")
    response = line.get("response")
    return parse_response(key, response if isinstance(response, dict) else {})


def parse_response(key: str, response: dict[str, Any]) -> Outcome:
    """A GenerateContentResponse (camelCase JSON) -> Outcome: images, refusals, usage."""
    usage = usage_of(response.get("usageMetadata"))
    feedback = response.get("promptFeedback") or {}
    candidates = response.get("candidates") or []
    if not candidates:
        block = feedback.get("blockReason")
        reason = f"blockReason: {block}" if block else "no candidates in the response"
        return Outcome(key, "refused" if block else "failed", reason=reason, usage=usage)
    candidate = candidates[0]
    images = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        inline = part.get("inlineData")
        if inline and inline.get("data") and not part.get("thought"):
            images.append((decode_base64(inline["data"]), inline.get("mimeType", "image/png")))
    finish = candidate.get("finishReason")
    if usage is not None:
        usage = usage._replace(images=len(images))
    if images:
        return Outcome(key, "ok", images, reason=None, usage=usage)
    reason = f"finishReason: {finish}" if finish not in SUCCESS_FINISH else "no image returned"
    return Outcome(key, "refused", reason=reason, usage=usage)


def usage_of(raw: object) -> Usage | None:
    """Token counts from a response's `usageMetadata` (None when it has none)."""
    if not isinstance(raw, dict):
        return None

    def by_modality(details: object, modality: str) -> int:
        if not isinstance(details, list):
            return 0
        return sum(
            int(d.get("tokenCount") or 0)
            for d in details
            if isinstance(d, dict) and d.get("modality") == modality
        )

    prompt = raw.get("promptTokensDetails")
    out = raw.get("candidatesTokensDetails")
    prompt_total = int(raw.get("promptTokenCount") or 0)
    image_in = by_modality(prompt, "IMAGE")
    image_out = by_modality(out, "IMAGE")
    text_out = int(raw.get("candidatesTokenCount") or 0) - image_out
    return Usage(
        input_text_tokens=prompt_total - image_in,
        input_image_tokens=image_in,
        output_image_tokens=image_out,
        output_text_tokens=max(text_out, 0) + int(raw.get("thoughtsTokenCount") or 0),
    )
