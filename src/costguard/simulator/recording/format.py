"""The recording format: real traffic stored as exchanges plus a human-editable manifest.

`costguard simulate record` (`record.py`) writes a folder; `costguard simulate serve --scenario
DIR` (`replay.py`) replays it statefully. `docs/recording.md` documents the layout for users:

    DIR/recording.yaml                        the manifest (`Manifest`): jobs and their timelines
    DIR/exchanges/0001-openai.files.create.json                  one file per request/response
    DIR/exchanges/0012-openai.files.content.response.jsonl       a body too big or not JSON

An exchange file is JSON: `seq`, `route` (the simulator's route name, or `unmatched`),
`provider`, `params` (ids taken from the path), `at_s` (seconds since recording started),
`complete` (False when the client hung up mid-body), `request` {method, path, query, headers,
body} and `response` {status, headers, body}. A body is null (empty), `{"json": value}`,
`{"text": "..."}` (short UTF-8), `{"base64": "..."}` (short binary) or `{"file": NAME}`: a
sidecar in `exchanges/` (`.jsonl`, `.txt` or `.bin`), held as received but scrubbed.

Nothing secret is written: `Scrubber` drops the auth headers (`SECRET_HEADERS`), replaces
`?key=` and `upload_id` values and every occurrence of a key it has seen (in headers, query or
the environment) with `REDACTED`, before any byte reaches the disk.

The manifest is rebuilt from the exchanges (`Indexer`) after each one is written, so a
recording stopped at any moment is valid. Its `jobs[*].terminal` and `jobs[*].outcomes` are
the edits replay honours (see `replay.py`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costguard.errors import UsageError
from costguard.simulator.scenario import Terminal

RECORDING_FORMAT = "costguard-recording/1"
MANIFEST = "recording.yaml"
EXCHANGES = "exchanges"
REDACTED = "REDACTED"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-goog-api-key",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-guploader-uploadid",
    }
)
"""Headers never written (their values are also scrubbed wherever else they appear)."""

SECRET_QUERY = frozenset({"key", "upload_id", "api_key", "access_token"})
"""Query parameters whose values are replaced by `REDACTED` in what is stored."""

KEY_ENVIRONMENT = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
"""Environment variables whose values are scrubbed even before a request carries them."""

UNSTORED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)
"""Transport headers: not part of what an exchange means (bodies are stored decoded)."""

INLINE_TEXT_MAX = 512
"""Non-JSON bodies up to this size stay in the exchange file; bigger ones get a sidecar."""

Outcome = Literal["ok", "refused", "failed", "expired", "cancelled"]
"""A per-key edit: keep the recorded result, or turn it into a refusal, an error or nothing."""

_MIN_SECRET = 4
_UPLOAD_ID = re.compile(r"(?<=[?&]upload_id=)[^&#\s\"']+")


class RecordingError(UsageError):
    """A recording folder is missing, unreadable, or its manifest does not validate."""


# --------------------------------------------------------------------------------------------
# Scrubbing
# --------------------------------------------------------------------------------------------


class Scrubber:
    """Removes keys, auth headers and upload ids from anything about to be stored."""

    def __init__(self, secrets: Iterable[str] = (), *, environment: bool = True) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)
        if environment:
            for name in KEY_ENVIRONMENT:
                self.add(os.environ.get(name, ""))

    @property
    def secrets(self) -> frozenset[str]:
        """Every value scrubbed so far (longest first when applied)."""
        return frozenset(self._secrets)

    def add(self, secret: str | None) -> None:
        """Scrub `secret` from now on (values shorter than 4 characters are ignored)."""
        if secret and len(secret.strip()) >= _MIN_SECRET:
            self._secrets.add(secret.strip())

    def learn(self, headers: dict[str, str], query: dict[str, list[str]]) -> None:
        """Note the credentials a request carries (auth headers, `?key=`, upload ids)."""
        for name in SECRET_HEADERS:
            value = headers.get(name)
            if not value:
                continue
            self.add(value)
            scheme, _, rest = value.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                self.add(rest)
            if name == "cookie":
                for pair in value.split(";"):
                    self.add(pair.partition("=")[2])
        for name in SECRET_QUERY:
            for value in query.get(name, []):
                self.add(value)

    def learn_reply(self, headers: Iterable[tuple[str, str]]) -> None:
        """Note the secrets an answer hands out (upload session ids) before it is stored."""
        for name, value in headers:
            lower = name.lower()
            if lower in SECRET_HEADERS:
                self.add(value)
            if lower in ("x-goog-upload-url", "location"):
                for upload_id in _UPLOAD_ID.findall(value):
                    self.add(upload_id)

    def text(self, value: str) -> str:
        """`value` with every known secret and upload id replaced by `REDACTED`."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _UPLOAD_ID.sub(REDACTED, value)

    def data(self, value: bytes) -> bytes:
        """`value` with every known secret replaced (byte-wise: JSON stays valid)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            encoded = secret.encode("utf-8")
            if encoded in value:
                value = value.replace(encoded, REDACTED.encode())
        return value

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers worth storing: no secrets, no transport headers, values scrubbed."""
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in SECRET_HEADERS or lower in UNSTORED_HEADERS:
                continue
            kept[lower] = self.text(value)
        return kept

    def query(self, query: dict[str, list[str]]) -> dict[str, list[str]]:
        """The query with secret parameters redacted and other values scrubbed."""
        return {
            name: [REDACTED if name in SECRET_QUERY else self.text(v) for v in values]
            for name, values in query.items()
        }

    def json(self, value: Any) -> Any:
        """A parsed JSON value with secrets scrubbed from every string (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def _parses_as_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def sidecar_suffix(*, all_json_lines: bool, utf8: bool) -> str:
    """`.jsonl`, `.txt` or `.bin` for a sidecar body."""
    if all_json_lines:
        return ".jsonl"
    return ".txt" if utf8 else ".bin"


def encode_small_body(data: bytes, content_type: str) -> dict[str, Any] | None:
    """The inline form of a body (None when empty); raises ValueError when it needs a sidecar."""
    if not data:
        return None
    stripped = data.strip()
    if "json" in content_type.lower() or stripped[:1] in (b"{", b"["):
        try:  # one JSON document, pretty-printed or not (JSONL raises "Extra data")
            return {"json": json.loads(data)}
        except ValueError:
            pass
    if len(data) <= INLINE_TEXT_MAX and b"\n" not in stripped:
        try:
            return {"text": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(data).decode("ascii")}
    msg = "body needs a sidecar file"
    raise ValueError(msg)


def body_bytes(folder: Path, form: dict[str, Any] | None) -> bytes:
    """The bytes of a stored body (`folder` is the recording's `exchanges/`)."""
    if not form:
        return b""
    if "json" in form:
        return json.dumps(form["json"], separators=(",", ":"), ensure_ascii=False).encode()
    if "text" in form:
        return str(form["text"]).encode("utf-8")
    if "base64" in form:
        return base64.b64decode(form["base64"])
    if "file" in form:
        return (folder / Path(str(form["file"])).name).read_bytes()
    msg = f"unknown body form {sorted(form)}"
    raise RecordingError(msg)


def body_lines(folder: Path, form: dict[str, Any] | None) -> Iterator[bytes]:
    """The non-blank lines of a stored body (a sidecar is read line by line)."""
    if form and "file" in form:
        with (folder / Path(str(form["file"])).name).open("rb") as handle:
            for line in handle:
                if line.strip():
                    yield line.rstrip(b"\r\n")
        return
    for line in body_bytes(folder, form).splitlines():
        if line.strip():
            yield line


def body_json(folder: Path, form: dict[str, Any] | None) -> Any:
    """A stored body parsed as JSON (None when empty or not JSON)."""
    if not form:
        return None
    if "json" in form:
        return form["json"]
    try:
        return json.loads(body_bytes(folder, form))
    except ValueError:
        return None


class LineSink:
    """Receives a body in chunks; keeps it in memory while small, else spills it to a sidecar.

    Whole lines go through `transform` (scrubbing, image shrinking) before they are written,
    so nothing unscrubbed reaches the disk; a body is split at newlines only, never re-joined
    differently.
    """

    def __init__(
        self,
        folder: Path,
        stem: str,
        transform: Callable[[bytes], bytes],
        *,
        spill_at: int = 1 << 20,
        prefer_file: bool = False,
    ) -> None:
        self._folder = folder
        self._stem = stem
        self._transform = transform
        self._spill_at = spill_at
        self._prefer_file = prefer_file
        self._memory = bytearray()
        self._pending = bytearray()
        self._handle: IO[bytes] | None = None
        self._part: Path | None = None
        self.size = 0
        self._all_json = True
        self._utf8 = True

    def write(self, chunk: bytes) -> None:
        """Add a chunk of the body."""
        self.size += len(chunk)
        if self._handle is None:
            self._memory.extend(chunk)
            if len(self._memory) >= self._spill_at:
                self._spill()
            return
        self._pending.extend(chunk)
        self._drain(final=False)

    def _spill(self) -> None:
        self._part = self._folder / f"{self._stem}.part"
        self._handle = self._part.open("wb")
        self._pending = self._memory
        self._memory = bytearray()
        self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        assert self._handle is not None
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                break
            self._emit(bytes(self._pending[: end + 1]))
            del self._pending[: end + 1]
        if final and self._pending:
            self._emit(bytes(self._pending))
            self._pending.clear()

    def _emit(self, line: bytes) -> None:
        assert self._handle is not None
        body, newline = (line[:-1], b"\n") if line.endswith(b"\n") else (line, b"")
        body = self._transform(body)
        if body.strip():
            self._all_json = self._all_json and _parses_as_json(body)
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                self._utf8 = False
        self._handle.write(body + newline)

    def finish(self, content_type: str) -> dict[str, Any] | None:
        """Close the body; return its stored form (writing a sidecar when needed)."""
        if self._handle is None:
            if not self._memory:
                return None
            if not self._prefer_file:
                with contextlib.suppress(ValueError):
                    return encode_small_body(self._transform(bytes(self._memory)), content_type)
            self._spill()  # transforms line by line from the untransformed bytes
        self._drain(final=True)
        assert self._handle is not None
        assert self._part is not None
        self._handle.close()
        self._handle = None
        suffix = sidecar_suffix(all_json_lines=self._all_json, utf8=self._utf8)
        target = self._folder / f"{self._stem}{suffix}"
        self._part.replace(target)
        return {"file": target.name}

    def abort(self) -> None:
        """Drop a half-written sidecar."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._part is not None:
            self._part.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TimelineStep(_Model):
    """One state a recorded job was seen in, with the answer replay gives for it."""

    state: str
    """`validating`, `in_progress`, ... (OpenAI) or `BATCH_STATE_*` (Gemini)."""
    polls: int = Field(1, ge=1)
    """How many recorded answers showed this state in a row (informational)."""
    exchange: str
    """The exchange file whose response body is served for this state (the last of the run)."""


class ResultFile(_Model):
    """A result file of a recorded job, as the client downloaded it."""

    kind: Literal["output", "error"]
    file_id: str
    """`file-...` (OpenAI) or `batch-<job id>` (Gemini)."""
    exchange: str
    """The download exchange (its response body holds the lines)."""
    object: str | None = None
    """The exchange of a `files.retrieve` / `files.get` of this file, when one was recorded."""


class RecordedJob(_Model):
    """A batch job the recorded client created (or polled)."""

    provider: Literal["openai", "gemini"]
    id: str
    """The provider's job id (`batch_...`; Gemini without `batches/`)."""
    kind: Literal["file", "inline"]
    display_name: str | None = None
    metadata: dict[str, str] | None = None
    model: str | None = None
    requests: int | None = None
    timeline: list[TimelineStep] = Field(min_length=1)
    results: list[ResultFile] = []
    keys: list[str] | None = None
    """Keys (`custom_id` / `key` / inline `metadata.key`) with recorded results, when <= 100."""
    terminal: Terminal | None = None
    """Edit: end the job `succeeded`, `expired`, `cancelled` or `failed` instead."""
    outcomes: dict[str, Outcome] = {}
    """Edit: per key, `refused`, `failed`, `expired`/`cancelled` (no result) or `ok`."""


class RecordedCall(_Model):
    """A synchronous call (`images.generate`, `generateContent`) replayed in order."""

    route: str
    exchange: str


class RecordedUpload(_Model):
    """A file the client uploaded (replay lets the simulator store uploads)."""

    provider: Literal["openai", "gemini"]
    id: str
    filename: str | None = None
    exchange: str


class Manifest(_Model):
    """`recording.yaml`."""

    format: Literal["costguard-recording/1"] = "costguard-recording/1"
    name: str
    """The scenario name replay reports (`sim.jobs[*].scenario`)."""
    description: str
    """One line, shown by `costguard simulate scenarios`."""
    upstream: str
    """Where the requests went (scheme, host, port and path; never a query)."""
    origin: str | None = None
    """The proxy's base URL the client used; replay rewrites it to its own in bodies."""
    recorded_at: str
    fallback: str = "succeeded"
    """Scenario for whatever the recording does not cover (new jobs, uploads): a built-in
    name, or a YAML file in the recording folder."""
    exchanges: int = 0
    jobs: list[RecordedJob] = []
    calls: list[RecordedCall] = []
    uploads: list[RecordedUpload] = []


def manifest_path(path: str | os.PathLike[str]) -> Path | None:
    """The `recording.yaml` that `path` names (the folder or the file), else None."""
    candidate = Path(path)
    if candidate.name == MANIFEST and candidate.is_file():
        return candidate
    inside = candidate / MANIFEST
    return inside if inside.is_file() else None


def load_manifest(path: str | os.PathLike[str]) -> tuple[Path, Manifest]:
    """The recording folder and its validated manifest.

    Raises:
        RecordingError: no manifest there, unreadable YAML, or a field that does not validate.
    """
    found = manifest_path(path)
    if found is None:
        msg = f"{path}: not a costguard recording (no {MANIFEST})"
        raise RecordingError(msg)
    try:
        data = yaml.safe_load(found.read_text(encoding="utf-8"))
        return found.parent, Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = f"{found}: invalid recording: {where}: {err['msg']}"
        raise RecordingError(msg) from exc
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{found}: invalid recording: {first}"
        raise RecordingError(msg) from exc


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write `recording.yaml` atomically (edits-first field order, no nulls)."""
    data = manifest.model_dump(mode="json", exclude_none=True)
    for job in data.get("jobs", []):
        job.setdefault("terminal", None)  # shown so users see where to edit
        job.setdefault("outcomes", {})
    header = (
        "# costguard recording (docs/recording.md). Replay: costguard simulate serve "
        "--scenario <this folder>\n# Edit a job's `terminal` (succeeded|expired|cancelled|"
        "failed) or `outcomes` ({key: refused|failed|expired|cancelled|ok}).\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    target = folder / MANIFEST
    partial = target.with_name(MANIFEST + ".part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)


def find_recordings(folder: Path) -> list[tuple[Path, Manifest | str]]:
    """Recordings at `folder` or one level below it: (folder, manifest or why it is unreadable)."""
    if not folder.is_dir():
        return []
    candidates = [folder] if manifest_path(folder) else sorted(p for p in folder.iterdir())
    found: list[tuple[Path, Manifest | str]] = []
    for candidate in candidates:
        if manifest_path(candidate) is None:
            continue
        try:
            found.append((candidate, load_manifest(candidate)[1]))
        except RecordingError as exc:
            found.append((candidate, str(exc)))
    return found


def read_exchange(folder: Path, name: str) -> dict[str, Any]:
    """The exchange file `name` of the recording at `folder`."""
    path = folder / EXCHANGES / Path(name).name
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read recorded exchange: {exc}"
        raise RecordingError(msg) from exc
    return data


# --------------------------------------------------------------------------------------------
# Indexing: exchanges -> manifest
# --------------------------------------------------------------------------------------------

KEY_LIST_MAX = 100
_JOB_ROUTES = {
    "openai.batches.create",
    "openai.batches.retrieve",
    "openai.batches.cancel",
    "gemini.batches.create",
    "gemini.batches.get",
}
SYNC_ROUTES = frozenset(
    {"openai.images.generate", "openai.images.edit", "gemini.models.generateContent"}
)


@dataclass
class Fact:
    """What one exchange tells about jobs, files and calls (small: kept for every exchange)."""

    seq: int
    exchange: str
    route: str
    provider: str
    kind: Literal["job", "content", "file", "upload", "call"]
    id: str = ""
    state: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    key_count: int = 0


def gemini_state(body: Any) -> str | None:
    """The `BATCH_STATE_*` of a Gemini batch operation body."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    state = meta.get("state") if isinstance(meta, dict) else None
    return state if isinstance(state, str) else None


def gemini_inline_results(body: Any) -> list[dict[str, Any]] | None:
    """The inline results of a terminal Gemini operation body, or None when it has none."""
    if not isinstance(body, dict):
        return None
    output = (body.get("metadata") or {}).get("output") or body.get("response") or {}
    holder = output.get("inlinedResponses") if isinstance(output, dict) else None
    items = holder.get("inlinedResponses") if isinstance(holder, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else None


def inline_key(item: dict[str, Any], position: int) -> str:
    """An inline result's key: `metadata.key`, else its position as text."""
    meta = item.get("metadata")
    key = meta.get("key") if isinstance(meta, dict) else None
    return str(key) if key is not None else str(position)


def line_key(line: dict[str, Any]) -> str | None:
    """The key of a result-file line: OpenAI `custom_id`, Gemini `key`."""
    key = line.get("custom_id", line.get("key"))
    return str(key) if key is not None else None


def _keyed(keys: Iterable[str]) -> tuple[list[str], int]:
    """The first keys and their count, which stops at KEY_LIST_MAX + 1 (only that matters)."""
    kept: list[str] = []
    for key in keys:
        kept.append(key)
        if len(kept) > KEY_LIST_MAX:
            break
    return kept, len(kept)


def _content_keys(folder: Path, form: dict[str, Any] | None) -> tuple[list[str], int]:
    def keys() -> Iterator[str]:
        for line in body_lines(folder, form):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            key = line_key(parsed) if isinstance(parsed, dict) else None
            if key is not None:
                yield key

    return _keyed(keys())


def facts_of(record: dict[str, Any], folder: Path) -> list[Fact]:  # noqa: PLR0911 - one branch per route
    """The facts of one stored exchange (`folder` is `exchanges/`)."""
    route = str(record.get("route", ""))
    provider = str(record.get("provider", ""))
    response = record.get("response") or {}
    request = record.get("request") or {}
    if response.get("status") != 200 or not record.get("complete", True):
        return []
    params = record.get("params") or {}
    name = exchange_file_name(int(record["seq"]), route)

    def fact(kind: Any, **values: Any) -> Fact:
        return Fact(int(record["seq"]), name, route, provider, kind, **values)

    if route in SYNC_ROUTES:
        return [fact("call")]
    body = body_json(folder, response.get("body"))
    if route in _JOB_ROUTES:
        if provider == "openai" and isinstance(body, dict) and body.get("object") == "batch":
            counts = body.get("request_counts") or {}
            info = {
                "created": route.endswith(".create"),
                "metadata": body.get("metadata"),
                "model": body.get("model"),
                "requests": counts.get("total"),
                "output_file_id": body.get("output_file_id"),
                "error_file_id": body.get("error_file_id"),
            }
            return [fact("job", id=str(body["id"]), state=str(body.get("status")), info=info)]
        state = gemini_state(body)
        if provider == "gemini" and state and isinstance(body, dict):
            meta = body.get("metadata") or {}
            sent = body_json(folder, request.get("body"))
            batch = sent.get("batch") if isinstance(sent, dict) else None
            config = batch.get("inputConfig", batch.get("input_config")) if batch else None
            by_file = bool(meta.get("inputConfig")) or bool(
                isinstance(config, dict) and (config.get("fileName") or config.get("file_name"))
            )
            stats = meta.get("batchStats") or {}
            info = {
                "created": route.endswith(".create"),
                "display_name": meta.get("displayName"),
                "model": str(meta.get("model", "")).removeprefix("models/") or None,
                "requests": int(stats["requestCount"]) if "requestCount" in stats else None,
                "kind": "file" if by_file else "inline",
            }
            job_id = str(body.get("name", "")).removeprefix("batches/")
            results = gemini_inline_results(body)
            keys, count = _keyed(inline_key(r, i) for i, r in enumerate(results or []))
            return [fact("job", id=job_id, state=state, info=info, keys=keys, key_count=count)]
        return []
    file_id = str(params.get("file_id") or params.get("id") or "")
    if route in ("openai.files.content", "gemini.files.download") and file_id:
        keys, count = _content_keys(folder, response.get("body"))
        return [fact("content", id=file_id, keys=keys, key_count=count)]
    if route in ("openai.files.retrieve", "gemini.files.get") and file_id:
        return [fact("file", id=file_id)]
    if route == "openai.files.create" and isinstance(body, dict) and "id" in body:
        return [fact("upload", id=str(body["id"]), info={"filename": body.get("filename")})]
    if route == "gemini.files.upload" and isinstance(body, dict):
        uploaded = body.get("file")
        if isinstance(uploaded, dict) and uploaded.get("name"):
            info = {"filename": uploaded.get("displayName")}
            return [fact("upload", id=str(uploaded["name"]).removeprefix("files/"), info=info)]
    return []


def exchange_file_name(seq: int, route: str) -> str:
    """`0007-openai.batches.retrieve.json`."""
    return f"{seq:04d}-{route}.json"


@dataclass
class _JobDraft:
    provider: str
    id: str
    info: dict[str, Any] = field(default_factory=dict)
    steps: list[TimelineStep] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    key_count: int = 0


class Indexer:
    """Builds the manifest from exchange facts (in `seq` order, whatever order they arrive)."""

    def __init__(self) -> None:
        self.facts: dict[int, list[Fact]] = {}

    def add(self, seq: int, facts: list[Fact]) -> None:
        """Note the facts of exchange `seq`."""
        self.facts[seq] = facts

    def manifest(self, base: Manifest) -> Manifest:
        """`base` (name, upstream, ...) with jobs, calls and uploads from the facts."""
        drafts: dict[tuple[str, str], _JobDraft] = {}
        contents: dict[tuple[str, str], Fact] = {}
        objects: dict[tuple[str, str], Fact] = {}
        calls: list[RecordedCall] = []
        uploads: list[RecordedUpload] = []
        for seq in sorted(self.facts):
            for fact in self.facts[seq]:
                key = (fact.provider, fact.id)
                if fact.kind == "job":
                    draft = drafts.setdefault(key, _JobDraft(fact.provider, fact.id))
                    _note_state(draft, fact)
                elif fact.kind == "content":
                    contents[key] = fact
                elif fact.kind == "file":
                    objects[key] = fact
                elif fact.kind == "call":
                    calls.append(RecordedCall(route=fact.route, exchange=fact.exchange))
                else:
                    provider: Any = fact.provider
                    filename = fact.info.get("filename")
                    uploads.append(
                        RecordedUpload(
                            provider=provider, id=fact.id, filename=filename, exchange=fact.exchange
                        )
                    )
        jobs = [_job(d, contents, objects) for d in drafts.values()]
        return base.model_copy(
            update={
                "exchanges": len(self.facts),
                "jobs": jobs,
                "calls": calls,
                "uploads": uploads,
                "description": base.description or describe(jobs, calls),
            }
        )


def _note_state(draft: _JobDraft, fact: Fact) -> None:
    for name, value in fact.info.items():  # later result ids and counts win, else the first
        later_wins = name.endswith("_file_id") or name == "requests"
        if value is not None and (name not in draft.info or (later_wins and value)):
            draft.info[name] = value
    if fact.key_count:
        draft.keys, draft.key_count = fact.keys, fact.key_count
    last = draft.steps[-1] if draft.steps else None
    if last is not None and last.state == fact.state:
        last.polls += 1
        last.exchange = fact.exchange
    else:
        draft.steps.append(TimelineStep(state=fact.state, exchange=fact.exchange))


def _job(
    draft: _JobDraft, contents: dict[tuple[str, str], Fact], objects: dict[tuple[str, str], Fact]
) -> RecordedJob:
    info = draft.info
    results: list[ResultFile] = []
    wanted: list[tuple[Literal["output", "error"], str]] = []
    if draft.provider == "openai":
        for kind, name in (("output", "output_file_id"), ("error", "error_file_id")):
            if info.get(name):
                wanted.append((kind, str(info[name])))  # type: ignore[arg-type]
    elif info.get("kind") == "file":
        wanted.append(("output", f"batch-{draft.id}"))
    keys: list[str] = []
    key_count = 0
    for kind, file_id in wanted:
        content = contents.get((draft.provider, file_id))
        if content is None:
            continue
        obj = objects.get((draft.provider, file_id))
        results.append(
            ResultFile(
                kind=kind,
                file_id=file_id,
                exchange=content.exchange,
                object=obj.exchange if obj else None,
            )
        )
        keys += content.keys
        key_count += content.key_count
    if draft.key_count:
        keys, key_count = draft.keys, draft.key_count
    provider: Any = draft.provider
    metadata = info.get("metadata")
    return RecordedJob(
        provider=provider,
        id=draft.id,
        kind="file" if provider == "openai" else info.get("kind", "inline"),
        display_name=info.get("display_name"),
        metadata={str(k): str(v) for k, v in metadata.items()} if metadata else None,
        model=info.get("model"),
        requests=info.get("requests"),
        timeline=draft.steps,
        results=results,
        keys=keys if 0 < key_count <= KEY_LIST_MAX else None,
    )


def describe(jobs: list[RecordedJob], calls: list[RecordedCall]) -> str:
    """A one-line summary: `openai: 1 file job; gemini: 2 jobs (inline, file); 3 sync calls`."""
    parts = []
    for provider in ("openai", "gemini"):
        mine = [j for j in jobs if j.provider == provider]
        if mine:
            kinds = ", ".join(j.kind for j in mine)
            plural = "s" if len(mine) > 1 else ""
            ends = ", ".join(
                j.timeline[-1].state.removeprefix("BATCH_STATE_").lower() for j in mine
            )
            parts.append(f"{provider}: {len(mine)} job{plural} ({kinds}; {ends})")
    if calls:
        parts.append(f"{len(calls)} sync call{'s' if len(calls) > 1 else ''}")
    return "; ".join(parts) or "no batch jobs"
