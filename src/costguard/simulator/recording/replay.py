"""Replay a recording as a stateful scenario: a job is a timeline, not a tape.

`Simulator(scenario=DIR)` (and `costguard simulate serve --scenario DIR`, `simulate(DIR)`,
the fixture marker) attaches a `Replay` when DIR holds a `recording.yaml`. The simulator keeps
its one route table and its faces: for every matched request `Simulator._dispatch` asks
`Replay.answer(route, request, match)` first; `None` lets the synthetic face answer as usual.

What the replay answers, and the rules (also in `docs/recording.md`):

* **Jobs.** A `batches.create` claims the next unclaimed recorded job of that provider, in order
  of recorded creation, preferring one with the same Gemini display name or OpenAI metadata,
  then (Gemini) the same kind, inline or file. The client sees the recorded ids. A job's
  timeline is its recorded states, consecutive repeats collapsed (`recording.yaml` `timeline`):
  create answers the first; every `get` / `retrieve` answers the state at the current step and
  then advances one step, staying on the last (terminal) one. So a client sees each recorded
  state once in its polls, one that polls more than the recording sees the final state again,
  and one that polls less (the recording polled the same state several times) reaches the end
  sooner. Asking for results (a download) at any step is answered from the recording and moves
  the job to its end. A recorded id the client never created in this replay (a resumed
  pipeline) is claimed by its first poll.
* **Results** come from the recorded downloads (OpenAI output/error files, Gemini result files)
  and the terminal body (Gemini inline): by key, in the recorded order.
* **Edits.** A job's `terminal` (when it differs from the recorded end) and `outcomes` rewrite
  its end state, counts and results: see `_settle`. A client `cancel` that the recording does not
  hold settles the job as `cancelled` after the states the client has seen.
* **Everything else** (uploads, uploaded files, jobs or sync calls beyond the recording, unknown
  ids) goes to the synthetic faces under the recording's `fallback` scenario. Jobs and sync calls
  beyond the recording are listed in `misses`.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.simulator.core import Route, SimRequest, SimResponse
from costguard.simulator.gemini import FINISH_MESSAGES, OUTPUT_TYPE
from costguard.simulator.gemini import error_body as gemini_error
from costguard.simulator.openai import MODERATION_CATEGORY, UNFINISHED_MESSAGES
from costguard.simulator.openai import error_body as openai_error
from costguard.simulator.recording.format import (
    EXCHANGES,
    Manifest,
    Outcome,
    RecordedJob,
    RecordingError,
    body_json,
    body_lines,
    gemini_inline_results,
    gemini_state,
    inline_key,
    line_key,
    load_manifest,
    read_exchange,
)
from costguard.simulator.scenario import Terminal

if TYPE_CHECKING:
    from costguard.simulator import Simulator

JSON = dict[str, Any]
Handler = Callable[[SimRequest, re.Match[str], Route], SimResponse | None]

OPENAI_TERMINAL: dict[str, Terminal] = {
    "completed": "succeeded",
    "expired": "expired",
    "cancelled": "cancelled",
    "failed": "failed",
}
OPENAI_STATUS = {terminal: status for status, terminal in OPENAI_TERMINAL.items()}
GEMINI_TERMINAL: dict[str, Terminal] = {
    "BATCH_STATE_SUCCEEDED": "succeeded",
    "BATCH_STATE_EXPIRED": "expired",
    "BATCH_STATE_CANCELLED": "cancelled",
    "BATCH_STATE_FAILED": "failed",
}
GEMINI_STATE = {terminal: state for state, terminal in GEMINI_TERMINAL.items()}
_OPENAI_BEFORE: dict[Terminal, tuple[str, ...]] = {
    "succeeded": ("validating", "in_progress", "finalizing"),
    "expired": ("validating", "in_progress"),
    "cancelled": ("validating", "in_progress", "cancelling"),
    "failed": ("validating",),
}
_OPENAI_MOMENTS = (
    "completed_at",
    "expired_at",
    "cancelled_at",
    "failed_at",
    "finalizing_at",
    "cancelling_at",
    "in_progress_at",
    "created_at",
)
_GEMINI_ERRORS = {
    "cancelled": {"code": 1, "message": "Batch was cancelled."},
    "expired": {"code": 4, "message": "Batch expired: it was not finished within 48 hours."},
    "failed": {"code": 13, "message": "Batch failed due to an internal error."},
}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class _Result:
    """A result file of a replayed job."""

    kind: str
    file_id: str
    lines: list[bytes]
    object: JSON | None = None
    deleted: bool = False

    def content(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)


@dataclass
class _Job:
    """A recorded job as replay serves it."""

    spec: RecordedJob
    recorded_states: list[JSON]
    recorded_results: list[_Result]
    states: list[JSON] = field(default_factory=list)
    results: dict[str, _Result] = field(default_factory=dict)
    shown: int = -1
    """Index of the state last answered; -1 until the job is claimed."""
    step: int = 0
    """Index of the state the next poll answers (the current step)."""
    deleted: bool = False
    cancelled_at_step: int | None = None
    """Set when a client cancel the recording does not hold settled the job."""

    @property
    def provider(self) -> str:
        return self.spec.provider

    @property
    def claimed(self) -> bool:
        return self.shown >= 0

    @property
    def ended(self) -> bool:
        """Whether the client has been shown the end state."""
        return self.shown == len(self.states) - 1

    def current(self) -> JSON:
        """The state last shown (what a listing shows)."""
        return self.states[max(self.shown, 0)]

    def poll(self) -> JSON:
        """The answer to one poll: the state at the current step, then the step advances."""
        self.shown = min(self.step, len(self.states) - 1)
        self.step = min(self.shown + 1, len(self.states) - 1)
        return self.states[self.shown]

    def jump(self, index: int) -> JSON:
        """Show state `index` now; the next poll goes on from there."""
        self.shown = index
        self.step = min(index + 1, len(self.states) - 1)
        return self.states[index]

    def finish(self) -> None:
        """The client asked for results: the job is at its end state from now on."""
        self.jump(len(self.states) - 1)


class Replay:
    """A loaded recording answering the routes it covers (see the module docstring)."""

    def __init__(self, folder: Path, manifest: Manifest, sim: Simulator) -> None:
        self.folder = folder
        self.manifest = manifest
        self.sim = sim
        self.misses: list[str] = []
        """One line per job or sync call the recording had no answer for (the simulator's)."""
        self._exchanges = folder / EXCHANGES
        self.jobs: dict[tuple[str, str], _Job] = {}
        self._order: list[_Job] = []
        for spec in manifest.jobs:
            job = self._load_job(spec)
            self.jobs[(spec.provider, spec.id)] = job
            self._order.append(job)
        self._calls: dict[str, list[tuple[Any, JSON]]] = {}
        self._used: dict[str, list[int]] = {}
        for call in manifest.calls:
            record = read_exchange(folder, call.exchange)
            sent = body_json(self._exchanges, record["request"].get("body"))
            self._calls.setdefault(call.route, []).append((sent, record["response"]))
        self._uploads = {(u.provider, u.id) for u in manifest.uploads}
        self._handlers: dict[str, Handler] = {
            "openai.batches.create": self._openai_create,
            "openai.batches.retrieve": self._openai_retrieve,
            "openai.batches.cancel": self._openai_cancel,
            "openai.batches.list": self._openai_batches_list,
            "openai.files.retrieve": self._openai_file_retrieve,
            "openai.files.content": self._openai_file_content,
            "openai.files.delete": self._openai_file_delete,
            "openai.files.list": self._openai_files_list,
            "gemini.batches.create": self._gemini_create,
            "gemini.batches.get": self._gemini_get,
            "gemini.batches.cancel": self._gemini_cancel,
            "gemini.batches.delete": self._gemini_delete,
            "gemini.batches.list": self._gemini_batches_list,
            "gemini.files.get": self._gemini_file_get,
            "gemini.files.download": self._gemini_file_download,
            "gemini.files.delete": self._gemini_file_delete,
            "gemini.files.list": self._gemini_files_list,
            "openai.images.generate": self._sync,
            "openai.images.edit": self._sync,
            "gemini.models.generateContent": self._sync,
        }

    @classmethod
    def load(cls, path: str | Path, sim: Simulator) -> Replay:
        """The recording at `path` (folder or its `recording.yaml`), attached to `sim`."""
        folder, manifest = load_manifest(path)
        return cls(folder, manifest, sim)

    @property
    def name(self) -> str:
        """The recording's scenario name."""
        return self.manifest.name

    # -- the request path -------------------------------------------------------------------

    def answer(self, route: Route, request: SimRequest, match: re.Match[str]) -> SimResponse | None:
        """The recorded answer to this request, or None for the synthetic face to answer."""
        handler = self._handlers.get(route.name)
        return handler(request, match, route) if handler is not None else None

    # -- loading and edits ------------------------------------------------------------------

    def _body(self, exchange: str) -> Any:
        record = read_exchange(self.folder, exchange)
        return body_json(self._exchanges, record["response"].get("body"))

    def _load_job(self, spec: RecordedJob) -> _Job:
        states = [self._body(step.exchange) for step in spec.timeline]
        for step, state in zip(spec.timeline, states, strict=True):
            if not isinstance(state, dict):
                msg = (
                    f"{self.folder / 'recording.yaml'}: job {spec.id}: timeline step "
                    f"{step.state!r} points at {step.exchange}, whose response is not a JSON object"
                )
                raise RecordingError(msg)
        results = []
        for result in spec.results:
            record = read_exchange(self.folder, result.exchange)
            lines = list(body_lines(self._exchanges, record["response"].get("body")))
            obj = self._body(result.object) if result.object else None
            results.append(_Result(result.kind, result.file_id, lines, obj))
        job = _Job(spec, states, results)
        self._settle(job, spec.terminal)
        return job

    def _recorded_terminal(self, job: _Job) -> Terminal | None:
        last = job.recorded_states[-1]
        if job.provider == "openai":
            return OPENAI_TERMINAL.get(str(last.get("status")))
        return GEMINI_TERMINAL.get(gemini_state(last) or "")

    def _settle(self, job: _Job, terminal: Terminal | None, seen: int | None = None) -> None:
        """Compute what `job` answers: its states and results under `terminal` and its outcomes.

        With no edit (no `terminal` change, no `outcomes`) the recording is served verbatim.
        Otherwise the end state is rebuilt from the recorded one: keys not in `outcomes` keep
        their result, except that a `terminal` of expired/cancelled/failed that differs from the
        recorded end drops them (OpenAI: `batch_expired`/`batch_cancelled` lines; Gemini:
        nothing). `seen` (a client cancel) keeps only the states up to that step before it.
        """
        recorded = self._recorded_terminal(job)
        outcomes = job.spec.outcomes
        changed = terminal is not None and terminal != recorded
        before = job.states[: seen + 1] if seen is not None else job.recorded_states[:-1]
        job.states = list(job.recorded_states)
        job.results = {r.file_id: dataclasses.replace(r) for r in job.recorded_results}
        if not changed and not outcomes and seen is None:
            return
        target = terminal if terminal is not None else recorded
        if target is None:  # the recording stopped before the end: edit the results only
            target_default: Outcome = "ok"
        else:
            target_default = "ok" if not changed or target == "succeeded" else target
        if job.provider == "openai":
            self._settle_openai(job, target, target_default, before, cancel=seen is not None)
        else:
            self._settle_gemini(job, target, target_default, before)

    # -- OpenAI edits -----------------------------------------------------------------------

    def _settle_openai(
        self,
        job: _Job,
        target: Terminal | None,
        default: Outcome,
        before: list[JSON],
        *,
        cancel: bool,
    ) -> None:
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for result in job.recorded_results:
            for raw in result.lines:
                line = json.loads(raw)
                outcome = job.spec.outcomes.get(line_key(line) or "", default)
                if target == "failed":
                    continue
                if outcome == "ok":
                    (outputs if result.kind == "output" else errors).append(raw)
                else:
                    errors.append(_dump(_openai_line(job.spec.id, line, outcome)))
        template = job.recorded_states[-1]
        if target is None:  # not at its end: only the result files change
            self._openai_results(job, copy.deepcopy(template), outputs, errors)
            return
        changed = OPENAI_TERMINAL.get(str(template.get("status"))) != target
        allowed = _OPENAI_BEFORE[target]
        kept = [s for s in before if s.get("status") in allowed] if changed or cancel else before
        moment = next((template[k] for k in _OPENAI_MOMENTS if template.get(k)), 0)
        end = copy.deepcopy(template)
        for name in _OPENAI_MOMENTS[:6]:
            end[name] = None
        end["status"] = OPENAI_STATUS[target]
        if target == "succeeded":
            end["finalizing_at"] = template.get("finalizing_at") or moment
            end["completed_at"] = moment
        elif target == "expired":
            end["expired_at"] = moment
        elif target == "cancelled":
            end["cancelling_at"] = template.get("cancelling_at") or moment
            end["cancelled_at"] = moment
            if not any(s.get("status") == "cancelling" for s in kept):
                cancelling = copy.deepcopy(kept[-1] if kept else template)
                cancelling.update(status="cancelling", cancelling_at=moment)
                cancelling.update(output_file_id=None, error_file_id=None)
                kept.append(cancelling)
        else:
            end.update(failed_at=moment, in_progress_at=None, model=None, usage=None)
            message = "costguard-sim: the recording was edited to fail this job at validation."
            end["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "line": None, "message": message}],
            }
        self._openai_results(job, end, outputs, errors)
        job.states = [*kept, end]

    def _openai_results(
        self, job: _Job, end: JSON, outputs: list[bytes], errors: list[bytes]
    ) -> None:
        """Point `end` at the rebuilt output/error files, with their counts and usage."""
        recorded = {r.kind: r for r in job.recorded_results}
        job.results = {}
        ids = {}
        for kind, lines in (("output", outputs), ("error", errors)):
            name = f"{kind}_file_id"
            file_id = end.get(name) or (recorded[kind].file_id if kind in recorded else None)
            file_id = file_id or "file-" + _digest(job.spec.id, kind)[:24]
            ids[name] = file_id if lines else None
            if lines:
                obj = copy.deepcopy(recorded[kind].object) if kind in recorded else None
                job.results[file_id] = _Result(kind, file_id, lines, obj)
                if obj is not None:
                    obj["bytes"] = len(job.results[file_id].content())
        if end.get("status") == "failed":
            end.update(output_file_id=None, error_file_id=None)
            end["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
            job.results = {}
            return
        end.update(ids)
        counts = dict(end.get("request_counts") or {})
        total = int(counts.get("total") or len(outputs) + len(errors))
        end["request_counts"] = {
            "total": total,
            "completed": len(outputs),
            "failed": max(len(errors), total - len(outputs)),
        }
        usages = [_line_usage(raw) for raw in outputs]
        if end.get("usage") and all(u is not None for u in usages):
            spent_in = sum(u[0] for u in usages if u is not None)
            spent_out = sum(u[1] for u in usages if u is not None)
            usage = dict(end["usage"])
            usage.update(
                input_tokens=spent_in, output_tokens=spent_out, total_tokens=spent_in + spent_out
            )
            end["usage"] = usage

    # -- Gemini edits -----------------------------------------------------------------------

    def _settle_gemini(
        self, job: _Job, target: Terminal | None, default: Outcome, before: list[JSON]
    ) -> None:
        template = job.recorded_states[-1]
        inline = job.spec.kind == "inline"
        if inline:
            recorded = [
                (inline_key(item, i), item)
                for i, item in enumerate(gemini_inline_results(template) or [])
            ]
        else:
            lines = [json.loads(raw) for r in job.recorded_results for raw in r.lines]
            recorded = [(line_key(line) or str(i), line) for i, line in enumerate(lines)]
        kept: list[JSON] = []
        for key, item in recorded:
            outcome = job.spec.outcomes.get(key, default)
            if outcome in ("expired", "cancelled") or target in ("expired", "failed"):
                continue
            kept.append(item if outcome == "ok" else _gemini_item(item, outcome))
        result_id = f"batch-{job.spec.id}"
        recorded_file = next((r for r in job.recorded_results if r.file_id == result_id), None)
        job.results = {}
        if kept and not inline:
            obj = copy.deepcopy(recorded_file.object) if recorded_file else None
            result = _Result("output", result_id, [_dump(item) for item in kept], obj)
            if obj is not None:
                obj["sizeBytes"] = str(len(result.content()))
            job.results[result_id] = result
        if target is None:
            return
        pre = [s for s in before if gemini_state(s) not in GEMINI_TERMINAL]
        end = copy.deepcopy(template)
        meta = end.setdefault("metadata", {})
        meta["state"] = GEMINI_STATE[target]
        meta.setdefault("endTime", meta.get("updateTime"))
        end.pop("error", None)
        end.pop("response", None)
        meta.pop("output", None)
        if kept:
            output: JSON = (
                {"inlinedResponses": {"inlinedResponses": kept}}
                if inline
                else {"responsesFile": f"files/{result_id}"}
            )
            meta["output"] = output
            end["response"] = {"@type": OUTPUT_TYPE, **output}
        elif target != "succeeded":
            end["error"] = dict(_GEMINI_ERRORS[target])
        stats = meta.get("batchStats") or {}
        count = str(stats.get("requestCount") or len(recorded))
        succeeded = sum(1 for item in kept if "response" in item)
        failed = len(kept) - succeeded
        meta["batchStats"] = {"requestCount": count}
        if succeeded:
            meta["batchStats"]["successfulRequestCount"] = str(succeeded)
        if failed:
            meta["batchStats"]["failedRequestCount"] = str(failed)
        end["done"] = True
        job.states = [*pre, end]

    # -- claiming jobs ----------------------------------------------------------------------

    def _claim(self, provider: str, request: SimRequest) -> _Job | None:
        free = [j for j in self._order if j.provider == provider and not j.claimed]
        if not free:
            recorded = sum(1 for j in self._order if j.provider == provider)
            self.misses.append(
                f"{provider}.batches.create: no recorded {provider} job left ({recorded} "
                f"recorded); the simulator answered under {self.sim.scenario.name!r}"
            )
            return None
        try:
            body = request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if provider == "openai":
            metadata = body.get("metadata")
            same = [j for j in free if metadata and j.spec.metadata == metadata]
            return (same or free)[0]
        raw = body.get("batch")
        batch: JSON = raw if isinstance(raw, dict) else {}
        display = batch.get("displayName", batch.get("display_name"))
        config = batch.get("inputConfig", batch.get("input_config")) or {}
        by_file = isinstance(config, dict) and bool(config.get("fileName", config.get("file_name")))
        kind = "file" if by_file else "inline"
        named = [j for j in free if display and j.spec.display_name == display]
        same_kind = [j for j in free if j.spec.kind == kind]
        return (named or same_kind or free)[0]

    def _start(self, job: _Job) -> JSON:
        job.shown, job.step = 0, 0  # create answers step 0; the first poll shows it again
        self.sim.record_job(job.provider, job.spec.id, self.name, job.spec.requests or 0)
        return job.states[0]

    def _job(self, provider: str, job_id: str) -> _Job | None:
        job = self.jobs.get((provider, job_id))
        if job is None or job.deleted:
            return None
        if not job.claimed:  # a recorded id polled without a create: a resumed client
            self._start(job)
        return job

    def _result(self, provider: str, file_id: str) -> tuple[_Job, _Result] | None:
        for job in self._order:
            if job.provider == provider and file_id in job.results:
                return job, job.results[file_id]
        return None

    # -- answers ----------------------------------------------------------------------------

    def _json(self, request: SimRequest, payload: Any, status: int = 200) -> SimResponse:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        origin = self.manifest.origin
        if origin and origin != request.base_url:
            text = text.replace(origin, request.base_url)
        headers = {"content-type": "application/json; charset=utf-8"}
        return SimResponse(status, headers, text.encode("utf-8"))

    # OpenAI ---------------------------------------------------------------------------------

    def _openai_create(
        self, request: SimRequest, _m: re.Match[str], _r: Route
    ) -> SimResponse | None:
        try:
            body = request.json()
        except ValueError:
            return None
        input_id = str(body.get("input_file_id") or "") if isinstance(body, dict) else ""
        face = self.sim.openai
        if not face.has_file(input_id) and ("openai", input_id) not in self._uploads:
            return None  # the simulator answers the API's own error
        job = self._claim("openai", request)
        return self._json(request, self._start(job)) if job is not None else None

    def _openai_retrieve(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("openai", match["batch_id"])
        return self._json(request, job.poll()) if job is not None else None

    def _openai_cancel(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("openai", match["batch_id"])
        if job is None:
            return None
        status = str(job.current().get("status"))
        if status in ("cancelling", "cancelled"):
            return self._json(request, job.current())
        if status in OPENAI_TERMINAL:
            return self._json(
                request, openai_error("400_batch_not_cancellable", status=status), 400
            )
        later = [
            i for i, s in enumerate(job.states) if i > job.shown and s.get("status") == "cancelling"
        ]
        if later:
            return self._json(request, job.jump(later[0]))
        self._cancel(job)
        return self._json(request, job.jump(len(job.states) - 2))  # cancelling

    def _cancel(self, job: _Job) -> None:
        """Settle `job` as cancelled after the states shown; the next poll shows the end."""
        job.cancelled_at_step = job.shown
        self._settle(job, "cancelled", seen=job.shown)
        job.shown = len(job.states) - 2
        job.step = len(job.states) - 1

    def _listing(
        self,
        request: SimRequest,
        match: re.Match[str],
        route: Route,
        items: list[JSON],
        *,
        data_key: str,
        cursor: str,
        ids: list[str],
        default_limit: int = 20,
    ) -> SimResponse | None:
        """Replayed `items` (newest first) ahead of the synthetic face's first page."""
        after = request.arg(cursor)
        if not items or (after and after not in ids):
            return None
        if after:
            items = items[ids.index(after) + 1 :]
        query = {k: v for k, v in request.query.items() if k != cursor}
        inner = route.handler(dataclasses.replace(request, query=query), match)
        page = json.loads(inner.read() or b"{}") if inner.status == 200 else {}
        if data_key == "data":
            try:
                limit = max(1, int(request.arg("limit") or default_limit))
            except ValueError:
                return None  # the simulator answers the API's 400
            merged = [*items, *page.get("data", [])]
            page = {
                "object": "list",
                "data": merged[:limit],
                "first_id": merged[0]["id"] if merged else None,
                "last_id": merged[:limit][-1]["id"] if merged else None,
                "has_more": len(merged) > limit or bool(page.get("has_more")),
            }
        else:
            page[data_key] = [*items, *page.get(data_key, [])]
        return self._json(request, page)

    def _openai_batches_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        live = [j for j in self._order if j.provider == "openai" and j.claimed and not j.deleted]
        live.sort(key=lambda j: int(j.current().get("created_at") or 0), reverse=True)
        items = [j.current() for j in live]
        ids = [j.spec.id for j in live]
        return self._listing(request, match, route, items, data_key="data", cursor="after", ids=ids)

    def _openai_file(self, file_id: str) -> tuple[_Job, _Result] | None:
        return self._result("openai", file_id)

    def _openai_object(self, job: _Job, result: _Result) -> JSON:
        if result.object is not None:
            return result.object
        end = job.states[-1]
        created = next((end[k] for k in _OPENAI_MOMENTS if end.get(k)), 0)
        return {
            "id": result.file_id,
            "object": "file",
            "bytes": len(result.content()),
            "created_at": created,
            "filename": f"{job.spec.id}_{result.kind}.jsonl",
            "purpose": "batch_output",
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _openai_gone(self, request: SimRequest, file_id: str) -> SimResponse:
        return self._json(request, openai_error("404_file", id=file_id), 404)

    def _openai_file_retrieve(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        job, result = found
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        return self._json(request, self._openai_object(job, result))

    def _openai_file_content(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        job, result = found
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        job.finish()
        data = result.content()
        headers = {"content-type": "application/octet-stream", "content-length": str(len(data))}
        return SimResponse(200, headers, data)

    def _openai_file_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        result = found[1]
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        result.deleted = True
        return self._json(request, {"id": result.file_id, "object": "file", "deleted": True})

    def _openai_files_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        purpose = request.arg("purpose")
        if purpose not in (None, "batch_output"):
            return None
        found = [
            (job, result)
            for job in self._order
            if job.provider == "openai" and job.claimed and job.ended
            for result in job.results.values()
            if not result.deleted
        ]
        items = [self._openai_object(job, result) for job, result in found]
        items.sort(
            key=lambda o: int(o.get("created_at") or 0), reverse=request.arg("order") != "asc"
        )
        ids = [str(o["id"]) for o in items]
        return self._listing(
            request,
            match,
            route,
            items,
            data_key="data",
            cursor="after",
            ids=ids,
            default_limit=10_000,
        )

    # Gemini ---------------------------------------------------------------------------------

    def _gemini_create(
        self, request: SimRequest, _m: re.Match[str], _r: Route
    ) -> SimResponse | None:
        try:
            body = request.json()
        except ValueError:
            return None
        batch = body.get("batch") if isinstance(body, dict) else None
        config = (
            batch.get("inputConfig", batch.get("input_config")) if isinstance(batch, dict) else None
        )
        if isinstance(config, dict):
            name = config.get("fileName", config.get("file_name"))
            if isinstance(name, str) and name:
                file_id = name.removeprefix("files/")
                face = self.sim.gemini
                if (
                    not (face is not None and face.has_file(file_id))
                    and ("gemini", file_id) not in self._uploads
                ):
                    return None  # the simulator answers the API's own 404
        job = self._claim("gemini", request)
        return self._json(request, self._start(job)) if job is not None else None

    def _gemini_missing(self, request: SimRequest, what: str) -> SimResponse:
        return self._json(request, gemini_error(404, f"{what} not found."), 404)

    def _gemini_get(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        return self._json(request, job.poll()) if job is not None else self._deleted(request, match)

    def _deleted(self, request: SimRequest, match: re.Match[str]) -> SimResponse | None:
        job = self.jobs.get(("gemini", match["id"]))
        if job is not None and job.deleted:
            return self._gemini_missing(request, f"Batch {match['id']}")
        return None

    def _gemini_cancel(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        if job is None:
            return self._deleted(request, match)
        if gemini_state(job.current()) not in GEMINI_TERMINAL:
            later = [
                i
                for i, s in enumerate(job.states)
                if i > job.shown and gemini_state(s) == "BATCH_STATE_CANCELLED"
            ]
            if later:
                job.step = later[0]  # the next poll shows the recorded cancellation
            else:
                self._cancel(job)
        return self._json(request, {})

    def _gemini_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        if job is None:
            return self._deleted(request, match)
        job.deleted = True
        return self._json(request, {})

    def _gemini_batches_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        if request.arg("pageToken") or request.arg("page_token"):
            return None
        live = [j for j in self._order if j.provider == "gemini" and j.claimed and not j.deleted]
        live.sort(
            key=lambda j: str((j.current().get("metadata") or {}).get("createTime")), reverse=True
        )
        items = [_listed(j.current()) for j in live]
        return self._listing(
            request, match, route, items, data_key="operations", cursor="pageToken", ids=[]
        )

    def _gemini_object(
        self, request: SimRequest, match: re.Match[str], job: _Job, result: _Result
    ) -> JSON:
        if result.object is not None:
            return result.object
        meta = job.states[-1].get("metadata") or {}
        stamp = meta.get("endTime") or meta.get("updateTime") or meta.get("createTime")
        data = result.content()
        base = request.base_url + match["prefix"]
        ver = match["ver"]
        return {
            "name": f"files/{result.file_id}",
            "mimeType": "application/json",
            "sizeBytes": str(len(data)),
            "createTime": stamp,
            "updateTime": stamp,
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": f"{base}/{ver}/files/{result.file_id}",
            "downloadUri": f"{base}/download/{ver}/files/{result.file_id}:download?alt=media",
            "state": "ACTIVE",
            "source": "GENERATED",
        }

    def _gemini_file(
        self, request: SimRequest, match: re.Match[str]
    ) -> tuple[_Job, _Result] | SimResponse | None:
        found = self._result("gemini", match["id"])
        if found is None:
            return None
        if found[1].deleted:
            return self._gemini_missing(request, f"File files/{match['id']}")
        return found

    def _gemini_file_get(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        return self._json(request, self._gemini_object(request, match, *found))

    def _gemini_file_download(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        job, result = found
        job.finish()
        data = result.content()
        headers = {"content-type": "application/octet-stream", "content-length": str(len(data))}
        return SimResponse(200, headers, data)

    def _gemini_file_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        found[1].deleted = True
        return self._json(request, {})

    def _gemini_files_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        if request.arg("pageToken") or request.arg("page_token"):
            return None
        items = [
            self._gemini_object(request, match, job, result)
            for job in self._order
            if job.provider == "gemini" and job.claimed and job.ended
            for result in job.results.values()
            if not result.deleted
        ]
        return self._listing(
            request, match, route, items, data_key="files", cursor="pageToken", ids=[]
        )

    # Sync calls -----------------------------------------------------------------------------

    def _sync(self, request: SimRequest, _m: re.Match[str], route: Route) -> SimResponse | None:
        recorded = self._calls.get(route.name, [])
        used = self._used.setdefault(route.name, [])
        free = [i for i in range(len(recorded)) if i not in used]
        if not free:
            self.misses.append(
                f"{route.name}: no recorded call left ({len(recorded)} recorded); the simulator "
                f"answered under {self.sim.scenario.name!r}"
            )
            return None
        try:
            sent = request.json()
        except ValueError:
            sent = None
        same = [i for i in free if sent is not None and recorded[i][0] == sent]
        index = (same or free)[0]
        used.append(index)
        response = recorded[index][1]
        payload = body_json(self._exchanges, response.get("body"))
        return self._json(request, payload, int(response.get("status", 200)))

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> JSON:
        """Where each job and call is (saved with the simulator's state)."""
        return {
            "folder": str(self.folder),
            "misses": list(self.misses),
            "calls": {name: list(used) for name, used in self._used.items()},
            "jobs": [
                {
                    "provider": job.provider,
                    "id": job.spec.id,
                    "shown": job.shown,
                    "step": job.step,
                    "deleted": job.deleted,
                    "cancelled_at_step": job.cancelled_at_step,
                    "deleted_files": sorted(r.file_id for r in job.results.values() if r.deleted),
                }
                for job in self._order
            ],
        }

    def from_state(self, state: JSON) -> None:
        """Continue from `to_state()` output."""
        self.misses = list(state.get("misses", []))
        self._used = {name: list(used) for name, used in state.get("calls", {}).items()}
        for saved in state.get("jobs", []):
            job = self.jobs.get((saved["provider"], saved["id"]))
            if job is None:
                continue
            if saved.get("cancelled_at_step") is not None:
                job.shown = int(saved["cancelled_at_step"])
                self._cancel(job)
            job.shown, job.step = int(saved["shown"]), int(saved["step"])
            job.deleted = bool(saved["deleted"])
            for file_id in saved.get("deleted_files", []):
                if file_id in job.results:
                    job.results[file_id].deleted = True


def _listed(operation: JSON) -> JSON:
    """A Gemini operation as `batches.list` shows it (no inline results)."""
    listed = copy.deepcopy(operation)
    for holder in (listed.get("metadata") or {}, listed):
        output = holder.get("output" if holder is not listed else "response")
        if isinstance(output, dict):
            output.pop("inlinedResponses", None)
    return listed


def _line_usage(raw: bytes) -> tuple[int, int] | None:
    """(input, output) tokens of an OpenAI output line, when it says."""
    try:
        usage = json.loads(raw)["response"]["body"]["usage"]
        return int(usage["input_tokens"]), int(usage["output_tokens"])
    except (ValueError, KeyError, TypeError):
        return None


def _openai_line(job_id: str, line: JSON, outcome: Outcome) -> JSON:
    """An error-file line for `line`'s request under `outcome`."""
    key = line_key(line)
    line_id = line.get("id") or "batch_req_" + _digest(job_id, key)[:32]
    if outcome in ("expired", "cancelled"):
        code = f"batch_{outcome}"
        error = {"code": code, "message": UNFINISHED_MESSAGES[code]}
        return {"id": line_id, "custom_id": key, "response": None, "error": error}
    response = line.get("response") or {}
    request_id = response.get("request_id") or "req_" + _digest(job_id, key, "req")[:32]
    if outcome == "refused":
        status = 400
        body = openai_error(
            "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
        )
    else:
        status, body = 500, openai_error("500_server_error")
    return {
        "id": line_id,
        "custom_id": key,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }


def _gemini_item(item: JSON, outcome: Outcome) -> JSON:
    """A Gemini result (inline item or file line) turned into a refusal or an error."""
    changed = {k: v for k, v in item.items() if k not in ("response", "error")}
    if outcome == "failed":
        changed["error"] = {"code": 13, "message": "Internal error encountered."}
        return changed
    raw = item.get("response")
    response: JSON = raw if isinstance(raw, dict) else {}
    usage = response.get("usageMetadata") or {}
    prompt = int(usage.get("promptTokenCount", 0))
    thoughts = int(usage.get("thoughtsTokenCount", 0))
    metered: JSON = {"promptTokenCount": prompt, "totalTokenCount": prompt + thoughts}
    if "promptTokensDetails" in usage:
        metered["promptTokensDetails"] = usage["promptTokensDetails"]
    if thoughts:
        metered["thoughtsTokenCount"] = thoughts
    refusal: JSON = {
        "candidates": [
            {
                "finishReason": "IMAGE_SAFETY",
                "finishMessage": FINISH_MESSAGES["IMAGE_SAFETY"],
                "index": 0,
            }
        ],
        "usageMetadata": metered,
    }
    for name in ("modelVersion", "responseId"):
        if name in response:
            refusal[name] = response[name]
    changed["response"] = refusal
    return changed
