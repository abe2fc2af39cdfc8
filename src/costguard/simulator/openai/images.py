"""Synchronous image routes: POST /v1/images/generations and /v1/images/edits.

Generations are JSON. Edits arrive as multipart as the SDKs send them (one image as field
`image`, several as repeated `image[]`, plus `mask` / `markup` files), or as JSON naming images
by reference. A refused prompt is answered 400 with code `moderation_blocked`. GPT image models
always return `b64_json` data: images of the requested `size` (`auto` is 1024x1024) and
`output_format`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.openai.base import OpenAIBase
from costguard.simulator.openai.errors import MODERATION_CATEGORY, error_body
from costguard.simulator.openai.usage import (
    OUTPUT_FORMATS,
    ImageCall,
    _json_images_count,
    parse_image_call,
)
from costguard.simulator.openai.wire import json_body, parse_multipart

if TYPE_CHECKING:
    import re

    from costguard.simulator.scenario import Scenario


class ImageRoutes(OpenAIBase):
    """The images endpoints, and the images response body batch results reuse."""

    def _images_body(
        self, call: ImageCall, seed: str, created: int, scenario: Scenario
    ) -> dict[str, Any]:
        """The images response: `n` images of the call's size and format, drawn as `scenario`
        says (pixel mode, padding)."""
        mime = OUTPUT_FORMATS[call.output_format]
        size = scenario.image_size(call.pixels)
        images = self.sim.images
        data = [
            {"b64_json": images.render_base64(f"{seed}/{i}", mime, size, scenario.image_bytes)}
            for i in range(call.n)
        ]
        return {
            "created": created,
            "background": call.background,
            "data": data,
            "output_format": call.output_format,
            "quality": call.quality,
            "size": call.size,
            "usage": call.usage(self.usage, scenario.input_image_tokens),
        }

    # -- synchronous images ------------------------------------------------------------------

    def images_generate(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/images/generations (JSON)."""
        body = json_body(request)
        call = parse_image_call(body, self.usage, edit=False)
        return self._sync_images(call)

    def images_edit(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/images/edits (multipart as the SDKs send it; JSON image references too)."""
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json_body(request)
            images = _json_images_count(body)
        else:
            fields = parse_multipart(request)
            body = {}
            for name, parts in fields.items():
                if name not in ("image", "image[]", "mask", "markup"):
                    value: Any = parts[0].text()
                    body[name] = int(value) if name == "n" and value.isdigit() else value
            images = len(fields.get("image", [])) + len(fields.get("image[]", []))
        call = parse_image_call(body, self.usage, edit=True, input_images=images)
        return self._sync_images(call)

    def _sync_images(self, call: ImageCall) -> SimResponse:
        position = self.sim.next_index("openai.images")
        request_id = self._request_id()
        if self.sim.scenario.refuses(position, call.prompt):
            body = error_body(
                "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
            )
            return SimResponse.json(body, 400, {"x-request-id": request_id})
        payload = self._images_body(call, f"openai/sync/{position}", self._now(), self.sim.scenario)
        return SimResponse.json(payload, 200, {"x-request-id": request_id})
