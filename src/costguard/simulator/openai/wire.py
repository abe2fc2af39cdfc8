"""Request bodies as the SDKs send them (JSON objects, multipart forms) and small byte helpers.

Uploads and image edits arrive as `multipart/form-data` (edits may also be JSON); the other
POSTs send a JSON object, or no body at all (cancel).
"""

from __future__ import annotations

import hashlib
import json
from email.message import Message
from email.parser import BytesFeedParser
from email.policy import HTTP
from typing import Any

from costguard.simulator.core import SimRequest
from costguard.simulator.openai.errors import api_error

CHUNK_BYTES = 1 << 16
"""Generated result files are streamed in chunks of about this size."""


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def parse_multipart(request: SimRequest) -> dict[str, list[Message]]:
    """The parts of a multipart/form-data body by field name (stdlib `email` parser)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise api_error(
            400,
            "400_invalid_request",
            message=f"Invalid Content-Type header ({content_type or 'none'}), "
            "expected multipart/form-data.",
        )
    parser = BytesFeedParser(policy=HTTP)
    parser.feed(f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1"))
    body = memoryview(request.body)
    for start in range(0, len(body), CHUNK_BYTES):  # fed in chunks: a third of the peak memory
        parser.feed(bytes(body[start : start + CHUNK_BYTES]))
    message = parser.close()
    fields: dict[str, list[Message]] = {}
    if not message.is_multipart():
        return fields
    for part in message.get_payload():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields.setdefault(name, []).append(part)
    return fields


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


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _part_text(part: Message) -> str:
    return _part_bytes(part).decode("utf-8", errors="replace")
