"""OpenAI error bodies: the fixtures in `fixtures/openai/errors/`, filled in, and `ApiError`.

Every non-2xx answer carries `{"error": {"message", "type", "param", "code"}}`; the SDKs raise
their status's error class from it and read `code`, `type` and `param` off `error`.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from costguard.resources import data_dir

MODERATION_CATEGORY = "violence"
"""The category named in simulated moderation refusals."""


class ApiError(Exception):
    """An OpenAI API error: raised inside the face, answered as the fixture body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", {}).get("message", ""))
        self.status = status
        self.body = body


# -- fixtures ------------------------------------------------------------------------------


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


@cache
def _error_templates() -> dict[str, dict[str, Any]]:
    folder = data_dir("fixtures") / "openai" / "errors"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}


def error_body(name: str, /, **values: str | None) -> dict[str, Any]:
    """The fixture `fixtures/openai/errors/<name>.json` with `{placeholders}` filled in.

    A placeholder whose value is None makes the field it fills JSON null (e.g. `param`).
    """
    template = _error_templates()[name]
    body: dict[str, Any] = _fill(template, {k: v for k, v in values.items() if v is not None})
    error = body["error"]
    for key, text in list(error.items()):
        if isinstance(text, str) and text.startswith("{") and text.endswith("}"):
            error[key] = None
    return body


def api_error(http_status: int, name: str, /, **values: str | None) -> ApiError:
    """An `ApiError` carrying the named fixture body."""
    return ApiError(http_status, error_body(name, **values))


def _supported(values: list[str] | tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) < 2:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]
