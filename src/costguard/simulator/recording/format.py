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

Nothing secret is written: `Scrubber` (`costguard.proxy.scrub`) drops the auth headers,
replaces `?key=` and `upload_id` values and every occurrence of a key it has seen (in headers,
query or the environment) with `REDACTED`, before any byte reaches the disk.

The manifest is rebuilt from the exchanges (`Indexer`, `index.py`) after each one is written, so
a recording stopped at any moment is valid. Its `jobs[*].terminal` and `jobs[*].outcomes` are
the edits replay honours (see `replay.py`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costguard.errors import UsageError
from costguard.simulator.scenario import Terminal

RECORDING_FORMAT = "costguard-recording/1"
MANIFEST = "recording.yaml"
EXCHANGES = "exchanges"

INLINE_TEXT_MAX = 512
"""Non-JSON bodies up to this size stay in the exchange file; bigger ones get a sidecar."""

Outcome = Literal["ok", "refused", "failed", "expired", "cancelled"]
"""A per-key edit: keep the recorded result, or turn it into a refusal, an error or nothing."""


class RecordingError(UsageError):
    """A recording folder is missing, unreadable, or its manifest does not validate."""

    kind = "recording"


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
    except (OSError, yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: an impossible date (2026-13-40); RecursionError: nesting past Python's stack
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


def exchange_file_name(seq: int, route: str) -> str:
    """`0007-openai.batches.retrieve.json`."""
    return f"{seq:04d}-{route}.json"


# --------------------------------------------------------------------------------------------
# What recorded bodies say: job states, inline results, result keys
# --------------------------------------------------------------------------------------------


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
