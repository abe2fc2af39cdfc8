"""The `batches.*` route handlers (create, get, list, cancel, delete) and the Operation a job
is answered as."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.gemini.batches import (
    CANCELLED,
    EXPIRED,
    META_TYPE,
    OUTPUT_TYPE,
    SUCCEEDED,
    BatchStatus,
    _Batch,
    batch_status,
)
from costguard.simulator.gemini.content import (
    MAX_INLINE_BYTES,
    enqueued_tokens,
    validate_request,
)
from costguard.simulator.gemini.errors import ApiError, payload_too_large
from costguard.simulator.gemini.parts import contents_problem
from costguard.simulator.gemini.results import BatchResults
from costguard.simulator.gemini.usage import UsageTable
from costguard.simulator.gemini.wire import JSON, _get, timestamp
from costguard.simulator.scenario import Quota, Scenario

BATCH_PAGE_DEFAULT, BATCH_PAGE_MAX = 50, 1000


QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
"""The message of a batch create refused for quota: like the real API's, it names no limit."""
QUOTA_REASON = "batch_quota"
"""The error body variant (`fixtures/gemini/errors/429_batch_quota.json`) of that refusal."""


class _Tally:
    """Sums the enqueued tokens of a job's valid requests while its input is checked."""

    def __init__(self, table: UsageTable, scenario: Scenario) -> None:
        self.table = table
        self.thinking = scenario.thinking_tokens
        self.tokens = 0

    def add(self, model: str, request: JSON, key: object) -> None:
        """Count one valid request for `model` (`key`: its own key, when it has one)."""
        self.tokens += enqueued_tokens(model, request, self.table, key=key, thinking=self.thinking)


class BatchRoutes(BatchResults):
    """Batch jobs: create (inline or from a file), read, list, cancel, delete."""

    def _batch_create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        if len(request.body) > MAX_INLINE_BYTES:
            raise ApiError(400, payload_too_large(MAX_INLINE_BYTES))
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
        scenario = self._sim.scenario_for(display_name)
        tally = _Tally(self.table, scenario)
        if requests is not None:
            items = _get(requests, "requests")
            inline, errors = self._check_inline(model, items, tally)
            count, input_file, invalid = len(inline), None, None
        else:
            inline = None
            input_file, count, invalid, errors = self._check_input_file(model, file_name, tally)
        enqueued = tally.tokens if invalid is None else 0
        self._check_quota(model, enqueued, scenario.quota)
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
            enqueued_tokens=enqueued,
        )
        self._batches[record.id] = record
        self._sim.record_job(self.name, record.id, scenario.name, count)
        return SimResponse.json(self._operation(record))

    def _check_quota(self, model: str, tokens: int, quota: Quota) -> None:
        """Refuse a create past the scenario's quotas (429 RESOURCE_EXHAUSTED, no number
        named, as the real API answers); jobs not yet terminal count, deleted ones do not."""
        limit = quota.token_limit(model)
        if limit is None and quota.concurrent_jobs is None:
            return
        now = self._now()
        live = [
            b for b in self._batches.values() if not b.deleted and not batch_status(b, now).terminal
        ]
        over_jobs = quota.concurrent_jobs is not None and len(live) >= quota.concurrent_jobs
        used = sum(b.enqueued_tokens for b in live if b.model == model)
        if over_jobs or (limit is not None and used + tokens > limit):
            raise ApiError(429, QUOTA_MESSAGE, reason=QUOTA_REASON)

    def _check_inline(
        self, model: str, items: object, tally: _Tally
    ) -> tuple[list[JSON], list[int]]:
        if not isinstance(items, list) or not items:
            raise ApiError(400, "* InlinedRequests.requests: requests must not be empty")
        errors = []
        for position, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(_get(item, "request"), dict):
                message = f"inlined request #{position}: expected an object with a 'request' object"
                raise ApiError(400, message)
            at = f"batch.input_config.requests.requests[{position}].request."
            unparsed = contents_problem(item["request"], at=at)
            if unparsed:
                raise ApiError(400, unparsed)
            key = _get(_get(item, "metadata"), "key")
            if self._request_problem(model, item["request"], tally, key):
                errors.append(position)
        return items, errors

    def _check_input_file(
        self, model: str, file_name: object, tally: _Tally
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
            if self._request_problem(model, entry["request"], tally, entry.get("key")):
                errors.append(count)
            count += 1
        if invalid is None and count == 0:
            invalid = f"Input file {file_name} contains no requests."
        return file_id, count, invalid, errors

    def _request_problem(
        self, model: str, request: JSON, tally: _Tally | None = None, key: object = None
    ) -> str | None:
        item_model = _get(request, "model")
        if isinstance(item_model, str) and item_model:
            model = item_model.removeprefix("models/")
        problem = validate_request(model, request, self.table)
        if problem is None and tally is not None:
            tally.add(model, request, key)
        return problem

    def _batch(self, match: re.Match[str]) -> _Batch:
        record = self._batches.get(match["id"])
        if record is None or record.deleted:
            raise ApiError(404, f"Batch {match['id']} not found.")
        return record

    def _batch_get(self, _request: SimRequest, match: re.Match[str]) -> SimResponse:
        """The Operation; a finished inline job's results stream inside it (twice, as the API
        sends them: in `metadata.output` and in `response`), generated one at a time."""
        batch = self._batch(match)
        placeholder = f"costguard-sim:inlined:{secrets.token_hex(16)}"
        operation = self._operation(batch, inline_placeholder=placeholder)
        text = json.dumps(operation, separators=(",", ":")).encode()
        pieces = text.split(json.dumps(placeholder).encode())
        if len(pieces) == 1:
            return SimResponse.json(operation)
        kept = batch_status(batch, self._now()).kept

        def body() -> Iterator[bytes]:
            for number, piece in enumerate(pieces):
                if number:
                    yield from self._inline_chunks(batch, kept)
                yield piece

        headers = {"content-type": "application/json; charset=utf-8"}
        return SimResponse(200, headers, body())

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

    def _operation(
        self, batch: _Batch, *, listing: bool = False, inline_placeholder: str | None = None
    ) -> JSON:
        """The Operation of `batch`. A finished inline job's results are left out of a listing;
        elsewhere they are `inline_placeholder` (the caller streams them in its place)."""
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
            elif not listing and inline_placeholder is not None:
                output = {"inlinedResponses": {"inlinedResponses": inline_placeholder}}
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
