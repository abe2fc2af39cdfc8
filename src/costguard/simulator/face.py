"""What a provider face implements for the simulator (`Face`), and which provider a request is for.

`Simulator` answers with one face per provider (`openai/`, `gemini/`); both serve `/v1/batches`
and `/v1/files`, so `provider_of` picks the face before any route is matched.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import urlsplit

from costguard.simulator.core import Router, SimRequest, SimResponse

PROVIDER_HOSTS = {
    "api.openai.com": "openai",
    "generativelanguage.googleapis.com": "gemini",
}
"""Hosts the in-process face answers by default, and the provider each belongs to."""

_GEMINI_PATH = re.compile(r"^/(?:v1beta|v1alpha|upload|download)/|^/v1/models/|:[A-Za-z]+$")

_GEMINI_QUERY = frozenset(
    {"key", "pageSize", "pageToken", "alt", "$alt", "upload_id", "uploadType"}
)
"""Query parameters only Google's APIs use (OpenAI pages with `limit` / `after`)."""


class Face(Protocol):
    """One provider's face: its routes, its auth, its error shape and its state."""

    @property
    def name(self) -> str:
        """Provider id and prefix of every route name (`openai`, `gemini`)."""
        ...

    def register(self, router: Router) -> None:
        """Add the provider's routes to `router`."""
        ...

    def authenticate(self, request: SimRequest, route: str) -> SimResponse | None:
        """None when the request may proceed, else the provider's auth error."""
        ...

    def error(
        self, status: int, message: str | None = None, *, retry_after_s: float | None = None
    ) -> SimResponse:
        """The provider-shaped error response for `status`."""
        ...

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume, JSON-serialisable."""
        ...

    def from_state(self, state: dict[str, Any]) -> None:
        """Resume from `to_state()` output."""
        ...


def provider_of(request: SimRequest) -> str:
    """Which provider a request is for: by host, then by Gemini's signals, else OpenAI.

    Gemini's signals need no key, so a keyless request is told apart by them too: `x-goog-*`
    headers, the google-genai user agent, Google's query parameters (`key`, `pageSize`,
    `pageToken`, `alt`, ...) and Gemini-only paths. A request with none of them (a bare
    `GET /v1/batches`) is OpenAI's.
    """
    host = urlsplit(request.base_url).hostname or ""
    if host in PROVIDER_HOSTS:
        return PROVIDER_HOSTS[host]
    headers = request.headers
    if any(name.startswith("x-goog-") for name in headers):
        return "gemini"
    if not _GEMINI_QUERY.isdisjoint(request.query):
        return "gemini"
    if "google-genai" in headers.get("user-agent", ""):
        return "gemini"
    if _GEMINI_PATH.search(request.path):
        return "gemini"
    return "openai"
