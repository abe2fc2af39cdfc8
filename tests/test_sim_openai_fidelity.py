"""The OpenAI face answers as the API does where OpenAI's own SDK tests found it did not.

Each behaviour is driven through the real `openai` SDK, in-process and over a real socket:
the spec's default models (a retired one answers as retired), the retired variations
endpoint, `background: auto` resolved, streamed images as server-sent events, and the
validation the API does (enums, unknown parameters, image parts that are not images).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image

from costguard.simulator import Simulator, simulate
from costguard.simulator.openai.params import PARTIAL_IMAGE_TOKENS
from costguard.simulator.server import serve_in_thread

KEY = "sk-test-fidelity"
DEPRECATED = "has been deprecated, learn more here: https://platform.openai.com/docs/deprecations"
MEDIUM_1024 = 1056  # gpt-image-1 / 1.5 output tokens, 1024x1024 medium (fixtures/openai/usage.yaml)


@dataclass
class Env:
    """A simulator and a strict SDK client pointed at it."""

    sim: Simulator
    client: OpenAI


@pytest.fixture(params=["mock", "server"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """The simulator in-process (respx) or behind a threaded HTTP server."""
    with contextlib.ExitStack() as stack:
        if request.param == "mock":
            sim = stack.enter_context(simulate("succeeded", time_scale=0))
            base_url = "https://api.openai.com/v1"
        else:
            sim = Simulator("succeeded", time_scale=0)
            base_url = stack.enter_context(serve_in_thread(sim)) + "/v1"
        client = OpenAI(api_key=KEY, base_url=base_url, _strict_response_validation=True)
        stack.callback(client.close)
        yield Env(sim, client)
        assert not sim.unmatched, sim.unmatched
        assert not sim.failures, sim.failures


def png_bytes(env: Env) -> bytes:
    """A real PNG the simulator drew."""
    b64 = env.client.images.generate(model="gpt-image-1.5", prompt="x").data[0].b64_json  # type: ignore[index]
    return base64.b64decode(b64 or "")


# -- default models and retirements --------------------------------------------------------------


def test_generate_without_model_is_the_retired_default(env: Env) -> None:
    """The spec's default for images.generate is dall-e-2, retired: 404 model_not_found."""
    with pytest.raises(openai.NotFoundError) as caught:
        env.client.images.generate(prompt="a lighthouse")
    assert caught.value.code == "model_not_found"
    assert caught.value.body["message"] == f"The model `dall-e-2` {DEPRECATED}"
    with pytest.raises(openai.NotFoundError, match="`dall-e-3` has been deprecated"):
        env.client.images.generate(prompt="a lighthouse", model="dall-e-3")


def test_generate_without_model_but_a_gpt_parameter_uses_a_gpt_model(env: Env) -> None:
    """A GPT-image-only parameter makes the default a GPT image model (billed as gpt-image-1)."""
    result = env.client.images.generate(prompt="a lighthouse", output_format="webp")
    assert result.output_format == "webp"
    assert result.usage is not None
    assert result.usage.output_tokens == MEDIUM_1024


def test_edit_without_model_uses_gpt_image_1_5(env: Env) -> None:
    """The spec's default for images.edit is gpt-image-1.5 (served)."""
    png = png_bytes(env)
    result = env.client.images.edit(prompt="make it blue", image=("a.png", png, "image/png"))
    assert result.usage is not None
    assert result.usage.output_tokens == MEDIUM_1024
    assert result.usage.input_tokens_details.image_tokens == 194


def test_variations_answer_as_retired(env: Env) -> None:
    """POST /v1/images/variations is a served route answering the retirement, not a 404
    'not simulated'."""
    png = png_bytes(env)
    with (
        pytest.warns(DeprecationWarning, match="deprecated"),
        pytest.raises(openai.NotFoundError) as caught,
    ):
        env.client.images.create_variation(image=("a.png", png, "image/png"))
    assert caught.value.body["message"] == f"The model `dall-e-2` {DEPRECATED}"
    with (
        pytest.warns(DeprecationWarning, match="deprecated"),
        pytest.raises(openai.NotFoundError) as other,
    ):
        env.client.images.create_variation(image=png, model="gpt-image-1.5")
    assert "`gpt-image-1.5` does not exist" in other.value.message
    assert env.sim.calls.count("openai.images.variation") == 2


# -- what the response says ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "answered"),
    [("auto", "opaque"), ("opaque", "opaque"), ("transparent", "transparent")],
)
def test_background_is_what_was_drawn(env: Env, asked: str, answered: str) -> None:
    """`background: auto` is resolved in the answer (the spec's enum has no `auto`)."""
    result = env.client.images.generate(model="gpt-image-1.5", prompt="a cube", background=asked)  # type: ignore[arg-type]
    assert result.background == answered


def test_generate_streams_partial_then_completed_events(env: Env) -> None:
    """stream=True answers text/event-stream: partial images, then the final image with usage
    (each partial image adds 100 output tokens)."""
    raw = env.client.images.with_raw_response.generate(
        model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=2, quality="low"
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    raw.parse().close()
    stream = env.client.images.generate(
        model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=2, quality="low"
    )
    events = list(stream)
    assert [type(e) for e in events] == [
        ImageGenPartialImageEvent,
        ImageGenPartialImageEvent,
        ImageGenCompletedEvent,
    ]
    partial = [e for e in events if isinstance(e, ImageGenPartialImageEvent)]
    assert [e.partial_image_index for e in partial] == [0, 1]
    done = events[-1]
    assert isinstance(done, ImageGenCompletedEvent)
    assert (done.size, done.quality, done.background, done.output_format) == (
        "1024x1024",
        "low",
        "opaque",
        "png",
    )
    assert done.usage.output_tokens == 272 + 2 * PARTIAL_IMAGE_TOKENS
    assert Image.open(io.BytesIO(base64.b64decode(done.b64_json))).format == "PNG"
    assert len({e.b64_json for e in events}) == 3  # three distinct images


def test_edit_streams_image_edit_events(env: Env) -> None:
    """An edit streams `image_edit.*` events (multipart `stream`, `partial_images` fields)."""
    png = png_bytes(env)
    stream = env.client.images.edit(
        model="gpt-image-1.5",
        prompt="make it blue",
        image=("a.png", png, "image/png"),
        stream=True,
        partial_images=1,
    )
    events = list(stream)
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]
    done = events[-1]
    assert isinstance(done, ImageEditCompletedEvent)
    assert done.usage.input_tokens_details.image_tokens == 194


def test_streamed_sse_wire_format(env: Env) -> None:
    """Each event is `event: <type>` then `data: <json>`, as the API sends them."""
    with env.client.images.with_streaming_response.generate(
        model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=1
    ) as response:
        text = b"".join(response.iter_bytes()).decode()
    blocks = [block for block in text.split("\n\n") if block]
    kinds = [block.split("\n")[0] for block in blocks]
    assert kinds == ["event: image_generation.partial_image", "event: image_generation.completed"]
    data = [json.loads(block.split("\n")[1].removeprefix("data: ")) for block in blocks]
    assert [d["type"] for d in data] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]


# -- validation as strict as the API's ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "param", "code"),
    [
        ({"moderation": "strict"}, "moderation", "invalid_value"),
        ({"background": "none"}, "background", "invalid_value"),
        ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value"),
        ({"response_format": "url"}, "response_format", "unknown_parameter"),
        ({"response_format": "b64_json"}, "response_format", "unknown_parameter"),
        ({"partial_images": 4, "stream": True}, "partial_images", "invalid_value"),
        ({"extra_body": {"seed": 7}}, "seed", "unknown_parameter"),
    ],
)
def test_generate_rejects_what_the_api_rejects(
    env: Env, options: dict[str, Any], param: str, code: str
) -> None:
    """Each of these is a 400 naming the parameter, as the API answers it."""
    with pytest.raises(openai.BadRequestError) as caught:
        env.client.images.generate(model="gpt-image-1.5", prompt="a cube", **options)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_edit_rejects_unknown_fields_and_non_image_parts(env: Env) -> None:
    """Multipart edits: an unknown field is `unknown_parameter`; an image part sent as bare
    bytes (application/octet-stream) is `unsupported_file_mimetype`, as the API answers."""
    png = png_bytes(env)
    with pytest.raises(openai.BadRequestError) as unknown:
        env.client.images.edit(
            model="gpt-image-1.5",
            prompt="blue",
            image=("a.png", png, "image/png"),
            extra_body={"strength": "0.5"},
        )
    assert (unknown.value.param, unknown.value.code) == ("strength", "unknown_parameter")
    with pytest.raises(openai.BadRequestError) as bare:
        env.client.images.edit(model="gpt-image-1.5", prompt="blue", image=b"Example data")
    assert bare.value.code == "unsupported_file_mimetype"
    assert bare.value.body["message"] == (
        "Invalid file 'image': unsupported mimetype ('application/octet-stream'). "
        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
    )
    with pytest.raises(openai.BadRequestError) as listed:
        env.client.images.edit(
            model="gpt-image-1.5", prompt="blue", image=[("a.png", png, "image/png"), png]
        )
    assert listed.value.param == "image[1]"


def test_batch_lines_are_validated_the_same_way(env: Env) -> None:
    """A batch line with an unknown parameter is a 400 error-file line; the valid ones succeed."""
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1.5", "prompt": "a fox", **extra},
        }
        for i, extra in enumerate([{}, {"style": "vivid", "seed": 1}, {"background": "auto"}])
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file_id = env.client.files.create(file=("b.jsonl", data), purpose="batch").id
    batch = env.client.batches.create(
        input_file_id=file_id, endpoint="/v1/images/generations", completion_window="24h"
    )
    env.sim.advance(24 * 3600)
    batch = env.client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    errors = env.client.files.content(batch.error_file_id or "").text.splitlines()
    assert [json.loads(line)["custom_id"] for line in errors] == ["c1"]
    body = json.loads(errors[0])["response"]["body"]["error"]
    assert (body["code"], body["param"]) == ("unknown_parameter", "seed")
    output = env.client.files.content(batch.output_file_id or "").text.splitlines()
    backgrounds = {json.loads(x)["custom_id"]: json.loads(x)["response"]["body"] for x in output}
    assert {k: v["background"] for k, v in backgrounds.items()} == {"c0": "opaque", "c2": "opaque"}


def test_batch_lines_asking_to_stream_are_answered_whole(env: Env) -> None:
    """A batch line with `stream` and `partial_images` gets one ImagesResponse, billed without
    partial images (nothing was streamed)."""
    body = {"model": "gpt-image-1.5", "prompt": "a fox", "quality": "low", "stream": True}
    line = {"custom_id": "s", "method": "POST", "url": "/v1/images/generations"}
    data = (json.dumps({**line, "body": {**body, "partial_images": 2}}) + "\n").encode()
    file_id = env.client.files.create(file=("s.jsonl", data), purpose="batch").id
    batch = env.client.batches.create(
        input_file_id=file_id, endpoint="/v1/images/generations", completion_window="24h"
    )
    env.sim.advance(24 * 3600)
    batch = env.client.batches.retrieve(batch.id)
    (output,) = env.client.files.content(batch.output_file_id or "").text.splitlines()
    answer = json.loads(output)["response"]["body"]
    assert answer["usage"]["output_tokens"] == 272
    assert batch.usage is not None
    assert batch.usage.output_tokens == 272
