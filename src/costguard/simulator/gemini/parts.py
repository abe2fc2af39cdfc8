"""Proto JSON type checks of a GenerateContentRequest's contents, as the API's JSON parser does
them before anything else: a field of the wrong type, or bytes that are not base64, refuse the
whole request with `Invalid value at '<path>' (<type>), <value>` (field names in snake_case).

Bytes follow the proto3 JSON rules: standard or URL-safe base64, padding optional. Unknown
fields are not checked here (the API's handling of them was not captured).
"""

from __future__ import annotations

import base64
import binascii
import json
import string

from costguard.simulator.gemini.wire import _get

_PART_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.Part"
_CONTENT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.Content"
_BLOB_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.Blob"
_FILE_DATA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.FileData"
_STANDARD = frozenset(string.ascii_letters + string.digits + "+/")
_URL_SAFE = frozenset(string.ascii_letters + string.digits + "-_")

_BLOB_FIELDS = {"mimeType": "TYPE_STRING", "data": "TYPE_BYTES"}
_FILE_DATA_FIELDS = {"mimeType": "TYPE_STRING", "fileUri": "TYPE_STRING"}
_PART_SCALARS = {"text": "TYPE_STRING", "thought": "TYPE_BOOL", "thoughtSignature": "TYPE_BYTES"}


class _InvalidValueError(Exception):
    """A value the parser refuses, with its path."""


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _field(obj: dict[str, object], camel: str) -> tuple[str, object] | None:
    """The field's proto name and value, whichever spelling the client used."""
    if camel in obj:
        return _snake(camel), obj[camel]
    snake = _snake(camel)
    if snake in obj:
        return snake, obj[snake]
    return None


def decodes_as_bytes(text: str) -> bool:
    """Whether proto3 JSON takes `text` as bytes (standard or URL-safe base64, padding optional)."""
    compact = "".join(text.split())
    core = compact.rstrip("=")
    padding = len(compact) - len(core)
    if len(core) % 4 == 1 or padding > 2 or (padding and len(compact) % 4):
        return False
    for alphabet, decode in (
        (_STANDARD, base64.b64decode),
        (_URL_SAFE, base64.urlsafe_b64decode),
    ):
        if set(core) <= alphabet:
            try:
                decode(core + "=" * (-len(core) % 4))
            except (binascii.Error, ValueError):
                return False
            return True
    return False


def _check_scalar(value: object, kind: str, path: str) -> None:
    if value is None:
        return
    shown = json.dumps(value)
    if kind == "TYPE_BOOL":
        if not isinstance(value, bool):
            raise _InvalidValueError(f"Invalid value at '{path}' ({kind}), {shown}")
        return
    if not isinstance(value, str):
        raise _InvalidValueError(f"Invalid value at '{path}' ({kind}), {shown}")
    if kind == "TYPE_BYTES" and not decodes_as_bytes(value):
        raise _InvalidValueError(
            f"Invalid value at '{path}' ({kind}), Base64 decoding failed for {shown}"
        )


def _check_message(
    value: object, path: str, type_url: str, fields: dict[str, str]
) -> dict[str, object] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _InvalidValueError(f"Invalid value at '{path}' ({type_url}), {json.dumps(value)}")
    for camel, kind in fields.items():
        found = _field(value, camel)
        if found is not None:
            _check_scalar(found[1], kind, f"{path}.{found[0]}")
    return value


def _check_part(part: object, path: str) -> None:
    checked = _check_message(part, path, _PART_TYPE, _PART_SCALARS)
    if checked is None:
        return
    blob = _field(checked, "inlineData")
    if blob is not None:
        _check_message(blob[1], f"{path}.{blob[0]}", _BLOB_TYPE, _BLOB_FIELDS)
    file_data = _field(checked, "fileData")
    if file_data is not None:
        _check_message(file_data[1], f"{path}.{file_data[0]}", _FILE_DATA_TYPE, _FILE_DATA_FIELDS)


def _check_content(content: object, path: str) -> None:
    checked = _check_message(content, path, _CONTENT_TYPE, {"role": "TYPE_STRING"})
    if checked is None:
        return
    found = _field(checked, "parts")
    if found is None or found[1] is None:
        return
    name, parts = found
    if not isinstance(parts, list):
        parts = [parts]  # a single value for a repeated field is read as a list of one
    for index, part in enumerate(parts):
        _check_part(part, f"{path}.{name}[{index}]")


def contents_problem(request: object, *, at: str = "") -> str | None:
    """Why the API's JSON parser refuses this request's contents (None when it parses).

    Args:
        request: A GenerateContentRequest as sent (camelCase or snake_case fields).
        at: The request's own path inside a larger body, ending with a dot
            (`batch.input_config.requests.requests[3].request.`); empty for generateContent.
    """
    if not isinstance(request, dict):
        return None
    contents = _get(request, "contents")
    if isinstance(contents, dict):
        contents = [contents]
    try:
        if isinstance(contents, list):
            for index, content in enumerate(contents):
                _check_content(content, f"{at}contents[{index}]")
        system = _field(request, "systemInstruction")
        if system is not None:
            _check_content(system[1], f"{at}{system[0]}")
    except _InvalidValueError as exc:
        return str(exc)
    return None
