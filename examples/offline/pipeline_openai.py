"""A small image pipeline on the OpenAI Batch API: prompts in, images (or reasons) out, by key.

The system under test of docs/testing-offline.md. Nothing here knows about costguard: it is
plain `openai` SDK code, and `sleep` is a parameter only so that a test can move simulated
time instead of waiting.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openai import OpenAI

DONE = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Rendered:
    """What one batch produced: its final status, images by key, and why the others failed."""

    status: str
    images: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def render(
    client: OpenAI,
    prompts: Mapping[str, str],
    *,
    model: str = "gpt-image-2",
    metadata: dict[str, str] | None = None,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Rendered:
    """Generate one image per prompt in a single batch; results are keyed like `prompts`."""
    lines = "".join(
        json.dumps(
            {
                "custom_id": key,
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": model, "prompt": prompt, "size": "1024x1024", "quality": "low"},
            }
        )
        + "\n"
        for key, prompt in prompts.items()
    )
    upload = client.files.create(file=("prompts.jsonl", lines.encode()), purpose="batch")
    extra: dict[str, Any] = {"metadata": metadata} if metadata else {}
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/images/generations",
        completion_window="24h",
        **extra,
    )
    while batch.status not in DONE:
        sleep(poll_s)
        batch = client.batches.retrieve(batch.id)
    rendered = Rendered(batch.status)
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            for line in client.files.content(file_id).text.splitlines():
                _collect(rendered, json.loads(line))
    return rendered


def _collect(rendered: Rendered, row: dict[str, Any]) -> None:
    key = row["custom_id"]
    response = row.get("response") or {}
    if response.get("status_code") == 200:
        rendered.images[key] = base64.b64decode(response["body"]["data"][0]["b64_json"])
        return
    error = row.get("error") or response.get("body", {}).get("error") or {}
    rendered.failures[key] = str(error.get("code") or error.get("type") or "error")
