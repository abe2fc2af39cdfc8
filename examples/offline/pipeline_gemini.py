"""A small image pipeline on the Gemini Batch API (inline requests), keyed like its input.

The system under test of docs/testing-offline.md. Plain `google-genai` SDK code; `sleep` is a
parameter only so that a test can move simulated time instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google import genai
from google.genai import types


@dataclass
class Rendered:
    """What one batch produced: its final state, images by key, and why the others failed."""

    status: str
    images: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def render(
    client: genai.Client,
    prompts: Mapping[str, str],
    *,
    model: str = "gemini-3.1-flash-image",
    display_name: str = "pipeline",
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Rendered:
    """Generate one image per prompt in a single inline batch; results keyed like `prompts`."""
    src: list[types.InlinedRequestDict] = [
        {
            "contents": prompt,
            "metadata": {"key": key},
            "config": {"response_modalities": ["IMAGE"]},
        }
        for key, prompt in prompts.items()
    ]
    job = client.batches.create(model=model, src=src, config={"display_name": display_name})
    while not job.done:
        sleep(poll_s)
        job = client.batches.get(name=job.name or "")
    rendered = Rendered(job.state.name if job.state else "UNKNOWN")
    for item in (job.dest.inlined_responses if job.dest else None) or []:
        key = (item.metadata or {}).get("key", "?")
        _collect(rendered, key, item)
    return rendered


def _collect(rendered: Rendered, key: str, item: types.InlinedResponse) -> None:
    response = item.response
    if response is None:
        rendered.failures[key] = (item.error.message or "error") if item.error else "no response"
        return
    image = next((p.inline_data.data for p in response.parts or [] if p.inline_data), None)
    if image:
        rendered.images[key] = image
    elif response.prompt_feedback and response.prompt_feedback.block_reason:
        rendered.failures[key] = response.prompt_feedback.block_reason.value
    else:
        reason = response.candidates[0].finish_reason if response.candidates else None
        rendered.failures[key] = reason.value if reason else "no image"
