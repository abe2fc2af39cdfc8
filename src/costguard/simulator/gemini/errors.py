"""Google error bodies (`{"error": {code, message, status, details?}}`) from the recorded
fixtures, and the exception handlers raise to answer one."""

from __future__ import annotations

import json
from functools import cache

from costguard.resources import data_dir
from costguard.simulator.gemini.wire import JSON

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


def payload_too_large(limit: int) -> str:
    """The message of a 400 for a body over `limit` bytes (Google front ends' wording)."""
    return f"Request payload size exceeds the limit: {limit} bytes."
