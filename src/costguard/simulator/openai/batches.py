"""Batch jobs: the job record, its timeline under a scenario, and the scan of its input file.

A batch moves `validating` -> `in_progress` -> `finalizing` -> `completed`, or ends `failed`
(its input file is invalid: `errors` lists why, no result files), `expired` (24 h after creation,
the only completion window) or `cancelling` -> `cancelled`. Each input line is a JSON object
`{"custom_id", "method": "POST", "url", "body"}` whose `url` is the batch's endpoint; custom ids
are unique and every line names the same model. Requests left unfinished at expiry or cancel
are reported in the error file with code `batch_expired` or `batch_cancelled`.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from costguard.simulator.openai.limits import OpenAILimits
from costguard.simulator.scenario import Scenario

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

WINDOW_S = 24 * 3600
"""The only completion window: a batch expires 24 h after creation."""

_OK, _REFUSED, _REJECTED = 0, 1, 2


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
    enqueued_tokens: int = 0
    """What the batch counts against its model's enqueued-token quota while not terminal (the
    sum of `usage.enqueued_tokens` over its valid requests; 0 when validation failed)."""

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
    enqueued: int = 0
    """The batch's enqueued tokens (`usage.enqueued_tokens` summed, refused requests too)."""

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

    def check(self, line_no: int, raw: bytes) -> tuple[str, dict[str, Any]] | None:
        """`(custom_id, body)` when line `line_no` is a valid request line, else None."""
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
        return custom_id, body


TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
"""Statuses a batch never leaves; a batch in one no longer counts against quotas."""

QUOTA_ORGANIZATION = "org-costguard-sim"
"""The organization named in the simulator's quota messages."""


def token_limit_error(model: str, limit: int) -> dict[str, Any]:
    """The validation error of a batch past its model's enqueued-token limit (the real
    message, quoted in openai/openai-python#2084)."""
    message = (
        f"Enqueued token limit reached for {model} in organization {QUOTA_ORGANIZATION}. "
        f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches "
        "have been completed."
    )
    return {"code": "token_limit_exceeded", "message": message, "param": None, "line": None}


_UNFINISHED = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
"""Messages of the non-HTTP error lines [inferred: the real wording is not documented]."""
UNFINISHED_MESSAGES = _UNFINISHED
"""Public name of the unfinished-request messages (`batch_expired`, `batch_cancelled`)."""
