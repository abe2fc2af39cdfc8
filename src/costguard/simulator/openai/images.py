"""Synchronous image routes: POST /v1/images/generations and /v1/images/edits.

Generations are JSON. Edits arrive as multipart as the SDKs send them (one image as field
`image`, several as repeated `image[]`, plus `mask` / `markup` files), or as JSON naming images
by reference. A refused prompt is answered 400 with code `moderation_blocked`. GPT image models
always return `b64_json` data: images of the requested `size` (`auto` is 1024x1024) and
`output_format`. With `stream: true` the answer is `text/event-stream`: `partial_images`
partial-image events, then a completed event, per image (`image_generation.*` for
generations, `image_edit.*` for edits). `POST /v1/images/variations` is retired: it answers
as the API does for its retired models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.openai.base import OpenAIBase
from costguard.simulator.openai.errors import MODERATION_CATEGORY, api_error, error_body
from costguard.simulator.openai.params import VARIATION_MODELS, retired
from costguard.simulator.openai.usage import (
    OUTPUT_FORMATS,
    ImageCall,
    _json_images_count,
    parse_image_call,
)
from costguard.simulator.openai.wire import json_body, parse_multipart
from costguard.simulator.splice import dump

if TYPE_CHECKING:
    import re
    from collections.abc import Iterator

    from costguard.simulator.multipart import FormPart
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
            "background": call.background,  # `auto` resolved: what was drawn
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
        return self._sync_images(call, "image_generation")

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
                    numeric = name in _INTEGER_FIELDS and value.isdigit()
                    body[name] = int(value) if numeric else value
            images = len(fields.get("image", [])) + len(fields.get("image[]", []))
            _check_image_types(fields)
        call = parse_image_call(body, self.usage, edit=True, input_images=images)
        return self._sync_images(call, "image_edit")

    def images_variation(self, request: SimRequest, match: re.Match[str]) -> SimResponse:  # noqa: ARG002
        """POST /v1/images/variations: retired ("no longer available", SDK 3.57), answered as
        the API answers its retired models: 404 `model_not_found` naming the model asked
        (default dall-e-2)."""
        model = "dall-e-2"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields = parse_multipart(request)
            if fields.get("model"):
                model = fields["model"][0].text() or model
        if model in VARIATION_MODELS:
            raise retired(model)
        raise api_error(404, "404_model", model=model)

    def _sync_images(self, call: ImageCall, event_prefix: str) -> SimResponse:
        position = self.sim.next_index("openai.images")
        request_id = self._request_id()
        if self.sim.scenario.refuses(position, call.prompt):
            body = error_body(
                "400_moderation_blocked", request_id=request_id, category=MODERATION_CATEGORY
            )
            return SimResponse.json(body, 400, {"x-request-id": request_id})
        seed = f"openai/sync/{position}"
        if call.stream:
            events = self._stream_events(call, seed, event_prefix)
            headers = {"content-type": "text/event-stream; charset=utf-8"}
            return SimResponse(200, {**headers, "x-request-id": request_id}, events)
        payload = self._images_body(call, seed, self._now(), self.sim.scenario)
        return SimResponse.json(payload, 200, {"x-request-id": request_id})

    def _stream_events(self, call: ImageCall, seed: str, prefix: str) -> Iterator[bytes]:
        """Server-sent events of a streamed call: for each image, its partial images
        (`<prefix>.partial_image`, index 0 up), then `<prefix>.completed` with the usage."""
        scenario = self.sim.scenario
        mime = OUTPUT_FORMATS[call.output_format]
        size = scenario.image_size(call.pixels)
        images = self.sim.images
        created = self._now()
        common = {
            "background": call.background,
            "created_at": created,
            "output_format": call.output_format,
            "quality": call.quality,
            "size": call.size,
        }
        usage = call.usage(self.usage, scenario.input_image_tokens)
        pad_to = scenario.image_bytes

        def events() -> Iterator[bytes]:  # drawn while the answer streams
            for i in range(call.n):
                for k in range(call.partial_images):
                    b64 = images.render_base64(f"{seed}/{i}/partial/{k}", mime, size)
                    event = {"type": f"{prefix}.partial_image", "b64_json": b64, **common}
                    event["partial_image_index"] = k
                    yield _sse(event)
                b64 = images.render_base64(f"{seed}/{i}", mime, size, pad_to)
                done = {"type": f"{prefix}.completed", "b64_json": b64, **common, "usage": usage}
                yield _sse(done)

        return events()


IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
"""The Content-Types an edit's image parts may carry."""


def _check_image_types(fields: dict[str, list[FormPart]]) -> None:
    """400 `unsupported_file_mimetype` for an image part that is not declared an image (the
    API trusts the part's Content-Type; the SDKs send `application/octet-stream` for bare
    bytes)."""
    named = [("image", part) for part in fields.get("image", [])]
    named += [(f"image[{i}]", part) for i, part in enumerate(fields.get("image[]", []))]
    for param, part in named:
        mimetype = part.content_type.split(";", 1)[0].strip().lower()
        if mimetype not in IMAGE_TYPES:
            raise api_error(
                400,
                "400_unsupported_file_mimetype",
                param=param,
                mimetype=mimetype or "application/octet-stream",
            )


_INTEGER_FIELDS = ("n", "partial_images", "output_compression")
"""Multipart fields the API reads as integers."""


def _sse(event: dict[str, Any]) -> bytes:
    """One server-sent event named by the payload's `type`."""
    return f"event: {event['type']}\ndata: ".encode() + dump(event) + b"\n\n"
