"""Batch routes: create, list, retrieve and cancel under /v1/batches, and the Batch object.

Creating a batch checks the call (endpoint, `completion_window` "24h", metadata of at most 16
string pairs), never the file's lines: a bad input file fails the batch later. A Batch carries
`expires_at` (creation + 24 h) from the start; `output_file_id` is null while nothing
succeeded, `error_file_id` while nothing failed. Lists are newest first and always carry
`has_more` (the Python SDK keeps paging while it is absent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.openai.batches import (
    BATCH_ENDPOINTS,
    SIMULATED_ENDPOINTS,
    WINDOW_S,
    BatchJob,
    timeline,
)
from costguard.simulator.openai.errors import _supported, api_error
from costguard.simulator.openai.file_routes import FileRoutes
from costguard.simulator.openai.wire import json_body

if TYPE_CHECKING:
    import re

_HEX = "0123456789abcdef"


class BatchRoutes(FileRoutes):
    """The /v1/batches endpoints."""

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
        if endpoint not in SIMULATED_ENDPOINTS:  # after the API's own checks (file exists)
            message = (
                f"costguard-sim: batch endpoint {endpoint} exists at OpenAI but is not "
                f"simulated; use {' or '.join(SIMULATED_ENDPOINTS)}."
            )
            raise api_error(400, "400_invalid_request", message=message)
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
