"""The Gemini face of the simulator: generateContent, Batch API and Files API.

Wire shapes follow `shared/reference/gemini-batch-protocol.md` (captured from google-genai 3.4
and @google/genai 2.32), so the unmodified SDKs talk to it. Every route is served under
`/v1`, `/v1beta` and `/v1alpha`, optionally below a path prefix kept from the client's base
URL (`http://host/proxy/v1/...`).

A job's state is computed from the simulated clock and the job's scenario each time it is
read; nothing runs in the background. Results (inline responses and result files) are built
from the stored requests when they are read, and result files are streamed line by line, so
a large batch is never held in memory as results.

Per-request outcome rule (position `i` is the 0-based index of the request in its batch; a
synchronous call's position is its per-simulator call index, under the default scenario):

* refused when the simulator's shared rule `Scenario.refuses(i, prompt)` says so: the
  scenario's `refusals.every` > 0 and `i % every == offset % every`, or the prompt contains
  `REFUSE_MARKER` (under every scenario). The Gemini refusal kind is
  `REFUSAL_KINDS[(i // every) % 4]` for the scenario's positions (successive refusals cycle
  through the four kinds) and `REFUSAL_KINDS[i % 4]` for marker-only refusals;
* a request the API would reject (unsupported `imageSize`/`aspectRatio`, no `contents`,
  unknown per-request `model`) becomes a per-request error (`{"code": 3, "message": ...}`);
* everything else yields one image.

`docs/simulator-gemini.md` describes the timeline, scenarios and result-file format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import string
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costguard.resources import data_dir
from costguard.simulator.core import BlobStore, Router, SimClock, SimRequest, SimResponse
from costguard.simulator.images import ImageSource
from costguard.simulator.scenario import Scenario

JSON = dict[str, Any]

META_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"

MAX_INLINE_BYTES = 20 * 1024 * 1024
"""Request body limit for `generateContent` and inline `batchGenerateContent` (docs: 20 MB)."""
FILE_TTL_S = 48 * 3600.0
"""Files expire 48 h after upload (reported in `expirationTime`, not enforced)."""
UPLOAD_GRANULARITY = 8 * 1024 * 1024
BATCH_PAGE_DEFAULT, BATCH_PAGE_MAX = 50, 1000
FILE_PAGE_DEFAULT, FILE_PAGE_MAX = 10, 100
RESULT_CHUNK_BYTES = 256 * 1024

PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})

RefusalKind = Literal["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "NO_IMAGE", "PROMPT_BLOCKED"]
REFUSAL_KINDS: tuple[RefusalKind, ...] = (
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "NO_IMAGE",
    "PROMPT_BLOCKED",
)
"""The refusal kinds in cycle order. `PROMPT_BLOCKED` is `promptFeedback.blockReason:
PROHIBITED_CONTENT` with no candidates; the others are candidates with that `finishReason`."""

_FINISH_MESSAGES = {
    "IMAGE_SAFETY": (
        "Unable to show the generated image. The image was filtered out because it violated "
        "Google's Generative AI Prohibited Use policy. You will not be charged for blocked "
        "images. Try rephrasing the prompt."
    ),
    "IMAGE_PROHIBITED_CONTENT": (
        "Unable to show the generated image. The image was filtered out because it contained "
        "prohibited content. You will not be charged for blocked images."
    ),
}
FINISH_MESSAGES = _FINISH_MESSAGES
"""The `finishMessage` of each finish-reason refusal (public for replayed refusals)."""
_NO_IMAGE_TEXT = "I can't create that image. Try describing a different scene."
_IMAGE_TEXT = "Here is the image you asked for."
_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ID_ALPHABET = string.ascii_lowercase + string.digits
_FILE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_PREFIX = r"(?P<prefix>(?:/[^/]+)*?)"
_VER = r"/(?P<ver>v1|v1beta|v1alpha)"
_ID = r"(?P<id>[^/:]+)"


# --------------------------------------------------------------------------------------------
# The host the face runs in (the infrastructure's `Simulator`)
# --------------------------------------------------------------------------------------------


class GeminiHost(Protocol):
    """What the face needs from the `Simulator` that owns it."""

    @property
    def clock(self) -> SimClock:
        """Simulated time."""
        ...

    @property
    def images(self) -> ImageSource:
        """Small real images by seed."""
        ...

    @property
    def blobs(self) -> BlobStore:
        """Uploaded bytes, saved beside the simulator's state."""
        ...

    def scenario_for(self, text_or_name: str | None) -> Scenario:
        """The scenario a display name asks for (`cg_scenario=NAME`), else the default."""
        ...

    def key_allowed(self, key: str | None) -> bool:
        """Whether an API key may call."""
        ...

    def new_id(self, length: int = 24, alphabet: str = ...) -> str:
        """A fresh deterministic id."""
        ...

    def next_index(self, counter: str) -> int:
        """The next value of a per-simulator counter."""
        ...

    def record_job(self, provider: str, job_id: str, scenario: str, requests: int) -> None:
        """Note a created batch job."""
        ...

    def record_upload(
        self, provider: str, file_id: str, filename: str, nbytes: int, purpose: str
    ) -> None:
        """Note an uploaded file."""
        ...


# --------------------------------------------------------------------------------------------
# Usage table (fixtures/gemini/usage.yaml)
# --------------------------------------------------------------------------------------------


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelUsage(_Data):
    """Token figures of one image model."""

    aliases: list[str] = []
    """Other ids served with the same figures (previews)."""
    output_image_tokens: int | None = Field(None, gt=0)
    """Tokens per output image for a model without `imageSize` (every aspect ratio)."""
    output_image_tokens_by_size: dict[str, int] | None = None
    """Tokens per output image by `imageSize`, for models that take one."""
    input_image_tokens: int = Field(gt=0)
    """Prompt tokens per input image part."""
    thinking_tokens: int = Field(ge=0)
    """`thoughtsTokenCount` per request; 0 for models that do not think."""
    aspect_ratios: list[str] = Field(min_length=1)
    """Accepted `imageConfig.aspectRatio` values."""

    @model_validator(mode="after")
    def _one_table(self) -> ModelUsage:
        if (self.output_image_tokens is None) == (self.output_image_tokens_by_size is None):
            msg = "give exactly one of output_image_tokens and output_image_tokens_by_size"
            raise ValueError(msg)
        return self

    @property
    def sizes(self) -> list[str]:
        """Accepted `imageSize` values; empty when the model takes none."""
        return list(self.output_image_tokens_by_size or {})

    def image_tokens(self, size: str | None, default_size: str) -> int:
        """Output tokens of one image of `size` (the default size when None)."""
        if self.output_image_tokens is not None:
            return self.output_image_tokens
        table = self.output_image_tokens_by_size or {}
        return table[size or default_size]


class UsageTable(_Data):
    """The whole `usage.yaml`."""

    default_image_size: str
    aspect_ratios: dict[str, list[str]] = {}
    """Named lists referenced by YAML anchors."""
    models: dict[str, ModelUsage] = Field(min_length=1)

    @model_validator(mode="after")
    def _defaults_exist(self) -> UsageTable:
        for name, usage in self.models.items():
            if usage.sizes and self.default_image_size not in usage.sizes:
                msg = f"models.{name}: default_image_size {self.default_image_size!r} not in sizes"
                raise ValueError(msg)
        return self

    def lookup(self, model: str) -> ModelUsage | None:
        """The figures for a model id or alias (`models/` prefix allowed)."""
        name = model.removeprefix("models/")
        if name in self.models:
            return self.models[name]
        for usage in self.models.values():
            if name in usage.aliases:
                return usage
        return None


@cache
def load_usage_table() -> UsageTable:
    """`fixtures/gemini/usage.yaml`, validated."""
    path = data_dir("fixtures") / "gemini" / "usage.yaml"
    try:
        return UsageTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        msg = f"{path}: invalid Gemini usage table: {exc}"
        raise ValueError(msg) from exc


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@cache
def _error_fixture(name: str) -> str | None:
    """The text of `fixtures/gemini/errors/<name>.json`, or None when there is none."""
    path = data_dir("fixtures") / "gemini" / "errors" / f"{name}.json"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def error_body(
    status: int,
    message: str | None = None,
    *,
    reason: str | None = None,
    retry_delay_s: float | None = None,
) -> JSON:
    """A Google error body `{"error": {code, message, status, details?}}` for HTTP `status`.

    The body comes from `fixtures/gemini/errors/<status>[_<reason>].json` when there is one
    (so it carries the real details), with `message` substituted when given.
    """
    fixture = _error_fixture(f"{status}_{reason.lower()}" if reason else str(status))
    if fixture is None:  # no recorded body for this status: the bare Google shape
        grpc = _GRPC_STATUS.get(status, "UNKNOWN")
        return {"error": {"code": status, "message": message or grpc, "status": grpc}}
    body: JSON = json.loads(fixture)
    error: JSON = body["error"]
    if message:
        error["message"] = message
        for detail in error.get("details", []):
            if detail.get("@type", "").endswith("LocalizedMessage"):
                detail["message"] = message
    if retry_delay_s is not None:
        for detail in error.get("details", []):
            if detail.get("@type", "").endswith("RetryInfo"):
                detail["retryDelay"] = _duration(retry_delay_s)
    return body


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON (`"41s"`, `"1.500s"`)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


class ApiError(Exception):
    """Raised inside a handler; answered as a Google error body."""

    def __init__(self, status: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


@cache
def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def _get(obj: object, camel: str) -> Any:
    """`obj[camel]` or `obj[snake_case(camel)]` (proto JSON accepts both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel))


def _derived_id(seed: str) -> str:
    """A 22-character response id, stable for `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def timestamp(t: float) -> str:
    """RFC 3339 UTC with 9 fractional digits, as Google's JSON timestamps."""
    nanos = round(t * 1e9)
    seconds, frac = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _dump_line(obj: JSON) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _parts(request: JSON) -> Iterator[JSON]:
    """Every part of the request's contents and system instruction."""
    contents = _get(request, "contents")
    if isinstance(contents, dict):
        contents = [contents]
    system = _get(request, "systemInstruction")
    for content in [*(contents if isinstance(contents, list) else []), system]:
        parts = _get(content, "parts")
        if isinstance(parts, list):
            yield from (p for p in parts if isinstance(p, dict))


def prompt_text(request: JSON) -> str:
    """The text of the user's contents (what the refusal marker is looked for in)."""
    return " ".join(str(p["text"]) for p in _parts(request) if isinstance(p.get("text"), str))


def _input_images(request: JSON) -> int:
    count = 0
    for part in _parts(request):
        blob = _get(part, "inlineData") or _get(part, "fileData")
        mime = _get(blob, "mimeType")
        if isinstance(mime, str) and mime.startswith("image/"):
            count += 1
    return count


def text_tokens(text: str) -> int:
    """The simulator's text token count: ceil(utf-8 bytes / 4)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


# --------------------------------------------------------------------------------------------
# Requests -> responses
# --------------------------------------------------------------------------------------------


def validate_request(  # noqa: PLR0911 - one check per return, in the API's order
    model: str, request: object, table: UsageTable
) -> str | None:
    """Why the API would reject this GenerateContentRequest for `model` (None when valid)."""
    if not isinstance(request, dict):
        return "Invalid JSON payload received. Expected an object for GenerateContentRequest."
    usage = table.lookup(model)
    if usage is None:
        return f"models/{model} is not found."
    contents = _get(request, "contents")
    if not contents or not isinstance(contents, list | dict):
        return "* GenerateContentRequest.contents: contents is not specified"
    config = _get(request, "generationConfig") or {}
    modalities = _get(config, "responseModalities")
    if isinstance(modalities, list) and "IMAGE" not in [str(m).upper() for m in modalities]:
        text = ", ".join(str(m).lower() for m in modalities) or "none"
        return f"Model does not support the requested response modalities: {text}"
    image_config = _get(config, "imageConfig") or {}
    size = _get(image_config, "imageSize")
    if size is not None:
        if not usage.sizes:
            return f"imageSize is not supported by models/{model}."
        if size not in usage.sizes:
            allowed = ", ".join(repr(s) for s in usage.sizes)
            return f"Unsupported imageSize {size!r} for models/{model}; use one of {allowed}."
    ratio = _get(image_config, "aspectRatio")
    if ratio is not None and ratio not in usage.aspect_ratios:
        allowed = ", ".join(usage.aspect_ratios)
        return f"Unsupported aspectRatio {ratio!r} for models/{model}; use one of {allowed}."
    return None


def refusal_for(scenario: Scenario, position: int, prompt: str) -> RefusalKind | None:
    """The refusal kind of the request at `position` with `prompt`, or None (see module doc).

    Whether a request is refused is the simulator's shared rule (`Scenario.refuses`); which
    Gemini refusal it gets is decided here.
    """
    if not scenario.refuses(position, prompt):
        return None
    every = scenario.refusals.every
    if every > 0 and position % every == scenario.refusals.offset % every:
        return REFUSAL_KINDS[(position // every) % len(REFUSAL_KINDS)]
    return REFUSAL_KINDS[position % len(REFUSAL_KINDS)]


ImageFn = Callable[[str, str], bytes]


def _image_candidate(
    model: str, modalities: list[Any], seed: str, image_for: ImageFn
) -> tuple[JSON, int]:
    """A STOP candidate carrying one image (and a short text when TEXT was asked for)."""
    parts: list[JSON] = []
    out_text = 0
    if "TEXT" in [str(m).upper() for m in modalities]:
        parts.append({"text": _IMAGE_TEXT})
        out_text = text_tokens(_IMAGE_TEXT)
    data = base64.b64encode(image_for(seed, "image/png")).decode("ascii")
    image_part: JSON = {"inlineData": {"mimeType": "image/png", "data": data}}
    if model.removeprefix("models/").startswith("gemini-3"):
        signature = hashlib.sha256(f"sig:{seed}".encode()).digest()
        image_part["thoughtSignature"] = base64.b64encode(signature).decode("ascii")
    parts.append(image_part)
    content = {"parts": parts, "role": "model"}
    return {"content": content, "finishReason": "STOP", "index": 0}, out_text


_USAGE_ORDER = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "promptTokensDetails",
    "candidatesTokensDetails",
    "thoughtsTokenCount",
)


def generate_response(
    model: str,
    request: JSON,
    *,
    refusal: RefusalKind | None,
    seed: str,
    image_for: ImageFn,
    table: UsageTable,
) -> JSON:
    """The GenerateContentResponse for a valid request (see `validate_request`)."""
    usage = table.lookup(model)
    assert usage is not None  # validated by the caller
    config = _get(request, "generationConfig") or {}
    prompt_tokens = text_tokens(prompt_text(request))
    image_tokens_in = _input_images(request) * usage.input_image_tokens
    prompt_details = []
    if prompt_tokens:
        prompt_details.append({"modality": "TEXT", "tokenCount": prompt_tokens})
    if image_tokens_in:
        prompt_details.append({"modality": "IMAGE", "tokenCount": image_tokens_in})
    metered: JSON = {"promptTokenCount": prompt_tokens + image_tokens_in}
    thoughts = usage.thinking_tokens
    response: JSON = {}
    if refusal == "PROMPT_BLOCKED":
        thoughts = 0  # blocked before the model ran
        response["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
    elif refusal in ("IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"):
        message = _FINISH_MESSAGES[refusal]
        response["candidates"] = [{"finishReason": refusal, "finishMessage": message, "index": 0}]
    elif refusal == "NO_IMAGE":
        out = text_tokens(_NO_IMAGE_TEXT)
        content = {"parts": [{"text": _NO_IMAGE_TEXT}], "role": "model"}
        response["candidates"] = [{"content": content, "finishReason": "NO_IMAGE", "index": 0}]
        metered["candidatesTokenCount"] = out
        metered["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": out}]
    else:
        size = _get(_get(config, "imageConfig") or {}, "imageSize")
        out_image = usage.image_tokens(size, table.default_image_size)
        modalities = _get(config, "responseModalities") or ["TEXT", "IMAGE"]
        candidate, out_text = _image_candidate(model, modalities, seed, image_for)
        response["candidates"] = [candidate]
        metered["candidatesTokenCount"] = out_text + out_image
        metered["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": out_image}]
    candidates = metered.get("candidatesTokenCount", 0)
    metered["totalTokenCount"] = metered["promptTokenCount"] + candidates + thoughts
    if prompt_details:
        metered["promptTokensDetails"] = prompt_details
    if thoughts:
        metered["thoughtsTokenCount"] = thoughts
    response["usageMetadata"] = {k: metered[k] for k in _USAGE_ORDER if k in metered}
    response["modelVersion"] = model.removeprefix("models/")
    response["responseId"] = _derived_id(seed)
    return response


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


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


@dataclass(slots=True)
class _Batch:
    id: str
    model: str
    """The id as the client named it, without `models/`."""
    display_name: str | None
    create_t: float
    scenario: Scenario
    count: int
    inline: list[JSON] | None
    """Inline items (`{"request": ..., "metadata": ...}`), or None for a file job."""
    input_file: str | None
    invalid_input: str | None
    """Why the input fails validation (the job then ends FAILED), or None."""
    error_positions: list[int]
    """Positions of requests answered with a per-request error (sorted)."""
    cancel_t: float | None = None
    deleted: bool = False
    output_deleted: bool = False
    output_digest: tuple[int, str] | None = None
    """(size, sha256 hex) of the result file once computed."""

    def to_state(self) -> JSON:
        return {
            "id": self.id,
            "model": self.model,
            "display_name": self.display_name,
            "create_t": self.create_t,
            "scenario": self.scenario.model_dump(mode="json"),
            "count": self.count,
            "inline": self.inline,
            "input_file": self.input_file,
            "invalid_input": self.invalid_input,
            "error_positions": self.error_positions,
            "cancel_t": self.cancel_t,
            "deleted": self.deleted,
            "output_deleted": self.output_deleted,
            "output_digest": list(self.output_digest) if self.output_digest else None,
        }

    @classmethod
    def from_state(cls, state: JSON) -> _Batch:
        digest = state.get("output_digest")
        return cls(
            id=state["id"],
            model=state["model"],
            display_name=state["display_name"],
            create_t=state["create_t"],
            scenario=Scenario.model_validate(state["scenario"]),
            count=state["count"],
            inline=state["inline"],
            input_file=state["input_file"],
            invalid_input=state["invalid_input"],
            error_positions=list(state["error_positions"]),
            cancel_t=state["cancel_t"],
            deleted=state["deleted"],
            output_deleted=state["output_deleted"],
            output_digest=(int(digest[0]), str(digest[1])) if digest else None,
        )


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A job's state at one simulated instant."""

    state: str
    update_t: float
    end_t: float | None
    kept: int
    """How many requests (positions 0..kept-1) have results the client can read."""

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self.state in TERMINAL_STATES


def batch_status(batch: _Batch, now: float) -> BatchStatus:  # noqa: PLR0911 - the timeline
    """Where `batch` is at simulated time `now` (see `docs/simulator-gemini.md`)."""
    scenario = batch.scenario
    run_t = batch.create_t + scenario.pending_s
    end_t = run_t if batch.invalid_input is not None else run_t + scenario.running_s
    cancel_t = batch.cancel_t
    if cancel_t is not None and cancel_t < end_t:
        done = 0.0 if cancel_t < run_t else (cancel_t - run_t) / scenario.running_s
        return BatchStatus(CANCELLED, cancel_t, cancel_t, min(batch.count, int(batch.count * done)))
    if now < run_t:
        return BatchStatus(PENDING, batch.create_t, None, 0)
    if now < end_t:
        return BatchStatus(RUNNING, run_t, None, 0)
    if batch.invalid_input is not None:
        return BatchStatus(FAILED, end_t, end_t, 0)
    terminal = scenario.terminal
    if terminal == "succeeded":
        return BatchStatus(SUCCEEDED, end_t, end_t, batch.count)
    if terminal == "cancelled":
        kept = min(batch.count, int(batch.count * scenario.completed_fraction))
        return BatchStatus(CANCELLED, end_t, end_t, kept)
    state = EXPIRED if terminal == "expired" else FAILED
    return BatchStatus(state, end_t, end_t, 0)


def _result_order(batch: _Batch, kept: int) -> Iterator[int]:
    """Positions 0..kept-1 in the order results are written (the shared shuffle rule)."""
    return batch.scenario.order(kept)


# --------------------------------------------------------------------------------------------
# The face
# --------------------------------------------------------------------------------------------


class GeminiFace:
    """Gemini Developer API routes on a simulator's router, with their state.

    The `Simulator` builds it as `GeminiFace(sim)`, calls `register(sim.router)`, runs
    `authenticate` and flaky-call injection (`request_scenario`, `error`) before each handler,
    and saves/restores it with `to_state` / `from_state`.
    """

    name = "gemini"

    def __init__(self, sim: GeminiHost) -> None:
        self._sim = sim
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._uploads: dict[str, _Upload] = {}
        self._batches: dict[str, _Batch] = {}
        self.table = load_usage_table()

    # ---- set-up, save, load -----------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Add every Gemini route to `router` (names `gemini.<resource>.<verb>`)."""
        files = _VER + r"/files"
        model = _VER + r"/models/(?P<model>[^/:]+)"
        batch = _VER + r"/batches/" + _ID
        add = self._add
        add(router, "files.upload", "POST", r"/upload" + files, self._upload)
        add(router, "files.download", "GET", "/download" + files + "/" + _ID + ":download",
            self._file_download)  # fmt: skip
        add(router, "models.generateContent", "POST", model + ":generateContent",
            self._generate_content)  # fmt: skip
        add(router, "batches.create", "POST", model + ":batchGenerateContent", self._batch_create)
        add(router, "batches.list", "GET", _VER + r"/batches", self._batch_list)
        add(router, "batches.get", "GET", batch, self._batch_get)
        add(router, "batches.cancel", "POST", batch + ":cancel", self._batch_cancel)
        add(router, "batches.delete", "DELETE", batch, self._batch_delete)
        add(router, "files.list", "GET", files, self._file_list)
        add(router, "files.download", "GET", files + "/" + _ID + ":download", self._file_download)
        add(router, "files.get", "GET", files + "/" + _ID, self._file_get)
        add(router, "files.delete", "DELETE", files + "/" + _ID, self._file_delete)

    def _add(
        self,
        router: Router,
        name: str,
        method: str,
        pattern: str,
        handler: Callable[[SimRequest, re.Match[str]], SimResponse],
    ) -> None:
        upload = name == "files.upload"

        def answer(request: SimRequest, match: re.Match[str]) -> SimResponse:
            try:
                with self._lock:
                    return handler(request, match)
            except ApiError as exc:
                response = self.error(exc.status, exc.message, reason=exc.reason)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                response = self.error(400, f"Invalid JSON payload received. {exc}")
            if upload:  # without it the Python SDK retries the chunk 3 times, sleeping
                response.headers["X-Goog-Upload-Status"] = "final"
            return response

        router.add(f"gemini.{name}", method, _PREFIX + pattern, answer)

    def to_state(self) -> JSON:
        """Files, uploads and jobs as plain JSON (uploaded bytes stay in `sim.blobs`)."""
        with self._lock:
            return {
                "format": 1,
                "files": [f.to_state() for f in self._files.values()],
                "uploads": [u.to_state() for u in self._uploads.values()],
                "batches": [b.to_state() for b in self._batches.values()],
            }

    def from_state(self, state: JSON) -> None:
        """Continue from `to_state()` output (the simulator has restored its blobs)."""
        if state.get("format") != 1:
            msg = f"unsupported Gemini simulator state format {state.get('format')!r}"
            raise ValueError(msg)
        with self._lock:
            self._files = {f["id"]: _File.from_state(f) for f in state["files"]}
            self._uploads = {u["id"]: _Upload.from_state(u) for u in state["uploads"]}
            self._batches = {b["id"]: _Batch.from_state(b) for b in state["batches"]}

    def has_file(self, file_id: str) -> bool:
        """Whether an uploaded file with this id exists (replay checks a batch's input file)."""
        with self._lock:
            stored = self._files.get(file_id.removeprefix("files/"))
            return stored is not None and not stored.deleted

    # ---- errors, auth, scenarios of calls ---------------------------------------------------

    def error(
        self,
        status: int,
        message: str | None = None,
        *,
        retry_after_s: float | None = None,
        reason: str | None = None,
    ) -> SimResponse:
        """A Gemini-shaped error response (bodies from `fixtures/gemini/errors/`).

        `retry_after_s` becomes the `RetryInfo.retryDelay` of a 429; `reason` picks a variant
        body (`API_KEY_INVALID`).
        """
        body = error_body(status, message, reason=reason, retry_delay_s=retry_after_s)
        return SimResponse.json(body, status=status)

    def authenticate(self, request: SimRequest, route: str) -> SimResponse | None:
        """None when the request may proceed, else the real API's auth error.

        The key is read from `x-goog-api-key` or `?key=`. No key: 403 PERMISSION_DENIED. A key
        the simulator does not allow (`sim.key_allowed`): 400 INVALID_ARGUMENT with reason
        API_KEY_INVALID. Upload chunks (`?upload_id=`) need no key: the Python SDK sends none,
        the upload URL itself is the credential.
        """
        if route == "gemini.files.upload" and request.arg("upload_id") is not None:
            return None
        key = request.headers.get("x-goog-api-key") or request.arg("key")
        if not key:
            return self.error(403)
        if not self._sim.key_allowed(key):
            return self.error(400, reason="API_KEY_INVALID")
        return None

    def request_scenario(
        self, request: SimRequest, route: str, match: re.Match[str]
    ) -> Scenario | None:
        """The scenario of the job a call is about (for flaky-call injection), else None."""
        if route == "gemini.batches.create":
            try:
                display = _get(_get(request.json(), "batch"), "displayName")
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            return self._sim.scenario_for(display if isinstance(display, str) else None)
        ids = match.groupdict()
        with self._lock:
            if route.startswith("gemini.batches.") and ids.get("id"):
                found = self._batches.get(ids["id"])
                return found.scenario if found is not None else None
            if route.startswith("gemini.files.") and ids.get("id"):
                found = self._batches.get(ids["id"].removeprefix("batch-"))
                if found is not None and ids["id"].startswith("batch-"):
                    return found.scenario
        return None

    # ---- shared pieces -------------------------------------------------------------------

    def _now(self) -> float:
        return self._sim.clock.now()

    def _image(self, seed: str, mime: str) -> bytes:
        return self._sim.images.image_for(seed, mime)

    def _new_id(self, length: int) -> str:
        return self._sim.new_id(length, _ID_ALPHABET)

    def _content(self, stored: _File) -> bytes:
        return self._sim.blobs.get(stored.blob)

    def _model_or_404(self, match: re.Match[str], method: str) -> str:
        model = match["model"]
        if self.table.lookup(model) is None:
            message = (
                f"models/{model} is not found for API version {match['ver']}, or is not "
                f"supported for {method}. Call ListModels to see the list of available "
                "models and their supported methods."
            )
            raise ApiError(404, message)
        return model

    @staticmethod
    def _origin(request: SimRequest, match: re.Match[str]) -> str:
        return request.base_url + match["prefix"]

    @staticmethod
    def _page(request: SimRequest, default: int, maximum: int) -> tuple[int, str | None]:
        raw = request.arg("pageSize") or request.arg("page_size")
        size = default
        if raw:
            try:
                size = int(raw)
            except ValueError:
                raise ApiError(400, f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}") from None
            if size < 0:
                raise ApiError(400, "page_size must not be negative.")
            size = min(size or default, maximum)
        token = request.arg("pageToken") or request.arg("page_token") or None
        return size, token

    @staticmethod
    def _paginate(keys: list[tuple[float, str]], size: int, token: str | None) -> tuple[int, int]:
        """(start, end) of the page after `token` in `keys` (sorted newest first)."""
        start = 0
        if token:
            try:
                create_t, name = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
                after = (float(create_t), name)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise ApiError(400, "Invalid page token.") from None
            start = next(
                (i for i, k in enumerate(keys) if (-k[0], k[1]) > (-after[0], after[1])),
                len(keys),
            )
        return start, min(start + size, len(keys))

    @staticmethod
    def _token(key: tuple[float, str]) -> str:
        return base64.urlsafe_b64encode(f"{key[0]!r}|{key[1]}".encode()).decode()

    # ---- generateContent ----------------------------------------------------------------

    def _generate_content(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        if len(request.body) > MAX_INLINE_BYTES:
            raise ApiError(
                400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            )
        model = self._model_or_404(match, "generateContent")
        body = request.json()
        problem = validate_request(model, body, self.table)
        if problem:
            raise ApiError(400, problem)
        position = self._sim.next_index("gemini.generateContent")
        scenario = self._sim.scenario_for(None)
        refusal = refusal_for(scenario, position, prompt_text(body))
        seed = f"sync:{model}:{position}:{prompt_text(body)}"
        response = generate_response(
            model, body, refusal=refusal, seed=seed, image_for=self._image, table=self.table
        )
        return SimResponse.json(response)

    # ---- batches --------------------------------------------------------------------------

    def _batch_create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        if len(request.body) > MAX_INLINE_BYTES:
            raise ApiError(
                400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            )
        model = self._model_or_404(match, "batchGenerateContent")
        body = request.json()
        batch = _get(body, "batch")
        if not isinstance(batch, dict):
            raise ApiError(400, "* BatchGenerateContentRequest.batch: batch is not specified")
        input_config = _get(batch, "inputConfig")
        if not isinstance(input_config, dict):
            raise ApiError(400, "* GenerateContentBatch.input_config: input_config is required")
        requests = _get(input_config, "requests")
        file_name = _get(input_config, "fileName")
        if (requests is None) == (file_name is None):
            raise ApiError(400, "input_config must set exactly one of requests and file_name.")
        display_name = _get(batch, "displayName") or None
        if display_name is not None and not isinstance(display_name, str):
            raise ApiError(400, "display_name must be a string.")
        if requests is not None:
            items = _get(requests, "requests")
            inline, errors = self._check_inline(model, items)
            count, input_file, invalid = len(inline), None, None
        else:
            inline = None
            input_file, count, invalid, errors = self._check_input_file(model, file_name)
        scenario = self._sim.scenario_for(display_name)
        record = _Batch(
            id=self._new_id(36),
            model=model,
            display_name=display_name,
            create_t=self._now(),
            scenario=scenario,
            count=count,
            inline=inline,
            input_file=input_file,
            invalid_input=invalid,
            error_positions=errors,
        )
        self._batches[record.id] = record
        self._sim.record_job(self.name, record.id, scenario.name, count)
        return SimResponse.json(self._operation(record))

    def _check_inline(self, model: str, items: object) -> tuple[list[JSON], list[int]]:
        if not isinstance(items, list) or not items:
            raise ApiError(400, "* InlinedRequests.requests: requests must not be empty")
        errors = []
        for position, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(_get(item, "request"), dict):
                message = f"inlined request #{position}: expected an object with a 'request' object"
                raise ApiError(400, message)
            if self._request_problem(model, item["request"]):
                errors.append(position)
        return items, errors

    def _check_input_file(
        self, model: str, file_name: object
    ) -> tuple[str, int, str | None, list[int]]:
        if not isinstance(file_name, str) or not file_name:
            raise ApiError(400, "input_config.file_name must be a file name (files/...).")
        file_id = file_name.removeprefix("files/")
        stored = self._files.get(file_id)
        if stored is None or stored.deleted:
            raise ApiError(404, f"File {file_name} not found.")
        count, errors, invalid = 0, [], None
        for number, line in enumerate(self._content(stored).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                invalid = f"Invalid JSON on line {number} of {file_name}."
                break
            if not isinstance(entry, dict) or not isinstance(_get(entry, "request"), dict):
                invalid = f"Line {number} of {file_name} has no 'request' object."
                break
            if self._request_problem(model, entry["request"]):
                errors.append(count)
            count += 1
        if invalid is None and count == 0:
            invalid = f"Input file {file_name} contains no requests."
        return file_id, count, invalid, errors

    def _request_problem(self, model: str, request: JSON) -> str | None:
        item_model = _get(request, "model")
        if isinstance(item_model, str) and item_model:
            model = item_model.removeprefix("models/")
        return validate_request(model, request, self.table)

    def _batch(self, match: re.Match[str]) -> _Batch:
        record = self._batches.get(match["id"])
        if record is None or record.deleted:
            raise ApiError(404, f"Batch {match['id']} not found.")
        return record

    def _batch_get(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        return SimResponse.json(self._operation(self._batch(match)))

    def _batch_list(self, request: SimRequest, _match: re.Match[str]) -> SimResponse:
        size, token = self._page(request, BATCH_PAGE_DEFAULT, BATCH_PAGE_MAX)
        live = [b for b in self._batches.values() if not b.deleted]
        live.sort(key=lambda b: (-b.create_t, b.id))
        keys = [(b.create_t, b.id) for b in live]
        start, end = self._paginate(keys, size, token)
        payload: JSON = {}
        if end > start:
            payload["operations"] = [self._operation(b, listing=True) for b in live[start:end]]
        if end < len(live):
            payload["nextPageToken"] = self._token(keys[end - 1])
        return SimResponse.json(payload)

    def _batch_cancel(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        record = self._batch(match)
        now = self._now()
        if not batch_status(record, now).terminal:
            record.cancel_t = now
        return SimResponse.json({})

    def _batch_delete(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        self._batch(match).deleted = True
        return SimResponse.json({})

    def _operation(self, batch: _Batch, *, listing: bool = False) -> JSON:
        status = batch_status(batch, self._now())
        name = f"batches/{batch.id}"
        meta: JSON = {"@type": META_TYPE, "model": f"models/{batch.model}"}
        if batch.display_name:
            meta["displayName"] = batch.display_name
        if batch.input_file is not None:
            meta["inputConfig"] = {"fileName": f"files/{batch.input_file}"}
        output: JSON | None = None
        if status.terminal and status.kept > 0:
            if batch.input_file is not None:
                output = {"responsesFile": f"files/batch-{batch.id}"}
            elif not listing:
                results = self._inline_results(batch, status.kept)
                output = {"inlinedResponses": {"inlinedResponses": results}}
            if output is not None:
                meta["output"] = output
        meta["createTime"] = timestamp(batch.create_t)
        if status.end_t is not None:
            meta["endTime"] = timestamp(status.end_t)
        meta["updateTime"] = timestamp(status.update_t)
        meta["batchStats"] = self._stats(batch, status)
        meta["state"] = status.state
        meta["name"] = name
        operation: JSON = {"name": name, "metadata": meta}
        if status.terminal:
            operation["done"] = True
            if output is not None:
                operation["response"] = {"@type": OUTPUT_TYPE, **output}
            elif status.kept == 0 and status.state != SUCCEEDED:
                operation["error"] = self._job_error(batch, status)
        return operation

    @staticmethod
    def _job_error(batch: _Batch, status: BatchStatus) -> JSON:
        if status.state == CANCELLED:
            return {"code": 1, "message": "Batch was cancelled."}
        if status.state == EXPIRED:
            return {"code": 4, "message": "Batch expired: it was not finished within 48 hours."}
        if batch.invalid_input is not None:
            return {"code": 3, "message": batch.invalid_input}
        return {"code": 13, "message": "Batch failed due to an internal error."}

    @staticmethod
    def _stats(batch: _Batch, status: BatchStatus) -> JSON:
        stats = {"requestCount": str(batch.count)}
        if not status.terminal:
            stats["pendingRequestCount"] = str(batch.count)
            return stats
        failed = sum(1 for p in batch.error_positions if p < status.kept)
        if status.kept - failed:
            stats["successfulRequestCount"] = str(status.kept - failed)
        if failed:
            stats["failedRequestCount"] = str(failed)
        return stats

    # ---- results ----------------------------------------------------------------------------

    def _result(self, batch: _Batch, position: int, request: object) -> JSON:
        """`{"response": ...}` or `{"error": ...}` for the request at `position`."""
        model = batch.model
        if isinstance(request, dict):
            item_model = _get(request, "model")
            if isinstance(item_model, str) and item_model:
                model = item_model.removeprefix("models/")
        problem = validate_request(model, request, self.table)
        if problem is not None or not isinstance(request, dict):
            code = 5 if self.table.lookup(model) is None else 3
            return {"error": {"code": code, "message": problem or "invalid request"}}
        refusal = refusal_for(batch.scenario, position, prompt_text(request))
        seed = f"{batch.id}:{position}"
        response = generate_response(
            model, request, refusal=refusal, seed=seed, image_for=self._image, table=self.table
        )
        return {"response": response}

    def _inline_results(self, batch: _Batch, kept: int) -> list[JSON]:
        items = batch.inline or []
        results = []
        for position in _result_order(batch, kept):
            item = items[position]
            result = self._result(batch, position, _get(item, "request"))
            metadata = _get(item, "metadata")
            if metadata is not None:
                result["metadata"] = metadata
            results.append(result)
        return results

    def _result_lines(self, batch: _Batch, kept: int) -> Iterator[bytes]:
        """The result file's JSONL lines, built one at a time."""
        stored = self._files[batch.input_file or ""]
        content = self._content(stored)
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        pos = 0
        for line in content.splitlines(keepends=True):
            if line.strip():
                starts.append(pos)
                ends.append(pos + len(line))
            pos += len(line)
        for position in _result_order(batch, kept):
            entry = json.loads(content[starts[position] : ends[position]])
            result = self._result(batch, position, _get(entry, "request"))
            key = entry.get("key")
            yield _dump_line({"key": key, **result} if key is not None else result)

    def _result_chunks(self, batch: _Batch, kept: int) -> Iterator[bytes]:
        buffer: list[bytes] = []
        size = 0
        for line in self._result_lines(batch, kept):
            buffer.append(line)
            size += len(line)
            if size >= RESULT_CHUNK_BYTES:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)

    def _output_digest(self, batch: _Batch, kept: int) -> tuple[int, str]:
        if batch.output_digest is None:
            digest = hashlib.sha256()
            size = 0
            for line in self._result_lines(batch, kept):
                digest.update(line)
                size += len(line)
            batch.output_digest = (size, digest.hexdigest())
        return batch.output_digest

    # ---- files ----------------------------------------------------------------------------

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
