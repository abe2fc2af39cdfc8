"""Per-request usage that varies: the scenario fields `thinking_tokens` (Gemini) and
`input_image_tokens` (OpenAI edits), drawn per request key from a clipped log-normal."""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types
from openai import OpenAI

from costguard.simulator import Simulator
from costguard.simulator.mock import mock_transport
from costguard.simulator.scenario import (
    Scenario,
    TokenSpread,
    UnknownScenarioError,
    load_scenario,
)

KEY = "sim-key"
PRO = "gemini-3-pro-image"
SPREAD = TokenSpread(median=400, max=4000)


def with_fields(**fields: Any) -> Scenario:
    """The `succeeded` scenario with `fields` set."""
    return load_scenario("succeeded").model_copy(update=fields)


def gemini(sim: Simulator) -> genai.Client:
    """A google-genai client (answered in process while `mock_transport(sim)` is active)."""
    return genai.Client(api_key=KEY)


@pytest.fixture
def thinking_sim() -> Iterator[Simulator]:
    """A stopped-clock simulator whose scenario draws Gemini thinking tokens, in process."""
    sim = Simulator(with_fields(thinking_tokens=SPREAD), time_scale=0)
    with mock_transport(sim):
        yield sim


# -- the draw ---------------------------------------------------------------------------------


def test_draws_are_deterministic_per_key_and_vary_across_keys() -> None:
    """The same key draws the same count; different keys and different figures differ."""
    assert SPREAD.draw("req-1", "thinking_tokens") == SPREAD.draw("req-1", "thinking_tokens")
    counts = {SPREAD.draw(f"req-{i}", "thinking_tokens") for i in range(50)}
    assert len(counts) > 40
    pairs = [(SPREAD.draw(f"k{i}", "a"), SPREAD.draw(f"k{i}", "b")) for i in range(20)]
    assert any(a != b for a, b in pairs)


def test_draws_have_the_median_and_never_pass_max() -> None:
    """Over 200 keys the median is close to the one asked, no draw exceeds max, none is < 0,
    and the distribution is skewed (mean above median)."""
    spread = TokenSpread(median=400, max=900)
    counts = [spread.draw(f"key-{i}", "thinking_tokens") for i in range(200)]
    assert 340 <= statistics.median(counts) <= 460
    assert max(counts) <= 900
    assert min(counts) >= 0
    assert max(counts) == 900  # the tail is clipped
    unclipped = [SPREAD.draw(f"key-{i}", "thinking_tokens") for i in range(200)]
    assert statistics.mean(unclipped) > statistics.median(unclipped)


def test_zero_median_always_draws_zero() -> None:
    """median 0 is a model that does not think: every draw is 0."""
    spread = TokenSpread(median=0, max=10)
    assert {spread.draw(str(i), "x") for i in range(20)} == {0}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("{median: 500, max: 100}", "thinking_tokens: Value error, median (500) must not exceed"),
        ("{median: -1, max: 100}", "thinking_tokens.median: Input should be greater than or"),
        ("{median: 10}", "thinking_tokens.max: Field required"),
        ("{median: 10, max: 20, mean: 3}", "thinking_tokens.mean: Extra inputs are not permitted"),
        ("400", "thinking_tokens: Input should be a valid dictionary"),
    ],
)
def test_bad_spread_is_a_one_line_error_naming_file_and_field(
    tmp_path: Path, value: str, error: str
) -> None:
    """A bad `thinking_tokens` fails loading with the scenario file and the field, one line."""
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\ndescription: d\nthinking_tokens: {value}\n", encoding="utf-8")
    with pytest.raises(UnknownScenarioError) as caught:
        load_scenario(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid scenario: {error}")
    assert "\n" not in message


def test_input_image_tokens_field_is_validated_too(tmp_path: Path) -> None:
    """`input_image_tokens` takes the same shape, with the same errors."""
    path = tmp_path / "edits.yaml"
    path.write_text(
        "name: edits\ndescription: d\ninput_image_tokens: {median: 3050, max: 8000}\n",
        encoding="utf-8",
    )
    assert load_scenario(str(path)).input_image_tokens == TokenSpread(median=3050, max=8000)
    path.write_text("name: e\ndescription: d\ninput_image_tokens: {max: 8}\n", encoding="utf-8")
    with pytest.raises(UnknownScenarioError, match=r"input_image_tokens\.median: Field required"):
        load_scenario(str(path))


# -- Gemini -----------------------------------------------------------------------------------


def _file_batch(client: genai.Client, sim: Simulator, tmp_path: Path, keys: list[str]) -> Any:
    lines = [
        {"key": key, "request": {"contents": [{"parts": [{"text": f"a fox {key}"}]}]}}
        for key in keys
    ]
    path = tmp_path / f"in-{len(sim.jobs)}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    return client.batches.create(model=PRO, src=uploaded.name)


def _thoughts(client: genai.Client, job_name: str) -> dict[str, dict[str, int]]:
    job = client.batches.get(name=job_name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None
    data = client.files.download(file=job.dest.file_name or "")
    usage = {}
    for raw in data.decode().splitlines():
        line = json.loads(raw)
        usage[line["key"]] = line["response"]["usageMetadata"]
    return usage


def test_gemini_thinking_is_drawn_per_key_and_the_same_on_rerun_and_resume(
    thinking_sim: Simulator, tmp_path: Path
) -> None:
    """Each result's thoughtsTokenCount is the draw for its key and totals include it; a
    second batch with the same keys and a reloaded simulator report the same figures."""
    sim = thinking_sim
    client = gemini(sim)
    keys = [f"img-{i}" for i in range(12)]
    first = _file_batch(client, sim, tmp_path, keys)
    saved = sim.save(tmp_path / "sim.json")
    sim.advance(10 * 3600)
    usage = _thoughts(client, first.name or "")
    assert {k: u["thoughtsTokenCount"] for k, u in usage.items()} == {
        k: SPREAD.draw(k, "thinking_tokens") for k in keys
    }
    assert len({u["thoughtsTokenCount"] for u in usage.values()}) > 6
    for u in usage.values():
        total = u["promptTokenCount"] + u["candidatesTokenCount"] + u["thoughtsTokenCount"]
        assert u["totalTokenCount"] == total

    rerun = _file_batch(client, sim, tmp_path, list(reversed(keys)))
    sim.advance(10 * 3600)
    assert _thoughts(client, rerun.name or "") == usage

    loaded = Simulator.load(saved)
    loaded.advance(10 * 3600)
    with mock_transport(loaded):
        assert _thoughts(genai.Client(api_key=KEY), first.name or "") == usage


def test_gemini_inline_and_sync_draw_too(thinking_sim: Simulator) -> None:
    """Inline requests draw by `metadata.key`; a sync call by its body, the same each time;
    a model that does not think still reports no thoughts."""
    client = gemini(thinking_sim)
    job = client.batches.create(
        model=PRO,
        src=[{"contents": f"p{i}", "metadata": {"key": f"in-{i}"}} for i in range(4)],
    )
    thinking_sim.advance(10 * 3600)
    done = client.batches.get(name=job.name or "")
    assert done.dest is not None
    responses = done.dest.inlined_responses or []
    got = [r.response.usage_metadata.thoughts_token_count for r in responses]  # type: ignore[union-attr]
    assert got == [SPREAD.draw(f"in-{i}", "thinking_tokens") for i in range(4)]

    sync = [client.models.generate_content(model=PRO, contents="a fox") for _ in range(2)]
    counts = [r.usage_metadata.thoughts_token_count for r in sync]  # type: ignore[union-attr]
    assert counts[0] == counts[1]
    assert counts[0] is not None
    flash = client.models.generate_content(model="gemini-2.5-flash-image", contents="a fox")
    assert flash.usage_metadata is not None
    assert flash.usage_metadata.thoughts_token_count is None


def test_gemini_without_the_field_keeps_the_fixed_figure() -> None:
    """No `thinking_tokens` in the scenario: every request reports the model's fixed 400."""
    sim = Simulator("succeeded", time_scale=0)
    with mock_transport(sim):
        client = genai.Client(api_key=KEY)
        counts = {
            client.models.generate_content(
                model=PRO, contents=f"fox {i}"
            ).usage_metadata.thoughts_token_count  # type: ignore[union-attr]
            for i in range(3)
        }
    assert counts == {400}


# -- OpenAI edits -----------------------------------------------------------------------------


def test_openai_edit_input_image_tokens_are_drawn_per_custom_id(tmp_path: Path) -> None:
    """With `input_image_tokens`, a batch edit line bills one draw per input image, keyed by
    its custom_id, and the batch usage sums the lines; a sync edit draws by its body."""
    spread = TokenSpread(median=3050, max=8000)
    sim = Simulator(with_fields(input_image_tokens=spread), time_scale=0)
    with mock_transport(sim):
        sdk = OpenAI(api_key="sk-test", base_url="https://api.openai.com/v1")
        lines = [
            {
                "custom_id": f"edit-{i}",
                "method": "POST",
                "url": "/v1/images/edits",
                "body": {
                    "model": "gpt-image-2",
                    "prompt": "make it blue",
                    "images": [{"file_id": "file-a"}, {"file_id": "file-b"}],
                    "quality": "low",
                },
            }
            for i in range(6)
        ]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        file_id = sdk.files.create(file=("edits.jsonl", data), purpose="batch").id
        batch = sdk.batches.create(
            input_file_id=file_id, endpoint="/v1/images/edits", completion_window="24h"
        )
        sim.advance(10 * 3600)
        batch = sdk.batches.retrieve(batch.id)
        output = sdk.files.content(batch.output_file_id or "").text.splitlines()
        png = sdk.images.generate(model="gpt-image-1", prompt="x").data[0].b64_json  # type: ignore[index]
        assert png is not None
        image = ("a.png", base64.b64decode(png), "image/png")
        sync = [
            sdk.images.edit(model="gpt-image-2", prompt="blue", image=image, quality="low")
            for _ in range(2)
        ]
        sdk.close()
    billed = {}
    for raw in output:
        line = json.loads(raw)
        billed[line["custom_id"]] = line["response"]["body"]["usage"]
    for custom_id, usage in billed.items():
        expected = sum(spread.draw(custom_id, f"input_image_tokens:{i}") for i in range(2))
        assert usage["input_tokens_details"]["image_tokens"] == expected
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(u["input_tokens"] for u in billed.values())
    tokens = [r.usage.input_tokens_details.image_tokens for r in sync]  # type: ignore[union-attr]
    assert tokens[0] == tokens[1] != 194
