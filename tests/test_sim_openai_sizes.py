"""The OpenAI face's sizes: gpt-image-2 and its family at any valid `WxH`, billed by the
published rule; invalid sizes refused as the API refuses them; fixed-size models unchanged.

SDK tests run through the in-process transport only (`test_sim_openai.py` covers both
transports for the shared plumbing), with the clock stopped and moved by `sim.advance()`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from PIL import Image

from costguard.simulator import Simulator, simulate
from costguard.simulator.openai.usage import UsageTable
from costguard.simulator.scenario import Scenario, load_scenario

KEY = "sk-test-costguard"
RULE_MODELS = [
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
    "gpt-image-2.5-sunburst",
    "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-2.5-flare",
    "gpt-image-2.5-flare-2026-09-08",
    "gpt-image-2.6-sunburst",
    "gpt-image-2.6-flare",
]
INVALID = [
    ("1792x936", "Width and height must both be divisible by 16."),
    ("4096x2048", "The longest edge must be less than or equal to 3840."),
    ("3840x1088", "The aspect ratio (longest edge / shortest edge) must be less than or equal"),
    ("768x768", "Requested resolution is below the current minimum pixel budget."),
    ("3072x3072", "Requested resolution exceeds the current pixel budget."),
    ("1024", "Expected WIDTHxHEIGHT, for example '1824x1024'."),
    ("0x0", "Expected WIDTHxHEIGHT, for example '1824x1024'."),
]


@pytest.fixture
def client() -> Iterator[tuple[Simulator, OpenAI]]:
    """A stopped-clock simulator answering in process, and a strict OpenAI client."""
    with simulate("succeeded", time_scale=0) as sim:
        sdk = OpenAI(
            api_key=KEY, base_url="https://api.openai.com/v1", _strict_response_validation=True
        )
        yield sim, sdk
        sdk.close()


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "low", 196),
        ("1024x1024", "medium", 1756),
        ("1024x1024", "high", 7024),
        ("1024x1536", "low", 158),
        ("1024x1536", "medium", 1372),
        ("1024x1536", "high", 5488),
        ("1536x1024", "high", 5488),
        ("1792x1024", "high", 5063),
        ("3584x2048", "high", 12329),
        # measured on the live API (low quality), a probe of 2026-04-28
        ("768x1024", "low", 134),
        ("896x896", "low", 180),
        ("960x960", "low", 187),
        ("2048x2048", "low", 397),
        ("3840x2160", "low", 371),
        ("2160x3840", "low", 371),
        ("3072x2160", "low", 380),
    ],
)
def test_gpt_image_2_rule_gives_the_published_figures(size: str, quality: str, tokens: int) -> None:
    """The rule in usage.yaml reproduces OpenAI's calculator and measured figures exactly."""
    family = UsageTable.load().output_image_tokens["gpt-image-2"]
    assert family.any_size is not None
    assert family.tokens(size, quality) == tokens


def test_every_new_model_is_known_and_sized_like_gpt_image_2() -> None:
    """The 2.5 / 2.6 models and snapshots use the gpt-image-2 rule; the 1.5 snapshot is 1.5."""
    table = UsageTable.load()
    rule = table.output_image_tokens["gpt-image-2"]
    for model in RULE_MODELS:
        assert table.output_image_tokens[model] == rule
    assert (
        table.output_image_tokens["gpt-image-1.5-2025-12-16"]
        == table.output_image_tokens["gpt-image-1.5"]
    )
    assert "chatgpt-image-latest" in table.output_image_tokens


@pytest.mark.parametrize("model", RULE_MODELS)
def test_sync_generate_takes_a_custom_size(client: tuple[Simulator, OpenAI], model: str) -> None:
    """images.generate: any valid WxH, echoed in `size`, billed by the rule."""
    _, sdk = client
    result = sdk.images.generate(model=model, prompt="a red fox", size="1792x1024", quality="high")  # type: ignore[arg-type]
    assert result.size == "1792x1024"  # type: ignore[comparison-overlap]
    assert result.usage is not None
    assert result.usage.output_tokens == 5063


@pytest.mark.parametrize(("size", "message"), INVALID)
def test_invalid_custom_sizes_are_refused_naming_the_rule(
    client: tuple[Simulator, OpenAI], size: str, message: str
) -> None:
    """A size breaking a rule is a 400 invalid_value on `size` whose message states the rule."""
    _, sdk = client
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-2", prompt="x", size=size)  # type: ignore[arg-type]
    error = caught.value
    assert (error.code, error.param, error.type) == (
        "invalid_value",
        "size",
        "image_generation_user_error",
    )
    assert isinstance(error.body, dict)
    assert error.body["message"].startswith(f"Invalid size '{size}'. {message}")


def test_limits_themselves_are_accepted(client: tuple[Simulator, OpenAI]) -> None:
    """The edges of every limit are valid: 3:1, the pixel floor and ceiling, a 3840 edge."""
    _, sdk = client
    for size in ("2304x768", "1280x512", "3840x2160", "3840x1280"):
        result = sdk.images.generate(model="gpt-image-2", prompt="x", size=size, quality="low")  # type: ignore[arg-type]
        assert result.size == size  # type: ignore[comparison-overlap]


def test_fixed_size_models_still_refuse_other_sizes(client: tuple[Simulator, OpenAI]) -> None:
    """gpt-image-1 / 1.5 take their three sizes only: anything else lists them."""
    _, sdk = client
    for model in ("gpt-image-1", "gpt-image-1.5-2025-12-16"):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.images.generate(model=model, prompt="x", size="1792x1024")  # type: ignore[arg-type]
        assert caught.value.param == "size"
        assert "Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'" in (
            caught.value.message
        )


def test_sync_edit_takes_a_custom_size(client: tuple[Simulator, OpenAI]) -> None:
    """images.edit (multipart) on a 2.5 model: a custom size is billed by the rule."""
    _, sdk = client
    png = base64.b64decode(sdk.images.generate(model="gpt-image-1", prompt="x").data[0].b64_json)  # type: ignore[arg-type,index]
    result = sdk.images.edit(
        model="gpt-image-2.5-flare",
        prompt="make it blue",
        image=("a.png", png, "image/png"),
        size="3584x2048",  # type: ignore[arg-type]
        quality="high",
    )
    assert result.usage is not None
    assert result.usage.output_tokens == 12329
    with pytest.raises(openai.BadRequestError, match="divisible by 16"):
        sdk.images.edit(
            model="gpt-image-2.5-flare",
            prompt="make it blue",
            image=("a.png", png, "image/png"),
            size="1000x1000",  # type: ignore[arg-type]
        )


def _run_batch(sim: Simulator, sdk: OpenAI, endpoint: str, lines: list[dict[str, Any]]) -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file_id = sdk.files.create(file=("batch.jsonl", data), purpose="batch").id
    batch = sdk.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
    for _ in range(50):
        batch = sdk.batches.retrieve(batch.id)
        if batch.status == "completed":
            return batch
        sim.advance(1800)
    pytest.fail("the batch never completed")


@pytest.mark.parametrize("endpoint", ["/v1/images/generations", "/v1/images/edits"])
def test_batch_lines_take_custom_sizes_and_refuse_bad_ones(
    client: tuple[Simulator, OpenAI], endpoint: str
) -> None:
    """Batch lines: a valid custom size is billed by the rule, an invalid one is a 400 line;
    the batch's usage totals are the sum of its lines."""
    sim, sdk = client
    sizes = {"ok-0": "1792x1024", "ok-1": "3584x2048", "bad": "1792x936"}
    images = {"images": [{"file_id": "file-x"}]} if endpoint.endswith("edits") else {}
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": endpoint,
            "body": {
                "model": "gpt-image-2",
                "prompt": "a fox",
                "size": size,
                "quality": "high",
                **images,
            },
        }
        for custom_id, size in sizes.items()
    ]
    batch = _run_batch(sim, sdk, endpoint, lines)
    output = [json.loads(x) for x in sdk.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in sdk.files.content(batch.error_file_id).text.splitlines()]
    tokens = {
        line["custom_id"]: line["response"]["body"]["usage"]["output_tokens"] for line in output
    }
    assert tokens == {"ok-0": 5063, "ok-1": 12329}
    [bad] = errors
    assert bad["custom_id"] == "bad"
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["param"] == "size"
    assert "divisible by 16" in bad["response"]["body"]["error"]["message"]
    assert batch.usage.output_tokens == 5063 + 12329
    assert batch.request_counts.completed == 2
    assert batch.request_counts.failed == 1


def test_requested_pixels_follow_a_custom_size() -> None:
    """Under `image_pixels: requested`, the image has the custom size asked for."""
    scenario = load_scenario("succeeded").model_copy(update={"image_pixels": "requested"})
    assert isinstance(scenario, Scenario)
    with simulate(scenario, time_scale=0):
        sdk = OpenAI(api_key=KEY, base_url="https://api.openai.com/v1")
        result = sdk.images.generate(
            model="gpt-image-2",
            prompt="x",
            size="1280x720",  # type: ignore[arg-type]
            quality="low",
            output_format="jpeg",
        )
        sdk.close()
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))  # type: ignore[index]
    assert image.size == (1280, 720)
