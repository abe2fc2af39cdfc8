"""OpenAI face: `/v1` files, batches and images as the current `openai` SDKs use them.

Wire shapes follow `../shared/reference/openai-batch-protocol.md`; error bodies are the
fixtures in `fixtures/openai/errors/`, usage token counts come from `fixtures/openai/usage.yaml`.

A batch job is a few numbers, not a copy of its results: its status, request counts and usage
are computed from the simulated clock and the job's scenario whenever a client asks, and its
output and error files are generated line by line while they are downloaded. The input file
is scanned once at creation (validation, per-request outcome and tokens, line offsets), so a
50,000-request batch costs a few hundred kilobytes of bookkeeping beside its input bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesFeedParser
from email.policy import HTTP
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from costguard.resources import data_dir
from costguard.simulator.core import Handler, Router, SimRequest, SimResponse
from costguard.simulator.scenario import Scenario

if TYPE_CHECKING:
    import re

    from costguard.simulator import Simulator

BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
"""Every endpoint the Batch API accepts (`batch_create_params.py`)."""

SIMULATED_ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
"""The batch endpoints whose requests the simulator can answer."""

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
"""Purposes a client may upload with."""

WINDOW_S = 24 * 3600
"""The only completion window: a batch expires 24 h after creation."""

FILE_TTL_S = 30 * 24 * 3600
"""purpose=batch input files and batch output files expire after 30 days by default."""

OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
QUALITIES = ("low", "medium", "high", "auto")
CHUNK_BYTES = 1 << 16
"""Generated result files are streamed in chunks of about this size."""

MODERATION_CATEGORY = "violence"
"""The category named in simulated moderation refusals."""

_HEX = "0123456789abcdef"
_Item = TypeVar("_Item", "FileRecord", "BatchJob")
_OK, _REFUSED, _REJECTED = 0, 1, 2


@dataclass(frozen=True)
class OpenAILimits:
    """The API's size limits (tests lower them to exercise the errors cheaply)."""

    max_file_bytes: int = 512 * 1024 * 1024
    max_batch_input_bytes: int = 200 * 1024 * 1024
    max_requests: int = 50_000
    max_metadata_pairs: int = 16
    max_metadata_key: int = 64
    max_metadata_value: int = 512
    max_errors_listed: int = 1000
    """How many validation errors a failed batch lists (the rest are counted, not listed)."""


class ApiError(Exception):
    """An OpenAI API error: raised inside the face, answered as the fixture body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", {}).get("message", ""))
        self.status = status
        self.body = body


# -- fixtures ------------------------------------------------------------------------------


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


@cache
def _error_templates() -> dict[str, dict[str, Any]]:
    folder = data_dir("fixtures") / "openai" / "errors"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}


def error_body(name: str, /, **values: str | None) -> dict[str, Any]:
    """The fixture `fixtures/openai/errors/<name>.json` with `{placeholders}` filled in.

    A placeholder whose value is None makes the field it fills JSON null (e.g. `param`).
    """
    template = _error_templates()[name]
    body: dict[str, Any] = _fill(template, {k: v for k, v in values.items() if v is not None})
    error = body["error"]
    for key, text in list(error.items()):
        if isinstance(text, str) and text.startswith("{") and text.endswith("}"):
            error[key] = None
    return body


def api_error(http_status: int, name: str, /, **values: str | None) -> ApiError:
    """An `ApiError` carrying the named fixture body."""
    return ApiError(http_status, error_body(name, **values))


def _supported(values: list[str] | tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) < 2:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


@dataclass(frozen=True)
class UsageTable:
    """`fixtures/openai/usage.yaml`: output image tokens per model, size and quality."""

    output: dict[str, dict[str, dict[str, int]]]
    default_size: str
    default_quality: str
    edit_input_image_tokens: int

    @classmethod
    @cache
    def load(cls) -> UsageTable:
        """The shipped table."""
        path = data_dir("fixtures") / "openai" / "usage.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(
            output=data["output_image_tokens"],
            default_size=data["defaults"]["size"],
            default_quality=data["defaults"]["quality"],
            edit_input_image_tokens=int(data["edit_input_image_tokens"]),
        )


def text_tokens(prompt: str) -> int:
    """Input text tokens of a prompt, estimated as ceil(UTF-8 bytes / 4)."""
    return math.ceil(len(prompt.encode("utf-8")) / 4)


# -- the image "model" ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCall:
    """A validated image request: what it asks for and what it will be billed."""

    model: str
    prompt: str
    size: str
    quality: str
    n: int
    output_format: str
    background: str
    input_images: int

    @property
    def input_text_tokens(self) -> int:
        """Estimated prompt tokens."""
        return text_tokens(self.prompt)

    def input_image_tokens(self, table: UsageTable) -> int:
        """Tokens of the input images (edits only)."""
        return self.input_images * table.edit_input_image_tokens

    def output_tokens(self, table: UsageTable) -> int:
        """Image tokens of all output images."""
        billed_size = table.default_size if self.size == "auto" else self.size
        billed_quality = table.default_quality if self.quality == "auto" else self.quality
        return table.output[self.model][billed_size][billed_quality] * self.n

    def usage(self, table: UsageTable) -> dict[str, Any]:
        """The response's `usage` object."""
        text = self.input_text_tokens
        image = self.input_image_tokens(table)
        out = self.output_tokens(table)
        return {
            "input_tokens": text + image,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": out,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
            "total_tokens": text + image + out,
        }


def parse_image_call(
    body: dict[str, Any], table: UsageTable, *, edit: bool, input_images: int = 0
) -> ImageCall:
    """Validate an images.generate / images.edit body as the API does.

    Raises:
        ApiError: 400 for a missing or invalid parameter, 404 for an unknown model.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise api_error(400, "400_missing_required_parameter", param="model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise api_error(400, "400_missing_required_parameter", param="prompt")
    sizes = table.output.get(model)
    if sizes is None:
        raise api_error(404, "404_model", model=model)
    size = str(body.get("size") or "auto")
    if size != "auto" and size not in sizes:
        supported = _supported([*sizes, "auto"])
        raise api_error(400, "400_invalid_value", value=size, supported=supported, param="size")
    quality = str(body.get("quality") or "auto")
    if quality not in QUALITIES:
        supported = _supported(QUALITIES)
        raise api_error(
            400, "400_invalid_value", value=quality, supported=supported, param="quality"
        )
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise api_error(
            400, "400_invalid_value", value=str(n), supported="integers 1 to 10", param="n"
        )
    output_format = str(body.get("output_format") or "png")
    if output_format not in OUTPUT_FORMATS:
        supported = _supported(list(OUTPUT_FORMATS))
        raise api_error(
            400,
            "400_invalid_value",
            value=output_format,
            supported=supported,
            param="output_format",
        )
    if edit and input_images < 1:
        raise api_error(400, "400_missing_required_parameter", param="image")
    return ImageCall(
        model=model,
        prompt=prompt,
        size=table.default_size if size == "auto" else size,
        quality=table.default_quality if quality == "auto" else quality,
        n=n,
        output_format=output_format,
        background=str(body.get("background") or "opaque"),
        input_images=input_images,
    )


def _json_images_count(body: dict[str, Any]) -> int:
    """Input images of a JSON edit body (`images: [{image_url|file_id}]`, or `image`)."""
    images = body.get("images", body.get("image"))
    if isinstance(images, list):
        return len(images)
    return 1 if images else 0


# -- state records -------------------------------------------------------------------------


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


@dataclass
class BatchJob:
    """One batch: what the client asked, the scenario it runs under, what validation found."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    seq: int
    scenario: Scenario
    input_blob: str
    output_file_id: str
    error_file_id: str
    output_expires_after: int | None = None
    cancel_requested_at: int | None = None
    total: int = 0
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    published: bool = False

    def to_json(self) -> dict[str, Any]:
        """The persisted form (the scenario is kept whole, so loading needs no file)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "scenario"}
        data["scenario"] = self.scenario.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchJob:
        """Inverse of `to_json`."""
        return cls(**{**data, "scenario": Scenario.model_validate(data["scenario"])})


@dataclass
class Analysis:
    """Per-request facts of a valid batch, rebuilt from the input bytes when needed."""

    offsets: array[int] = field(default_factory=lambda: array("Q"))
    """Byte offset of each request line in the input file."""
    outcome: bytearray = field(default_factory=bytearray)
    """0 answered, 1 refused (moderation), 2 rejected (4xx: unknown model, bad size...)."""
    cum_input: array[int] = field(default_factory=lambda: array("Q", [0]))
    """Prefix sums of input tokens over answered requests (length total + 1)."""
    cum_output: array[int] = field(default_factory=lambda: array("Q", [0]))

    def failures(self, finished: int) -> int:
        """Refused or rejected requests among the first `finished` positions."""
        return finished - self.outcome.count(_OK, 0, finished)


@dataclass(frozen=True)
class Timeline:
    """When a batch reaches each status, and how many requests finish by when."""

    in_progress_at: int | None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    rate_target: int = 0
    """Requests finished at `rate_end` at the natural pace."""
    rate_end: int = 0
    stop_at: int = 0
    """Work stops here (completion, expiry or cancellation)."""

    @property
    def terminal_at(self) -> int:
        """When the batch reaches its terminal status."""
        for moment in (self.completed_at, self.failed_at, self.expired_at, self.cancelled_at):
            if moment is not None:
                return moment
        msg = "a timeline always ends"
        raise AssertionError(msg)

    def status(self, now: float) -> str:
        """The batch status at simulated time `now`."""
        steps = (
            (self.failed_at, "failed"),
            (self.cancelled_at, "cancelled"),
            (self.cancelling_at, "cancelling"),
            (self.expired_at, "expired"),
            (self.completed_at, "completed"),
            (self.finalizing_at, "finalizing"),
            (self.in_progress_at, "in_progress"),
        )
        for moment, status in steps:
            if moment is not None and now >= moment:
                return status
        return "validating"

    def finished(self, now: float) -> int:
        """How many requests (a prefix of the input, by position) have finished by `now`."""
        if self.in_progress_at is None or now < self.in_progress_at:
            return 0
        moment = min(now, self.stop_at)
        span = self.rate_end - self.in_progress_at
        if span <= 0:
            return self.rate_target
        share = min(1.0, (moment - self.in_progress_at) / span)
        return math.floor(self.rate_target * share + 1e-9)

    def finished_at(self, position: int) -> int:
        """When the request at `position` finished (for its `created` timestamp)."""
        start = self.in_progress_at or 0
        if self.rate_target <= 0:
            return start
        return start + math.ceil((position + 1) * (self.rate_end - start) / self.rate_target)


def timeline(job: BatchJob) -> Timeline:
    """The batch's schedule under its scenario, with a client's cancel taken into account."""
    sc = job.scenario
    created = job.created_at
    validated = created + math.ceil(sc.pending_s)
    window_end = created + WINDOW_S
    asked = job.cancel_requested_at
    cancel_s = math.ceil(sc.finalizing_s)
    if asked is not None and asked < validated:
        return Timeline(None, cancelling_at=asked, cancelled_at=asked + cancel_s, stop_at=asked)
    if job.errors:
        return Timeline(None, failed_at=validated, stop_at=validated)
    total = job.total
    if sc.terminal == "expired":
        rate_end, rate_target = window_end, math.floor(total * sc.completed_fraction)
    elif sc.terminal == "cancelled":
        rate_end = validated + math.ceil(sc.running_s)
        rate_target = math.floor(total * sc.completed_fraction)
    else:
        rate_end, rate_target = validated + math.ceil(sc.running_s), total
    base = Timeline(validated, rate_target=rate_target, rate_end=rate_end, stop_at=rate_end)
    if asked is not None and asked < rate_end:
        return _replace(base, stop_at=asked, cancelling_at=asked, cancelled_at=asked + cancel_s)
    if rate_end > window_end or sc.terminal == "expired":
        return _replace(base, stop_at=window_end, expired_at=window_end)
    if sc.terminal == "cancelled":
        return _replace(base, cancelling_at=rate_end, cancelled_at=rate_end + cancel_s)
    finalized = rate_end + math.ceil(sc.finalizing_s)
    return _replace(base, finalizing_at=rate_end, completed_at=finalized)


def _replace(base: Timeline, **changes: int) -> Timeline:
    values = {k: getattr(base, k) for k in base.__dataclass_fields__}
    values.update(changes)
    return Timeline(**values)


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def parse_multipart(request: SimRequest) -> dict[str, list[Message]]:
    """The parts of a multipart/form-data body by field name (stdlib `email` parser)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise api_error(
            400,
            "400_invalid_request",
            message=f"Invalid Content-Type header ({content_type or 'none'}), "
            "expected multipart/form-data.",
        )
    parser = BytesFeedParser(policy=HTTP)
    parser.feed(f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1"))
    body = memoryview(request.body)
    for start in range(0, len(body), CHUNK_BYTES):  # fed in chunks: a third of the peak memory
        parser.feed(bytes(body[start : start + CHUNK_BYTES]))
    message = parser.close()
    fields: dict[str, list[Message]] = {}
    if not message.is_multipart():
        return fields
    for part in message.get_payload():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields.setdefault(name, []).append(part)
    return fields


def json_body(request: SimRequest) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        ApiError: 400 when the body is not JSON or not an object.
    """
    try:
        body = request.json()
    except ValueError:
        raise api_error(400, "400_invalid_request", message="The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise api_error(400, "400_invalid_request", message="Expected a JSON object.")
    return body


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _part_text(part: Message) -> str:
    return _part_bytes(part).decode("utf-8", errors="replace")


def _lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset, bytes) of each non-blank line."""
    start = 0
    line_no = 0
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end
        line_no += 1
        raw = data[start:end]
        if raw.strip():
            yield line_no, start, raw
        start = end + 1


class InputScan:
    """Batch-level validation of an input file, one line at a time."""

    def __init__(self, endpoint: str, limits: OpenAILimits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.total = 0
        self.model: str | None = None
        self._seen: set[str] = set()

    def fail(self, code: str, line: int | None, message: str, param: str | None = None) -> None:
        """Note one validation error (the first `max_errors_listed` are listed)."""
        self.error_count += 1
        if len(self.errors) < self.limits.max_errors_listed:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})

    def check(self, line_no: int, raw: bytes) -> dict[str, Any] | None:
        """The request body when line `line_no` is a valid request line, else None."""
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            self.fail("invalid_json_line", line_no, "This line is not parseable as valid JSON.")
            return None
        missing = [p for p in ("custom_id", "method", "url", "body") if line.get(p) in (None, "")]
        for param in missing:
            message = f"Missing required parameter: '{param}'."
            self.fail("missing_required_parameter", line_no, message, param)
        if missing:
            return None
        custom_id, body = line["custom_id"], line["body"]
        if not isinstance(custom_id, str):
            self.fail("invalid_value", line_no, "'custom_id' must be a string.", "custom_id")
            return None
        if line["method"] != "POST":
            message = f"Invalid method {line['method']!r}: only POST is supported."
            self.fail("invalid_value", line_no, message, "method")
        if line["url"] != self.endpoint:
            message = (
                f"The url {line['url']!r} does not match the batch endpoint {self.endpoint!r}."
            )
            self.fail("url_mismatch", line_no, message, "url")
        if custom_id in self._seen:
            message = f"The custom_id {custom_id!r} is used on an earlier line."
            self.fail("duplicate_custom_id", line_no, message, "custom_id")
        self._seen.add(custom_id)
        if not isinstance(body, dict):
            self.fail("invalid_value", line_no, "'body' must be a JSON object.", "body")
            return None
        model = body.get("model")
        if not isinstance(model, str) or not model:
            message = "Missing required parameter: 'body.model'."
            self.fail("missing_required_parameter", line_no, message, "body.model")
            return None
        if self.model is None:
            self.model = model
        elif model != self.model:
            message = (
                f"The model {model!r} differs from {self.model!r} on earlier lines; "
                "a batch uses one model."
            )
            self.fail("model_mismatch", line_no, message, "body.model")
        return body


class OpenAIFace:
    """The OpenAI provider: routes, auth, error shapes and the files + batches it holds."""

    name = "openai"

    def __init__(self, sim: Simulator, *, limits: OpenAILimits | None = None) -> None:
        self.sim = sim
        self.limits = limits or OpenAILimits()
        self.usage = UsageTable.load()
        self.files: dict[str, FileRecord] = {}
        self.batches: dict[str, BatchJob] = {}
        self._analyses: dict[str, Analysis] = {}
        self._unpublished: set[str] = set()
        self._seq = 0

    # -- face interface --------------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Add the `/v1` routes; a handler's `ApiError` is answered as the API's error body."""
        file_id = r"(?P<file_id>[^/]+)"
        batch_id = r"(?P<batch_id>[^/]+)"
        routes: list[tuple[str, str, str, Handler]] = [
            ("openai.files.create", "POST", r"/v1/files", self.files_create),
            ("openai.files.list", "GET", r"/v1/files", self.files_list),
            ("openai.files.content", "GET", rf"/v1/files/{file_id}/content", self.content),
            ("openai.files.retrieve", "GET", rf"/v1/files/{file_id}", self.files_retrieve),
            ("openai.files.delete", "DELETE", rf"/v1/files/{file_id}", self.files_delete),
            ("openai.batches.create", "POST", r"/v1/batches", self.batches_create),
            ("openai.batches.list", "GET", r"/v1/batches", self.batches_list),
            ("openai.batches.retrieve", "GET", rf"/v1/batches/{batch_id}", self.batches_retrieve),
            ("openai.batches.cancel", "POST", rf"/v1/batches/{batch_id}/cancel", self.cancel),
            ("openai.images.generate", "POST", r"/v1/images/generations", self.images_generate),
            ("openai.images.edit", "POST", r"/v1/images/edits", self.images_edit),
        ]
        for name, method, pattern, handler in routes:
            router.add(name, method, pattern, self._answering(handler))

    def _answering(self, handler: Handler) -> Handler:
        def answer(request: SimRequest, match: re.Match[str]) -> SimResponse:
            try:
                return handler(request, match)
            except ApiError as exc:
                return self._respond(exc)

        return answer

    def authenticate(self, request: SimRequest, route: str) -> SimResponse | None:  # noqa: ARG002 - every route needs a key
        """401 without a Bearer key, or with one `Simulator(api_keys=...)` does not accept."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return self._respond(ApiError(401, error_body("401_missing_key")))
        if not self.sim.key_allowed(key):
            masked = f"{key[:3]}***{key[-4:]}" if len(key) > 10 else "***"
            return self._respond(api_error(401, "401_invalid_api_key", masked_key=masked))
        return None

    def error(
        self, status: int, message: str | None = None, *, retry_after_s: float | None = None
    ) -> SimResponse:
        """The OpenAI error body for `status`, optionally with another message."""
        if status == 429:
            wait = retry_after_s if retry_after_s is not None else 1.0
            hint = f"{round(wait * 1000)}ms" if wait < 1 else f"{wait:.3g}s"
            body = error_body("429_rate_limit", retry_after=hint)
        elif status == 401:
            body = error_body("401_missing_key")
        elif status == 500:
            body = error_body("500_server_error")
        elif status == 503:
            body = error_body("503_overloaded")
        elif status == 404:
            body = error_body("404_route", message=message or "Not found")
        else:
            body = error_body("400_invalid_request", message=message or "Bad request")
        if message is not None:
            body["error"]["message"] = message
        return self._respond(ApiError(status, body))

    def request_scenario(
        self, request: SimRequest, route: str, match: re.Match[str]
    ) -> Scenario | None:
        """The scenario of the job a call is about (flaky injection per job)."""
        job: BatchJob | None = None
        if route == "openai.batches.create":
            try:
                metadata = request.json().get("metadata") or {}
            except (ValueError, AttributeError):
                return None
            name = metadata.get("cg_scenario") if isinstance(metadata, dict) else None
            return self.sim.scenario_named(name) if isinstance(name, str) else None
        if "batch_id" in match.groupdict():
            job = self.batches.get(match["batch_id"])
        elif "file_id" in match.groupdict():
            record = self.files.get(match["file_id"])
            job = self.batches.get(record.result_of or "") if record else None
        return job.scenario if job else None

    def has_file(self, file_id: str) -> bool:
        """Whether a file with this id exists now (replay checks a batch's input file)."""
        return file_id in self.files

    def to_state(self) -> dict[str, Any]:
        """Files, batches and counters (no bytes: uploads live in `sim.blobs`)."""
        return {
            "seq": self._seq,
            "files": [record.to_json() for record in self.files.values()],
            "batches": [job.to_json() for job in self.batches.values()],
        }

    def from_state(self, state: dict[str, Any]) -> None:
        """Resume from `to_state()` output."""
        self._seq = int(state["seq"])
        self.files = {data["id"]: FileRecord(**data) for data in state["files"]}
        self.batches = {data["id"]: BatchJob.from_json(data) for data in state["batches"]}
        self._analyses.clear()
        self._unpublished = {job.id for job in self.batches.values() if not job.published}

    # -- plumbing --------------------------------------------------------------------------

    def _request_id(self) -> str:
        number = self.sim.next_index("openai.request_id")
        return "req_" + _digest(self.sim.seed, "req", number)[:32]

    def _json(self, payload: Any, status: int = 200) -> SimResponse:
        return SimResponse.json(payload, status, {"x-request-id": self._request_id()})

    def _respond(self, error: ApiError) -> SimResponse:
        return self._json(error.body, error.status)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _now(self) -> int:
        return int(self.sim.now())

    # -- files -----------------------------------------------------------------------------

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

    def _file(self, file_id: str) -> FileRecord:
        self._publish_due()
        record = self.files.get(file_id)
        if record is None:
            raise api_error(404, "404_file", id=file_id)
        return record

    def files_create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/files (multipart: purpose, file[, expires_after[anchor|seconds]])."""
        fields = parse_multipart(request)
        purpose_parts = fields.get("purpose")
        if not purpose_parts:
            raise api_error(400, "400_missing_required_parameter", param="purpose")
        purpose = _part_text(purpose_parts[0]).strip()
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
        filename = Path(part.get_filename() or "file").name
        data = _part_bytes(part)
        if purpose == "batch" and not filename.lower().endswith(".jsonl"):
            raise api_error(400, "400_invalid_file_format")
        too_big = len(data) > self.limits.max_file_bytes or (
            purpose == "batch" and len(data) > self.limits.max_batch_input_bytes
        )
        if too_big:
            raise api_error(400, "400_file_too_large")
        now = self._now()
        expires_at = now + FILE_TTL_S if purpose == "batch" else None
        seconds = fields.get("expires_after[seconds]")
        if seconds:
            expires_at = now + self._expiry_seconds(_part_text(seconds[0]), "expires_after")
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

    # -- batches ---------------------------------------------------------------------------

    def _job(self, batch_id: str) -> BatchJob:
        self._publish_due()
        job = self.batches.get(batch_id)
        if job is None:
            raise api_error(404, "404_batch", id=batch_id)
        return job

    def batches_create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/batches: validates the call (400s), never the file (that fails later)."""
        body = json_body(request)
        for param in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(param):
                raise api_error(400, "400_missing_required_parameter", param=param)
        endpoint = str(body["endpoint"])
        if endpoint not in BATCH_ENDPOINTS:
            raise api_error(
                400,
                "400_invalid_value",
                value=endpoint,
                supported=_supported(BATCH_ENDPOINTS),
                param="endpoint",
            )
        if endpoint not in SIMULATED_ENDPOINTS:
            message = (
                f"costguard-sim: batch endpoint {endpoint} exists at OpenAI but is not "
                f"simulated; use {' or '.join(SIMULATED_ENDPOINTS)}."
            )
            raise api_error(400, "400_invalid_request", message=message)
        window = str(body["completion_window"])
        if window != "24h":
            raise api_error(
                400,
                "400_invalid_value",
                value=window,
                supported="'24h'",
                param="completion_window",
            )
        metadata = self._metadata(body.get("metadata"))
        output_expires = body.get("output_expires_after")
        output_seconds = None
        if output_expires is not None:
            if not isinstance(output_expires, dict):
                raise api_error(400, "400_missing_required_parameter", param="output_expires_after")
            output_seconds = self._expiry_seconds(
                output_expires.get("seconds"), "output_expires_after"
            )
        source = self._file(str(body["input_file_id"]))
        if source.blob is None or source.purpose != "batch":
            raise api_error(
                400,
                "400_invalid_param",
                message=f"The input file {source.id} must be a file uploaded with purpose 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        name = (metadata or {}).get("cg_scenario")
        scenario = self.sim.scenario_named(name) if name else self.sim.scenario
        job = BatchJob(
            id="batch_" + self.sim.new_id(32, _HEX),
            input_file_id=source.id,
            endpoint=endpoint,
            completion_window=window,
            metadata=metadata,
            created_at=self._now(),
            seq=self._next_seq(),
            scenario=scenario,
            input_blob=source.blob,
            output_file_id="file-" + self.sim.new_id(22),
            error_file_id="file-" + self.sim.new_id(22),
            output_expires_after=output_seconds,
        )
        self._validate(job)
        self.batches[job.id] = job
        self._unpublished.add(job.id)
        self.sim.record_job("openai", job.id, scenario.name, job.total)
        return self._json(self._batch_json(job))

    def _metadata(self, raw: object) -> dict[str, str] | None:
        if raw is None:
            return None
        limits = self.limits
        if not isinstance(raw, dict):
            raise api_error(
                400,
                "400_invalid_param",
                message="Invalid type for 'metadata': expected an object.",
                param="metadata",
                code="invalid_type",
            )
        if len(raw) > limits.max_metadata_pairs:
            raise api_error(
                400,
                "400_invalid_param",
                message="Invalid 'metadata': too many properties. Expected an object with at "
                f"most {limits.max_metadata_pairs} properties, but got an object with "
                f"{len(raw)} properties instead.",
                param="metadata",
                code="object_above_max_properties",
            )
        for key, value in raw.items():
            if len(key) > limits.max_metadata_key:
                raise api_error(
                    400,
                    "400_invalid_param",
                    message="Invalid 'metadata': property name too long. Expected a string "
                    f"with maximum length {limits.max_metadata_key}, but got a string with "
                    f"length {len(key)} instead.",
                    param="metadata",
                    code="string_above_max_length",
                )
            if not isinstance(value, str):
                raise api_error(
                    400,
                    "400_invalid_param",
                    message=f"Invalid type for 'metadata.{key}': expected a string.",
                    param=f"metadata.{key}",
                    code="invalid_type",
                )
            if len(value) > limits.max_metadata_value:
                raise api_error(
                    400,
                    "400_invalid_param",
                    message=f"Invalid 'metadata.{key}': string too long. Expected a string "
                    f"with maximum length {limits.max_metadata_value}, but got a string with "
                    f"length {len(value)} instead.",
                    param=f"metadata.{key}",
                    code="string_above_max_length",
                )
        return {str(k): str(v) for k, v in raw.items()}

    def batches_retrieve(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """GET /v1/batches/{id}."""
        return self._json(self._batch_json(self._job(match["batch_id"])))

    def cancel(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/batches/{id}/cancel: `cancelling` now, `cancelled` after finalizing_s."""
        job = self._job(match["batch_id"])
        status = timeline(job).status(self.sim.now())
        if status in ("validating", "in_progress"):
            job.cancel_requested_at = self._now()
        elif status not in ("cancelling", "cancelled"):
            raise api_error(400, "400_batch_not_cancellable", status=status)
        return self._json(self._batch_json(job))

    def batches_list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """GET /v1/batches?after&limit: newest first, `has_more` always present."""
        self._publish_due()
        limit = self._limit(request, default=20, maximum=100)
        jobs = sorted(self.batches.values(), key=lambda j: (j.created_at, j.seq), reverse=True)
        page, has_more = self._page(jobs, request.arg("after"), limit)
        return self._json(self._list([self._batch_json(job) for job in page], has_more))

    @staticmethod
    def _limit(request: SimRequest, *, default: int, maximum: int) -> int:
        raw = request.arg("limit")
        if raw is None:
            return default
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= maximum:
            raise api_error(
                400,
                "400_invalid_param",
                message=f"Invalid 'limit': expected an integer between 1 and {maximum}, "
                f"got {raw!r}.",
                param="limit",
                code="invalid_value",
            )
        return limit

    @staticmethod
    def _page(items: list[_Item], after: str | None, limit: int) -> tuple[list[_Item], bool]:
        start = 0
        if after:
            ids = [item.id for item in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        page = items[start : start + limit]
        return page, start + limit < len(items)

    @staticmethod
    def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    def _batch_json(self, job: BatchJob) -> dict[str, Any]:
        now = self.sim.now()
        plan = timeline(job)
        status = plan.status(now)

        def seen(moment: int | None) -> int | None:
            return moment if moment is not None and now >= moment else None

        counts = {"total": 0, "completed": 0, "failed": 0}
        usage = None
        output_id = error_id = None
        in_progress = seen(plan.in_progress_at)
        if in_progress is not None:
            analysis = self._analysis(job)
            finished = plan.finished(now)
            failed = analysis.failures(finished)
            counts = {"total": job.total, "completed": finished - failed, "failed": failed}
            terminal = status in ("completed", "expired", "cancelled")
            if terminal:
                counts["failed"] += job.total - finished
                output_id = job.output_file_id if counts["completed"] else None
                error_id = job.error_file_id if counts["failed"] else None
            input_tokens = analysis.cum_input[finished]
            output_tokens = analysis.cum_output[finished]
            usage = {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
        errors = None
        if status == "failed" and job.errors:
            errors = {"object": "list", "data": job.errors}
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": job.endpoint,
            "model": job.model if in_progress is not None else None,
            "errors": errors,
            "input_file_id": job.input_file_id,
            "completion_window": job.completion_window,
            "status": status,
            "output_file_id": output_id,
            "error_file_id": error_id,
            "created_at": job.created_at,
            "in_progress_at": in_progress,
            "expires_at": job.created_at + WINDOW_S,
            "finalizing_at": seen(plan.finalizing_at),
            "completed_at": seen(plan.completed_at),
            "failed_at": seen(plan.failed_at),
            "expired_at": seen(plan.expired_at),
            "cancelling_at": seen(plan.cancelling_at),
            "cancelled_at": seen(plan.cancelled_at),
            "request_counts": counts,
            "usage": usage,
            "metadata": job.metadata,
        }

    def _publish_due(self) -> None:
        """Create the result FileObjects of batches that reached a terminal status."""
        if not self._unpublished:
            return
        now = self.sim.now()
        for batch_id in sorted(self._unpublished):
            job = self.batches[batch_id]
            plan = timeline(job)
            ended = plan.terminal_at
            if now < ended:
                continue
            self._unpublished.discard(batch_id)
            job.published = True
            if plan.in_progress_at is None:
                continue  # failed validation or cancelled before it: no result files
            finished = plan.finished(ended)
            refused_or_rejected = self._analysis(job).failures(finished)
            expires = ended + (job.output_expires_after or FILE_TTL_S)
            for kind, file_id, count in (
                ("output", job.output_file_id, finished - refused_or_rejected),
                ("error", job.error_file_id, refused_or_rejected + job.total - finished),
            ):
                if count <= 0:
                    continue
                self.files[file_id] = FileRecord(
                    id=file_id,
                    filename=f"{job.id}_{kind}.jsonl",
                    purpose="batch_output",
                    created_at=ended,
                    seq=self._next_seq(),
                    expires_at=expires,
                    result_of=job.id,
                    kind="output" if kind == "output" else "error",
                )

    # -- validation and results --------------------------------------------------------------

    def _validate(self, job: BatchJob) -> None:
        """Scan the input once: batch-level errors, or the per-request analysis."""
        errors, analysis, model, total = self._scan(job)
        job.total = total
        job.model = model
        if not errors and job.scenario.terminal == "failed":
            errors = [
                {
                    "code": "invalid_request",
                    "line": None,
                    "message": f"costguard-sim: scenario {job.scenario.name!r} rejects this "
                    "input file at validation.",
                    "param": None,
                }
            ]
        if errors:
            job.errors = errors
            job.total = 0
        else:
            self._analyses[job.id] = analysis

    def _analysis(self, job: BatchJob) -> Analysis:
        found = self._analyses.get(job.id)
        if found is None:
            _, found, _, _ = self._scan(job)
            self._analyses[job.id] = found
        return found

    def _scan(self, job: BatchJob) -> tuple[list[dict[str, Any]], Analysis, str | None, int]:
        """Validate every line; when all are valid, account for each request."""
        data = self.sim.blobs.get(job.input_blob)
        scan = InputScan(job.endpoint, self.limits)
        analysis = Analysis()
        for line_no, offset, raw in _lines(data):
            scan.total += 1
            if scan.total > self.limits.max_requests:
                message = (
                    f"The batch input file has more than {self.limits.max_requests} requests, "
                    "the most one batch may hold."
                )
                scan.errors = [
                    {"code": "too_many_tasks", "line": None, "message": message, "param": None}
                ]
                return scan.errors, Analysis(), None, scan.total
            body = scan.check(line_no, raw)
            if body is not None and not scan.error_count:
                self._account(job, analysis, scan.total - 1, offset, body)
        if scan.total == 0:
            scan.fail("empty_file", None, "The batch input file is empty.")
        return scan.errors, analysis, scan.model, scan.total

    def _account(
        self, job: BatchJob, analysis: Analysis, position: int, offset: int, body: dict[str, Any]
    ) -> None:
        analysis.offsets.append(offset)
        outcome, input_tokens, output_tokens = _OK, 0, 0
        try:
            call = self._batch_call(job, body)
        except ApiError:
            outcome = _REJECTED
        else:
            if job.scenario.refuses(position, call.prompt):
                outcome = _REFUSED
            else:
                input_tokens = call.input_text_tokens + call.input_image_tokens(self.usage)
                output_tokens = call.output_tokens(self.usage)
        analysis.outcome.append(outcome)
        analysis.cum_input.append(analysis.cum_input[-1] + input_tokens)
        analysis.cum_output.append(analysis.cum_output[-1] + output_tokens)

    def _batch_call(self, job: BatchJob, body: dict[str, Any]) -> ImageCall:
        edit = job.endpoint == "/v1/images/edits"
        images = _json_images_count(body) if edit else 0
        return parse_image_call(body, self.usage, edit=edit, input_images=images)

    def _chunks(self, record: FileRecord) -> Iterator[bytes]:
        """A file's content in chunks: stored bytes, or result lines generated on the fly."""
        if record.blob is not None:
            data = self.sim.blobs.get(record.blob)
            for start in range(0, len(data), 1 << 20):
                yield data[start : start + (1 << 20)]
            return
        job = self.batches[record.result_of or ""]
        buffer: list[bytes] = []
        size = 0
        for line in self._result_lines(job, record.kind or "output"):
            buffer.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)

    def _result_lines(self, job: BatchJob, kind: str) -> Iterator[bytes]:
        plan = timeline(job)
        analysis = self._analysis(job)
        finished = plan.finished(plan.terminal_at)
        unfinished_code = "batch_expired" if plan.expired_at is not None else "batch_cancelled"
        data = self.sim.blobs.get(job.input_blob)
        for position in job.scenario.order(job.total):
            done = position < finished
            ok = done and analysis.outcome[position] == _OK
            if (kind == "output") != ok:
                continue
            offset = analysis.offsets[position]
            end = data.find(b"\n", offset)
            line = json.loads(data[offset : end if end >= 0 else len(data)])
            custom_id = line["custom_id"]
            line_id = "batch_req_" + _digest(job.id, position)[:32]
            if not done:
                yield (
                    _dump(
                        {
                            "id": line_id,
                            "custom_id": custom_id,
                            "response": None,
                            "error": {
                                "code": unfinished_code,
                                "message": _UNFINISHED[unfinished_code],
                            },
                        }
                    )
                    + b"\n"
                )
                continue
            request_id = "req_" + _digest(job.id, position, "req")[:32]
            status, body = self._batch_response(job, plan, position, line["body"], request_id)
            response = {"status_code": status, "request_id": request_id, "body": body}
            yield _dump(
                {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
            )
            yield b"\n"

    def _batch_response(
        self, job: BatchJob, plan: Timeline, position: int, body: dict[str, Any], request_id: str
    ) -> tuple[int, dict[str, Any]]:
        try:
            call = self._batch_call(job, body)
        except ApiError as exc:
            return exc.status, exc.body
        if job.scenario.refuses(position, call.prompt):
            return 400, error_body(
                "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
            )
        seed = f"openai/{job.id}/{position}"
        return 200, self._images_body(call, seed, plan.finished_at(position))

    def _images_body(self, call: ImageCall, seed: str, created: int) -> dict[str, Any]:
        mime = OUTPUT_FORMATS[call.output_format]
        return {
            "created": created,
            "background": call.background,
            "data": [{"b64_json": self.sim.images.b64(f"{seed}/{i}", mime)} for i in range(call.n)],
            "output_format": call.output_format,
            "quality": call.quality,
            "size": call.size,
            "usage": call.usage(self.usage),
        }

    # -- synchronous images ------------------------------------------------------------------

    def images_generate(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/images/generations (JSON)."""
        body = json_body(request)
        call = parse_image_call(body, self.usage, edit=False)
        return self._sync_images(call)

    def images_edit(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/images/edits (multipart as the SDKs send it; JSON image references too)."""
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json_body(request)
            images = _json_images_count(body)
        else:
            fields = parse_multipart(request)
            body = {}
            for name, parts in fields.items():
                if name not in ("image", "image[]", "mask", "markup"):
                    value: Any = _part_text(parts[0])
                    body[name] = int(value) if name == "n" and value.isdigit() else value
            images = len(fields.get("image", [])) + len(fields.get("image[]", []))
        call = parse_image_call(body, self.usage, edit=True, input_images=images)
        return self._sync_images(call)

    def _sync_images(self, call: ImageCall) -> SimResponse:
        position = self.sim.next_index("openai.images")
        request_id = self._request_id()
        if self.sim.scenario.refuses(position, call.prompt):
            body = error_body(
                "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
            )
            return SimResponse.json(body, 400, {"x-request-id": request_id})
        payload = self._images_body(call, f"openai/sync/{position}", self._now())
        return SimResponse.json(payload, 200, {"x-request-id": request_id})


_UNFINISHED = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
"""Messages of the non-HTTP error lines [inferred: the real wording is not documented]."""
UNFINISHED_MESSAGES = _UNFINISHED
"""Public name of the unfinished-request messages (`batch_expired`, `batch_cancelled`)."""
