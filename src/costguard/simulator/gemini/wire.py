"""Google's proto JSON as the face reads and writes it: fields in either spelling (camelCase
or snake_case), timestamps, response ids and JSONL lines."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

JSON = dict[str, Any]


@cache
def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def _get(obj: object, camel: str) -> Any:
    """`obj[camel]` or `obj[snake_case(camel)]` (proto JSON accepts both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel))


def _derived_id(seed: str) -> str:
    """A 22-character response id, stable for `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def timestamp(t: float) -> str:
    """RFC 3339 UTC with 9 fractional digits, as Google's JSON timestamps."""
    nanos = round(t * 1e9)
    seconds, frac = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"
