"""Indexing a recording: the manifest's jobs, calls and uploads, built from its exchanges.

`facts_of` reads what one stored exchange tells (a job's state, a result download, an upload,
a synchronous call) as small `Fact`s; `Indexer` keeps them for every exchange and builds the
manifest from them in `seq` order, so `recording.yaml` can be rewritten after each exchange and
a recording stopped at any moment is valid. `describe` is the manifest's one-line summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from costguard.simulator.recording.format import (
    Manifest,
    RecordedCall,
    RecordedJob,
    RecordedUpload,
    ResultFile,
    TimelineStep,
    body_json,
    body_lines,
    exchange_file_name,
    gemini_inline_results,
    gemini_state,
    inline_key,
    line_key,
)

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
