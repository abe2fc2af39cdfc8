"""The `models.generateContent` route handler."""

from __future__ import annotations

import re

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.gemini.base import FaceBase
from costguard.simulator.gemini.content import (
    MAX_INLINE_BYTES,
    generate_response,
    prompt_text,
    refusal_for,
    request_key,
    validate_request,
)
from costguard.simulator.gemini.errors import ApiError, payload_too_large


class ModelRoutes(FaceBase):
    """Synchronous image generation."""

    def _generate_content(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        if len(request.body) > MAX_INLINE_BYTES:
            raise ApiError(400, payload_too_large(MAX_INLINE_BYTES))
        model = self._model_or_404(match, "generateContent")
        body = request.json()
        problem = validate_request(model, body, self.table)
        if problem:
            raise ApiError(400, problem)
        position = self._sim.next_index("gemini.generateContent")
        scenario = self._sim.scenario_for(None)
        refusal = refusal_for(scenario, position, prompt_text(body))
        seed = f"sync:{model}:{position}:{prompt_text(body)}"
        response = generate_response(
            model,
            body,
            refusal=refusal,
            seed=seed,
            image_for=self._images(scenario),
            table=self.table,
            key=request_key(None, body, model),
            thinking=scenario.thinking_tokens,
        )
        return SimResponse.json(response)
