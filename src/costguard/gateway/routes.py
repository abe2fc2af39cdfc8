"""Which calls the gateway sees, which of them are paid, and who makes them.

A request is named `<provider>.<call>` with the ids in its path, the way the recorder names
them, but from the gateway's own small table (the gateway never imports the simulator):

- paid, priced before forwarding: `openai.images.generate`, `openai.images.edit`,
  `gemini.generate` (generateContent on a model), `gemini.stream` (streamGenerateContent),
  `openai.batches.create`, `gemini.batches.create` (batchGenerateContent);
- watched, not paid: the uploads a batch is priced from (`openai.files.create`,
  `gemini.files.upload`), the batch reads (`openai.batches.retrieve`, `gemini.batches.get`)
  and the result downloads (`openai.files.content`, `gemini.files.download`);
- everything else passes straight through (`<provider>.other`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = [
    "PAID_BATCH",
    "PAID_SYNC",
    "key_of",
    "owner_of",
    "provider_of",
    "route_of",
]

PAID_SYNC = frozenset(
    {"openai.images.generate", "openai.images.edit", "gemini.generate", "gemini.stream"}
)
PAID_BATCH = frozenset({"openai.batches.create", "gemini.batches.create"})

_GEMINI_PATH = re.compile(r"^/(?:v1beta|v1alpha|upload|download)/|^/v1/models/|:[A-Za-z]+$")
_VERSION = r"/(?:download/)?(?:v1|v1beta|v1alpha)"
_OPENAI: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/images/generations$"), "openai.images.generate"),
    ("POST", re.compile(r"^/v1/images/edits$"), "openai.images.edit"),
    ("POST", re.compile(r"^/v1/files$"), "openai.files.create"),
    ("GET", re.compile(r"^/v1/files/(?P<file>[^/]+)/content$"), "openai.files.content"),
    ("POST", re.compile(r"^/v1/batches$"), "openai.batches.create"),
    ("GET", re.compile(r"^/v1/batches/(?P<batch>[^/]+)$"), "openai.batches.retrieve"),
]
_GEMINI: list[tuple[str, re.Pattern[str], str]] = [
    (
        "POST",
        re.compile(rf"^{_VERSION}/models/(?P<model>[^/:]+):generateContent$"),
        "gemini.generate",
    ),
    (
        "POST",
        re.compile(rf"^{_VERSION}/models/(?P<model>[^/:]+):streamGenerateContent$"),
        "gemini.stream",
    ),
    (
        "POST",
        re.compile(rf"^{_VERSION}/models/(?P<model>[^/:]+):batchGenerateContent$"),
        "gemini.batches.create",
    ),
    ("GET", re.compile(rf"^{_VERSION}/batches/(?P<batch>[^/:]+)$"), "gemini.batches.get"),
    ("POST", re.compile(r"^/upload/(?:v1|v1beta|v1alpha)/files$"), "gemini.files.upload"),
    (
        "GET",
        re.compile(rf"^{_VERSION}/files/(?P<file>[^/:]+):download$"),
        "gemini.files.download",
    ),
]


def provider_of(path: str, query: Mapping[str, object], headers: Mapping[str, str]) -> str:
    """`gemini` or `openai`: by Gemini's headers and key parameter, its client, then its paths.

    Both providers have `/v1/batches/{id}` and `/v1/files`; the Gemini SDKs always send an
    `x-goog-` header (the key, the API client, or the upload protocol), OpenAI's never do.
    """
    if any(name.startswith("x-goog-") for name in headers) or "key" in query:
        return "gemini"
    if "google-genai" in headers.get("user-agent", ""):
        return "gemini"
    if _GEMINI_PATH.search(path):
        return "gemini"
    return "openai"


def route_of(
    method: str, path: str, query: Mapping[str, object], headers: Mapping[str, str]
) -> tuple[str, str, dict[str, str]]:
    """(route name, provider, ids from the path) of one request."""
    provider = provider_of(path, query, headers)
    table = _GEMINI if provider == "gemini" else _OPENAI
    for verb, pattern, name in table:
        if verb != method:
            continue
        found = pattern.match(path)
        if found is not None:
            return name, provider, {k: v for k, v in found.groupdict().items() if v}
    return f"{provider}.other", provider, {}


def key_of(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str | None:
    """The API key a request carries (bearer token, `x-goog-api-key`, `?key=`), or None."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    for name in ("x-goog-api-key", "api-key"):
        if headers.get(name):
            return headers[name]
    keys = query.get("key")
    return keys[0] if keys else None


def owner_of(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> tuple[str, str]:
    """(owner, where it came from): `X-Costguard-Owner`, else a fingerprint of the API key.

    The fingerprint is the first 12 hex digits of the key's SHA-256: the same key always
    gives the same owner, and the key cannot be read back from it.
    """
    named = headers.get("x-costguard-owner", "").strip()
    if named:
        return named, "header"
    key = key_of(headers, query)
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12], "key fingerprint"
    return "anonymous", "no key"
