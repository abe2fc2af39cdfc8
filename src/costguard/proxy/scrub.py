"""Scrubbing: keys, auth headers and upload ids removed from anything about to be stored.

`Scrubber` drops the auth headers (`SECRET_HEADERS`) and transport headers
(`UNSTORED_HEADERS`), replaces `?key=` and `upload_id` values (`SECRET_QUERY`) and every
occurrence of a key it has seen (in headers, query or the environment, `KEY_ENVIRONMENT`) with
`REDACTED`. The recording proxy runs every URL, header and body line through it before any byte
reaches the disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "REDACTED"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-goog-api-key",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-guploader-uploadid",
    }
)
"""Headers never written (their values are also scrubbed wherever else they appear)."""

SECRET_QUERY = frozenset({"key", "upload_id", "api_key", "access_token"})
"""Query parameters whose values are replaced by `REDACTED` in what is stored."""

KEY_ENVIRONMENT = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
"""Environment variables whose values are scrubbed even before a request carries them."""

UNSTORED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)
"""Transport headers: not part of what an exchange means (bodies are stored decoded)."""

_MIN_SECRET = 4
_UPLOAD_ID = re.compile(r"(?<=[?&]upload_id=)[^&#\s\"']+")


class Scrubber:
    """Removes keys, auth headers and upload ids from anything about to be stored."""

    def __init__(self, secrets: Iterable[str] = (), *, environment: bool = True) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)
        if environment:
            for name in KEY_ENVIRONMENT:
                self.add(os.environ.get(name, ""))

    @property
    def secrets(self) -> frozenset[str]:
        """Every value scrubbed so far (longest first when applied)."""
        return frozenset(self._secrets)

    def add(self, secret: str | None) -> None:
        """Scrub `secret` from now on (values shorter than 4 characters are ignored)."""
        if secret and len(secret.strip()) >= _MIN_SECRET:
            self._secrets.add(secret.strip())

    def learn(self, headers: dict[str, str], query: dict[str, list[str]]) -> None:
        """Note the credentials a request carries (auth headers, `?key=`, upload ids)."""
        for name in SECRET_HEADERS:
            value = headers.get(name)
            if not value:
                continue
            self.add(value)
            scheme, _, rest = value.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                self.add(rest)
            if name == "cookie":
                for pair in value.split(";"):
                    self.add(pair.partition("=")[2])
        for name in SECRET_QUERY:
            for value in query.get(name, []):
                self.add(value)

    def learn_reply(self, headers: Iterable[tuple[str, str]]) -> None:
        """Note the secrets an answer hands out (upload session ids) before it is stored."""
        for name, value in headers:
            lower = name.lower()
            if lower in SECRET_HEADERS:
                self.add(value)
            if lower in ("x-goog-upload-url", "location"):
                for upload_id in _UPLOAD_ID.findall(value):
                    self.add(upload_id)

    def text(self, value: str) -> str:
        """`value` with every known secret and upload id replaced by `REDACTED`."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _UPLOAD_ID.sub(REDACTED, value)

    def data(self, value: bytes) -> bytes:
        """`value` with every known secret replaced (byte-wise: JSON stays valid)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            encoded = secret.encode("utf-8")
            if encoded in value:
                value = value.replace(encoded, REDACTED.encode())
        return value

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers worth storing: no secrets, no transport headers, values scrubbed."""
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in SECRET_HEADERS or lower in UNSTORED_HEADERS:
                continue
            kept[lower] = self.text(value)
        return kept

    def query(self, query: dict[str, list[str]]) -> dict[str, list[str]]:
        """The query with secret parameters redacted and other values scrubbed."""
        return {
            name: [REDACTED if name in SECRET_QUERY else self.text(v) for v in values]
            for name, values in query.items()
        }

    def json(self, value: Any) -> Any:
        """A parsed JSON value with secrets scrubbed from every string (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value
