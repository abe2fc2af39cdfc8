"""Batch results: the input scan at creation, and result files generated while downloaded.

An output line is `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error": null}`. A request the API answered with an error (a refusal, a bad parameter) goes to
the error file in the same shape, the error body under `response.body`; a request left
unfinished has `"response": null` and `error: {"code", "message"}`. Lines need not follow input
order: clients match them by `custom_id`. Result files become FileObjects with purpose
`batch_output` once their batch is over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from costguard.simulator.openai.batches import (
    _OK,
    _REFUSED,
    _REJECTED,
    _UNFINISHED,
    TERMINAL_STATUSES,
    Analysis,
    BatchJob,
    InputScan,
    Timeline,
    _lines,
    timeline,
    token_limit_error,
)
from costguard.simulator.openai.errors import MODERATION_CATEGORY, ApiError, error_body
from costguard.simulator.openai.files import FILE_TTL_S, FileRecord
from costguard.simulator.openai.images import ImageRoutes
from costguard.simulator.openai.usage import (
    ImageCall,
    _json_images_count,
    enqueued_tokens,
    parse_image_call,
)
from costguard.simulator.openai.wire import CHUNK_BYTES, _digest, _dump
from costguard.simulator.splice import chunked, dump_pieces


class BatchResults(ImageRoutes):
    """Per-request accounting of batches, and the result files it yields."""

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
        if not errors and model is not None:
            job.enqueued_tokens = analysis.enqueued
            limit = job.scenario.quota.token_limit(model)
            if (
                limit is not None
                and self._enqueued(model, job.created_at) + analysis.enqueued > limit
            ):
                errors = [token_limit_error(model, limit)]
        if errors:
            job.errors = errors
            job.total = 0
        else:
            self._analyses[job.id] = analysis

    def _enqueued(self, model: str, now: int) -> int:
        """Tokens enqueued for `model` at `now`: batches not terminal then, and not failed
        (at validation, for quota or otherwise)."""
        return sum(
            other.enqueued_tokens
            for other in self.batches.values()
            if other.model == model
            and not other.errors
            and timeline(other).status(now) not in TERMINAL_STATUSES
        )

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
            checked = scan.check(line_no, raw)
            if checked is not None and not scan.error_count:
                self._account(job, analysis, scan.total - 1, offset, *checked)
        if scan.total == 0:
            scan.fail("empty_file", None, "The batch input file is empty.")
        return scan.errors, analysis, scan.model, scan.total

    def _account(
        self,
        job: BatchJob,
        analysis: Analysis,
        position: int,
        offset: int,
        custom_id: str,
        body: dict[str, Any],
    ) -> None:
        analysis.offsets.append(offset)
        outcome, input_tokens, output_tokens = _OK, 0, 0
        try:
            call = self._batch_call(job, custom_id, body)
        except ApiError:
            outcome = _REJECTED
        else:
            spread = job.scenario.input_image_tokens
            analysis.enqueued += enqueued_tokens(call, self.usage, spread)
            if job.scenario.refuses(position, call.prompt):
                outcome = _REFUSED
            else:
                images = call.input_image_tokens(self.usage, spread)
                input_tokens = call.input_text_tokens + images
                output_tokens = call.output_tokens(self.usage)
        analysis.outcome.append(outcome)
        analysis.cum_input.append(analysis.cum_input[-1] + input_tokens)
        analysis.cum_output.append(analysis.cum_output[-1] + output_tokens)

    def _batch_call(self, job: BatchJob, custom_id: str, body: dict[str, Any]) -> ImageCall:
        edit = job.endpoint == "/v1/images/edits"
        images = _json_images_count(body) if edit else 0
        call = parse_image_call(body, self.usage, edit=edit, input_images=images, key=custom_id)
        # a batch line is answered whole: no partial images streamed, none billed [assumed]
        return replace(call, stream=False) if call.stream else call

    def _chunks(self, record: FileRecord) -> Iterator[bytes]:
        """A file's content in chunks: stored bytes, or result lines generated on the fly."""
        if record.blob is not None:
            data = self.sim.blobs.get(record.blob)
            for start in range(0, len(data), 1 << 20):
                yield data[start : start + (1 << 20)]
            return
        job = self.batches[record.result_of or ""]
        yield from chunked(self._result_pieces(job, record.kind or "output"), CHUNK_BYTES)

    def _result_pieces(self, job: BatchJob, kind: str) -> Iterator[bytes]:
        """The lines of a result file, one request at a time, in pieces (`splice.dump_pieces`:
        images' base64 is not copied into JSON strings)."""
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
            status, body = self._batch_response(job, plan, position, line, request_id)
            response = {"status_code": status, "request_id": request_id, "body": body}
            yield from dump_pieces(
                {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
            )
            yield b"\n"

    def _batch_response(
        self, job: BatchJob, plan: Timeline, position: int, line: dict[str, Any], request_id: str
    ) -> tuple[int, dict[str, Any]]:
        try:
            call = self._batch_call(job, line["custom_id"], line["body"])
        except ApiError as exc:
            return exc.status, exc.body
        if job.scenario.refuses(position, call.prompt):
            return 400, error_body(
                "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
            )
        seed = f"openai/{job.id}/{position}"
        return 200, self._images_body(call, seed, plan.finished_at(position), job.scenario)
