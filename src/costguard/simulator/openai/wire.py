"""Request bodies as the SDKs send them (JSON objects, multipart forms) and small byte helpers.

Uploads and image edits arrive as `multipart/form-data` (edits may also be JSON), read part by
part from the body file (`multipart.py`); the other POSTs send a JSON object, or no body at all
(cancel).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from costguard.simulator.core import SimRequest
from costguard.simulator.multipart import FormPart, MalformedFormError, parse_form
from costguard.simulator.openai.errors import api_error

CHUNK_BYTES = 1 << 16
"""Generated result files are streamed in chunks of about this size."""


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def parse_multipart(request: SimRequest) -> dict[str, list[FormPart]]:
    """The parts of a multipart/form-data body by field name, none of them read yet."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise api_error(
            400,
            "400_invalid_request",
            message=f"Invalid Content-Type header ({content_type or 'none'}), "
            "expected multipart/form-data.",
        )
    try:
        return parse_form(request.body_file(), content_type)
    except MalformedFormError as exc:
        raise api_error(
            400, "400_invalid_request", message=f"Invalid multipart/form-data body: {exc}."
        ) from None


def json_body(request: SimRequest) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        ApiError: 400 when the body is not JSON or not an object.
    """
    try:
        body = request.json()
    except ValueError:
        raise api_error(400, "400_invalid_request", message="The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise api_error(400, "400_invalid_request", message="Expected a JSON object.")
    return body
