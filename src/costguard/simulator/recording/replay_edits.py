"""Edits to a replayed job: its end state, counts and results under `terminal` and `outcomes`."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any

from costguard.simulator.gemini import FINISH_MESSAGES, OUTPUT_TYPE
from costguard.simulator.openai import MODERATION_CATEGORY, UNFINISHED_MESSAGES
from costguard.simulator.openai import error_body as openai_error
from costguard.simulator.recording.format import (
    Outcome,
    gemini_inline_results,
    gemini_state,
    inline_key,
    line_key,
)
from costguard.simulator.recording.replay_jobs import (
    _OPENAI_MOMENTS,
    GEMINI_STATE,
    GEMINI_TERMINAL,
    JSON,
    OPENAI_STATUS,
    OPENAI_TERMINAL,
    _Job,
    _Result,
)
from costguard.simulator.scenario import Terminal

_OPENAI_BEFORE: dict[Terminal, tuple[str, ...]] = {
    "succeeded": ("validating", "in_progress", "finalizing"),
    "expired": ("validating", "in_progress"),
    "cancelled": ("validating", "in_progress", "cancelling"),
    "failed": ("validating",),
}
_GEMINI_ERRORS = {
    "cancelled": {"code": 1, "message": "Batch was cancelled."},
    "expired": {"code": 4, "message": "Batch expired: it was not finished within 48 hours."},
    "failed": {"code": 13, "message": "Batch failed due to an internal error."},
}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


class ReplayEdits:
    """How a replayed job settles: verbatim, or rebuilt under its edits or a client cancel."""

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
