"""The Gemini face of the simulator, driven by the real google-genai SDK (and @google/genai).

Every SDK test runs through both transports of the real `Simulator`: the in-process respx
mock and the threaded HTTP server. Simulated time is advanced explicitly (the simulator runs
at a negligible time scale here), so no test depends on wall time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
import yaml
from google import genai
from google.genai import errors, types
from PIL import Image

from costguard.resources import data_dir
from costguard.simulator import Simulator
from costguard.simulator.core import SimRequest
from costguard.simulator.gemini import GeminiFace
from costguard.simulator.gemini.content import (
    MAX_INLINE_BYTES,
    REFUSAL_KINDS,
    refusal_for,
    text_tokens,
)
from costguard.simulator.gemini.results import RESULT_CHUNK_BYTES
from costguard.simulator.gemini.usage import load_usage_table
from costguard.simulator.mock import mock_transport
from costguard.simulator.scenario import REFUSE_MARKER, Scenario
from costguard.simulator.server import serve_in_thread

KEY = "sim-key"
MODEL = "gemini-2.5-flash-image"
GOOGLE = "https://generativelanguage.googleapis.com"
SCENARIOS = ["succeeded", "expired", "cancelled", "failed", "refusals", "flaky", "slow", "shuffled"]
FACES = ["mock", "server"]
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Harness: a simulator behind one of its two transports
# ---------------------------------------------------------------------------------------------


@dataclass
class Gem:
    """A simulator reachable at `base_url`, and helpers to talk to it."""

    sim: Simulator
    base_url: str
    face: str

    def client(self, *, api_version: str | None = None, key: str = KEY) -> genai.Client:
        """A real google-genai client pointed at the simulator."""
        options = types.HttpOptions(base_url=self.base_url, api_version=api_version)
        return genai.Client(api_key=key, http_options=options)

    def http(self) -> httpx2.Client:
        """A raw HTTP client for wire-level checks (same transport as the SDK)."""
        return httpx2.Client(base_url=self.base_url, timeout=30)

    @property
    def gemini(self) -> GeminiFace:
        """The simulator's Gemini face."""
        face = self.sim.faces["gemini"]
        assert isinstance(face, GeminiFace)
        return face


@pytest.fixture(params=FACES)
def gem(request: pytest.FixtureRequest) -> Iterator[Gem]:
    """A fresh simulator (key `sim-key` only), served in-process or over a real socket."""
    sim = Simulator("succeeded", api_keys=[KEY], time_scale=1e-6)
    with serving(sim, request.param) as base_url:
        yield Gem(sim, base_url, request.param)


@pytest.fixture
def mock_gem() -> Iterator[Gem]:
    """A fresh simulator behind the in-process transport only."""
    sim = Simulator("succeeded", api_keys=[KEY], time_scale=1e-6)
    with serving(sim, "mock") as base_url:
        yield Gem(sim, base_url, "mock")


@contextlib.contextmanager
def serving(sim: Simulator, face: str) -> Iterator[str]:
    """Serve `sim` in-process (respx) or on a threaded local HTTP server; yield the base URL."""
    if face == "mock":
        with mock_transport(sim):
            yield GOOGLE  # the SDK's own default host, answered in-process
    else:
        with serve_in_thread(sim) as base_url:
            yield base_url


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def retrying(call: Callable[[], T], attempts: int = 6) -> T:
    """Call `call`, retrying on 429/503 as a well-behaved client does (flaky scenario)."""
    for attempt in range(attempts):
        try:
            return call()
        except errors.APIError as exc:
            if exc.code not in (429, 503) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def poll(gem: Gem, client: genai.Client, name: str, step: float) -> tuple[Any, list[str]]:
    """Get the job until it is done, advancing simulated time; return it and the states seen."""
    seen: list[str] = []
    for _ in range(500):
        job = retrying(lambda: client.batches.get(name=name))
        state = job.state.name
        if not seen or seen[-1] != state:
            seen.append(state)
        if job.done:
            return job, seen
        gem.sim.advance(step)
    raise AssertionError(f"{name} never finished; states {seen}")


def decode_image(data: bytes) -> tuple[int, int]:
    """Decode image bytes with Pillow; return the size (fails on anything not an image)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def jsonl_file(tmp_path: Path, lines: list[dict[str, Any]], name: str = "input.jsonl") -> Path:
    """Write `lines` as a JSONL file."""
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def prompts(count: int) -> list[str]:
    """Distinct prompts; #1 carries the refusal marker (refused under every scenario)."""
    return [f"a red fox, study {i}" + (f" {REFUSE_MARKER}" if i == 1 else "") for i in range(count)]


@dataclass(frozen=True)
class Expected:
    """What a scenario should produce for a batch of `count` requests."""

    state: str
    kept: int
    order: list[int]
    """Input positions in result order."""


def expected(scenario: Scenario, count: int) -> Expected:
    """The outcome the scenario file describes for the Gemini face."""
    if scenario.terminal == "succeeded":
        return Expected("JOB_STATE_SUCCEEDED", count, list(scenario.order(count)))
    if scenario.terminal == "cancelled":
        kept = int(count * scenario.completed_fraction)
        return Expected("JOB_STATE_CANCELLED", kept, list(scenario.order(kept)))
    state = "JOB_STATE_EXPIRED" if scenario.terminal == "expired" else "JOB_STATE_FAILED"
    return Expected(state, 0, [])


def check_response(
    response: types.GenerateContentResponse, scenario: Scenario, position: int, prompt: str
) -> None:
    """One result is an image, or the refusal the documented rule gives at this position."""
    kind = refusal_for(scenario, position, prompt)
    assert (kind is not None) == scenario.refuses(position, prompt)
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == text_tokens(prompt)
    if kind is None:
        candidate = (response.candidates or [])[0]
        assert candidate.finish_reason == types.FinishReason.STOP
        images = [p.inline_data for p in response.parts or [] if p.inline_data]
        assert len(images) == 1
        assert images[0].mime_type == "image/png"
        assert decode_image(images[0].data or b"")[0] > 0
        assert usage.candidates_tokens_details is not None
        by_modality = {d.modality: d.token_count for d in usage.candidates_tokens_details}
        assert by_modality[types.MediaModality.IMAGE] == 1290
        assert sum(by_modality.values()) == usage.candidates_token_count
    elif kind == "PROMPT_BLOCKED":
        assert not response.candidates
        assert response.prompt_feedback is not None
        assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    else:
        candidate = (response.candidates or [])[0]
        assert candidate.finish_reason == types.FinishReason(kind)
        parts = candidate.content.parts if candidate.content else None
        assert not [p for p in parts or [] if p.inline_data]
    total = (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0)
    assert usage.total_token_count == total + (usage.thoughts_token_count or 0)


# ---------------------------------------------------------------------------------------------
# Full cycles, every scenario, both transports
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_batch_cycle_per_scenario(gem: Gem, scenario_name: str, tmp_path: Path) -> None:
    """Inline and file batches run create -> poll -> collect as the scenario says, via the SDK."""
    scenario = gem.sim.scenario_named(scenario_name)
    client = gem.client()
    count = 8
    texts = prompts(count)
    want = expected(scenario, count)
    step = (scenario.pending_s + scenario.running_s) / 6 or 60.0

    inline_src = [
        {
            "contents": text,
            "metadata": {"key": f"k{i}"},
            "config": {"response_modalities": ["IMAGE"]},
        }
        for i, text in enumerate(texts)
    ]
    job = retrying(
        lambda: client.batches.create(
            model=MODEL,
            src=inline_src,
            config={"display_name": f"inline cg_scenario={scenario_name}"},
        )
    )
    assert job.state == types.JobState.JOB_STATE_PENDING
    inline_name = job.name or ""
    done, seen = poll(gem, client, inline_name, step)
    assert seen[0] == "JOB_STATE_PENDING"
    assert seen[-1] == want.state
    assert set(seen) <= {"JOB_STATE_PENDING", "JOB_STATE_RUNNING", want.state}
    if want.kept == 0:
        assert done.dest is None
    else:
        inlined = done.dest.inlined_responses or []
        assert [r.metadata for r in inlined] == [{"key": f"k{i}"} for i in want.order]
        for result in inlined:
            position = int((result.metadata or {})["key"][1:])
            assert result.response is not None
            check_response(result.response, scenario, position, texts[position])

    lines = [
        {"key": f"f{i}", "request": {"contents": [{"parts": [{"text": text}]}],
                                     "generation_config": {"responseModalities": ["IMAGE"]}}}
        for i, text in enumerate(texts)
    ]  # fmt: skip
    uploaded = client.files.upload(
        file=str(jsonl_file(tmp_path, lines)), config={"mime_type": "jsonl", "display_name": "in"}
    )
    assert uploaded.state == types.FileState.ACTIVE
    job = retrying(
        lambda: client.batches.create(
            model=MODEL,
            src=uploaded.name,
            config={"display_name": f"file cg_scenario={scenario_name}"},
        )
    )
    done, seen = poll(gem, client, job.name or "", step)
    assert seen[-1] == want.state
    result_name = f"files/batch-{(job.name or '').removeprefix('batches/')}"
    if want.kept == 0:
        assert done.dest is None
        with pytest.raises(errors.ClientError) as caught:
            client.files.get(name=result_name)
        assert caught.value.code == 404
    else:
        assert done.dest.file_name == result_name
        data = retrying(lambda: client.files.download(file=result_name))
        rows = [json.loads(line) for line in data.splitlines()]
        assert [row["key"] for row in rows] == [f"f{i}" for i in want.order]
        for row in rows:
            position = int(row["key"][1:])
            response = types.GenerateContentResponse._from_response(
                response=row["response"], kwargs={}
            )
            check_response(response, scenario, position, texts[position])

    # A client cancel under this scenario is immediate; delete then hides every job.
    third = retrying(
        lambda: client.batches.create(
            model=MODEL, src=inline_src[:2], config={"display_name": f"cg_scenario={scenario_name}"}
        )
    )
    retrying(lambda: client.batches.cancel(name=third.name or ""))
    cancelled = retrying(lambda: client.batches.get(name=third.name or ""))
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.dest is None
    names = [inline_name, job.name or "", third.name or ""]
    listed = retrying(lambda: [j.name for j in client.batches.list(config={"page_size": 1})])
    assert listed == names[::-1]
    for name in names:
        retrying(lambda name=name: client.batches.delete(name=name))
    assert retrying(lambda: list(client.batches.list(config={"page_size": 1}))) == []
    if scenario_name == "flaky":
        statuses = [c[3] for c in gem.sim.calls.calls if c[0].startswith("gemini.")]
        assert {429, 503} & set(statuses)


def test_shuffled_results_are_out_of_order_but_keyed(mock_gem: Gem) -> None:
    """Under `shuffled`, inline results come back in a different order, each with its key."""
    client = mock_gem.client()
    src = [{"contents": f"p{i}", "metadata": {"key": f"k{i}"}} for i in range(10)]
    job = client.batches.create(
        model=MODEL, src=src, config={"display_name": "cg_scenario=shuffled"}
    )
    done, _ = poll(mock_gem, client, job.name or "", 3600)
    keys = [(r.metadata or {})["key"] for r in done.dest.inlined_responses]
    assert sorted(keys, key=lambda k: int(k[1:])) == [f"k{i}" for i in range(10)]
    assert keys != [f"k{i}" for i in range(10)]


def test_refusal_kinds_cycle_under_refusals_scenario(mock_gem: Gem) -> None:
    """Successive scenario refusals cycle through the four kinds in REFUSAL_KINDS order."""
    client = mock_gem.client()
    scenario = mock_gem.sim.scenario_named("refusals")
    every, offset = scenario.refusals.every, scenario.refusals.offset
    count = offset + every * 3 + 1  # exactly four refused positions
    src = [{"contents": f"p{i}", "metadata": {"key": str(i)}} for i in range(count)]
    job = client.batches.create(
        model=MODEL, src=src, config={"display_name": "cg_scenario=refusals"}
    )
    done, _ = poll(mock_gem, client, job.name or "", 3600)
    kinds = []
    for result in done.dest.inlined_responses:
        response = result.response
        assert response is not None
        if response.prompt_feedback is not None:
            kinds.append("PROMPT_BLOCKED")
        elif response.candidates[0].finish_reason != types.FinishReason.STOP:
            kinds.append(response.candidates[0].finish_reason.value)
    assert kinds == list(REFUSAL_KINDS)


def test_client_cancel_mid_run_keeps_the_finished_prefix(gem: Gem) -> None:
    """Cancel while running is immediately CANCELLED and keeps the requests finished by then."""
    client = gem.client()
    scenario = gem.sim.scenario
    src = [{"contents": f"p{i}", "metadata": {"key": f"k{i}"}} for i in range(10)]
    job = client.batches.create(model=MODEL, src=src)
    gem.sim.advance(scenario.pending_s + scenario.running_s * 0.35)
    assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_RUNNING
    client.batches.cancel(name=job.name or "")
    cancelled = client.batches.get(name=job.name or "")
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.done
    assert [r.metadata for r in cancelled.dest.inlined_responses] == [
        {"key": f"k{i}"} for i in range(3)
    ]
    gem.sim.advance(scenario.running_s)
    assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_CANCELLED


def test_client_cancel_while_pending_returns_nothing_and_is_idempotent(gem: Gem) -> None:
    """A job cancelled before it runs has no results; cancelling a terminal job changes nothing."""
    client = gem.client()
    job = client.batches.create(model=MODEL, src=[{"contents": "a cat"}])
    client.batches.cancel(name=job.name or "")
    first = client.batches.get(name=job.name or "")
    assert first.state == types.JobState.JOB_STATE_CANCELLED
    assert first.dest is None
    client.batches.cancel(name=job.name or "")
    assert client.batches.get(name=job.name or "").end_time == first.end_time


def test_delete_hides_the_job(gem: Gem) -> None:
    """A deleted job answers 404 and leaves the list."""
    client = gem.client()
    kept = client.batches.create(model=MODEL, src=[{"contents": "a"}])
    gone = client.batches.create(model=MODEL, src=[{"contents": "b"}])
    client.batches.delete(name=gone.name or "")
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=gone.name or "")
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"
    assert [job.name for job in client.batches.list()] == [kept.name]


def test_list_pages_with_page_size(gem: Gem) -> None:
    """The SDK pager walks 5 jobs 2 at a time, newest first; the last page has no token."""
    client = gem.client()
    names = []
    for i in range(5):
        names.append(client.batches.create(model=MODEL, src=[{"contents": f"p{i}"}]).name)
        gem.sim.advance(1)
    listed = [job.name for job in client.batches.list(config={"page_size": 2})]
    assert listed == names[::-1]
    pages = [c for c in gem.sim.calls.calls if c[0] == "gemini.batches.list"]
    assert len(pages) == 3
    with gem.http() as http:
        headers = {"x-goog-api-key": KEY}
        first = http.get("/v1/batches", params={"pageSize": 2}, headers=headers).json()
        assert len(first["operations"]) == 2
        token = first["nextPageToken"]
        second = http.get(
            "/v1/batches", params={"pageSize": 2, "pageToken": token}, headers=headers
        )
        third = http.get(
            "/v1/batches",
            params={"pageSize": 2, "pageToken": second.json()["nextPageToken"]},
            headers=headers,
        ).json()
        assert len(third["operations"]) == 1
        assert "nextPageToken" not in third
        bad = http.get("/v1/batches", params={"pageToken": "nonsense!"}, headers=headers)
        assert bad.status_code == 400


def test_files_list_get_delete(gem: Gem, tmp_path: Path) -> None:
    """Uploaded and generated files are listed, fetched and deleted like the real Files API."""
    client = gem.client()
    path = jsonl_file(
        tmp_path, [{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}]
    )
    uploaded = [
        client.files.upload(file=str(path), config={"mime_type": "jsonl"}) for _ in range(3)
    ]
    job = client.batches.create(model=MODEL, src=uploaded[0].name)
    gem.sim.advance(10 * 3600)
    client.batches.get(name=job.name or "")
    listed = [f.name for f in client.files.list(config={"page_size": 2})]
    result = f"files/batch-{(job.name or '').removeprefix('batches/')}"
    assert set(listed) == {*(f.name for f in uploaded), result}
    generated = client.files.get(name=result)
    assert generated.source == types.FileSource.GENERATED
    assert generated.download_uri
    content = client.files.download(file=generated)
    assert int(generated.size_bytes or 0) == len(content)
    with gem.http() as http:  # the /download/{ver}/files/{id}:download form serves the same bytes
        via_uri = http.get(generated.download_uri or "", headers={"x-goog-api-key": KEY})
    assert via_uri.status_code == 200
    assert via_uri.content == content
    client.files.delete(name=uploaded[1].name or "")
    client.files.delete(name=result)
    for name in (uploaded[1].name, result):
        with pytest.raises(errors.ClientError) as caught:
            client.files.get(name=name or "")
        assert caught.value.code == 404
    assert client.files.get(name=uploaded[0].name or "").state == types.FileState.ACTIVE


# ---------------------------------------------------------------------------------------------
# Synchronous generateContent and usage
# ---------------------------------------------------------------------------------------------

SIZES = [
    ("gemini-2.5-flash-image", None, 1290, 0),
    ("gemini-2.5-flash-image-preview", None, 1290, 0),
    ("gemini-3-pro-image", None, 1120, 400),
    ("gemini-3-pro-image-preview", "2K", 1120, 400),
    ("gemini-3-pro-image", "4K", 2000, 400),
    ("gemini-3.1-flash-image", "512", 747, 200),
    ("gemini-3.1-flash-image-preview", "1K", 1120, 200),
    ("gemini-3.1-flash-image", "2K", 1680, 200),
    ("gemini-3.1-flash-image", "4K", 2520, 200),
    ("gemini-3.1-flash-lite-image", "1K", 1120, 200),
]


@pytest.mark.parametrize(("model", "size", "image_tokens", "thoughts"), SIZES)
def test_generate_content_usage_per_model_and_size(
    gem: Gem, model: str, size: str | None, image_tokens: int, thoughts: int
) -> None:
    """A sync image call returns a decodable image and the usage the token table gives."""
    client = gem.client()
    image_config = types.ImageConfig(aspect_ratio="16:9", image_size=size)
    response = client.models.generate_content(
        model=model,
        contents="A lighthouse at dawn, watercolour",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=image_config
        ),
    )
    images = [p.inline_data.data for p in response.parts or [] if p.inline_data]
    texts = [p.text for p in response.parts or [] if p.text]
    assert len(images) == 1
    assert decode_image(images[0] or b"")[0] > 0
    assert texts
    usage = response.usage_metadata
    assert usage is not None
    prompt = text_tokens("A lighthouse at dawn, watercolour")
    assert usage.prompt_token_count == prompt
    assert usage.candidates_token_count == image_tokens + text_tokens(texts[0] or "")
    assert [(d.modality, d.token_count) for d in usage.candidates_tokens_details or []] == [
        (types.MediaModality.TEXT, text_tokens(texts[0] or "")),
        (types.MediaModality.IMAGE, image_tokens),
    ]
    assert (usage.thoughts_token_count or 0) == thoughts
    assert usage.total_token_count == prompt + (usage.candidates_token_count or 0) + thoughts
    assert response.model_version == model


def test_generate_content_counts_input_images(gem: Gem) -> None:
    """Each inline image part adds the model's input-image tokens to the prompt, by modality."""
    client = gem.client()
    image = types.Part.from_bytes(data=TINY_PNG, mime_type="image/png")
    response = client.models.generate_content(
        model="gemini-3-pro-image", contents=[image, image, "Merge these two"]
    )
    usage = response.usage_metadata
    assert usage is not None
    details = {d.modality: d.token_count for d in usage.prompt_tokens_details or []}
    assert details == {
        types.MediaModality.TEXT: text_tokens("Merge these two"),
        types.MediaModality.IMAGE: 2 * 560,
    }
    assert usage.prompt_token_count == text_tokens("Merge these two") + 1120


def test_generate_content_refusal_marker_cycles_by_position(gem: Gem) -> None:
    """Sync calls with the marker are refused; the kind follows the per-simulator call index."""
    client = gem.client()
    seen = []
    for _ in range(4):
        response = client.models.generate_content(model=MODEL, contents=f"x {REFUSE_MARKER}")
        if response.prompt_feedback is not None:
            seen.append("PROMPT_BLOCKED")
            assert not response.candidates
        else:
            seen.append(response.candidates[0].finish_reason.value)
            assert not [p for p in response.parts or [] if p.inline_data]
    assert seen == list(REFUSAL_KINDS)


@pytest.mark.parametrize(
    ("model", "image_config", "fragment"),
    [
        ("gemini-2.5-flash-image", {"image_size": "1K"}, "imageSize is not supported"),
        ("gemini-3-pro-image", {"image_size": "512"}, "Unsupported imageSize '512'"),
        ("gemini-3.1-flash-image", {"image_size": "1k"}, "Unsupported imageSize '1k'"),
        ("gemini-3-pro-image", {"aspect_ratio": "8:1"}, "Unsupported aspectRatio '8:1'"),
    ],
)
def test_generate_content_rejects_unsupported_config(
    gem: Gem, model: str, image_config: dict[str, str], fragment: str
) -> None:
    """An imageSize or aspect ratio the model does not take is a 400 INVALID_ARGUMENT."""
    client = gem.client()
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model=model, contents="x", config={"image_config": image_config}
        )
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert fragment in (caught.value.message or "")


def test_unknown_model_is_404(gem: Gem) -> None:
    """An unknown model answers 404 NOT_FOUND with the real API's wording, sync and batch."""
    client = gem.client()
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-9-image", contents="x")
    assert caught.value.code == 404
    assert "models/gemini-9-image is not found for API version v1" in (caught.value.message or "")
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model="gemini-9-image", src=[{"contents": "x"}])
    assert "batchGenerateContent" in (caught.value.message or "")


# ---------------------------------------------------------------------------------------------
# Batch input validation and per-request errors
# ---------------------------------------------------------------------------------------------


def test_malformed_jsonl_makes_the_job_fail(gem: Gem, tmp_path: Path) -> None:
    """A file with a malformed line is accepted, then ends FAILED with no results."""
    client = gem.client()
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n{oops\n')
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    job = client.batches.create(model=MODEL, src=uploaded.name)
    assert job.state == types.JobState.JOB_STATE_PENDING
    done, seen = poll(gem, client, job.name or "", 300)
    assert seen == ["JOB_STATE_PENDING", "JOB_STATE_FAILED"]
    assert done.dest is None
    with gem.http() as http:
        raw = http.get(f"/v1/{job.name}", headers={"x-goog-api-key": KEY}).json()
    assert raw["error"]["code"] == 3
    assert "line 2" in raw["error"]["message"]


def test_invalid_request_in_a_batch_is_a_per_request_error(gem: Gem, tmp_path: Path) -> None:
    """One bad request gets an error line with its key; the job still succeeds and counts it."""
    client = gem.client()
    lines = [
        {"key": "good", "request": {"contents": [{"parts": [{"text": "x"}]}]}},
        {"key": "bad", "request": {"contents": [{"parts": [{"text": "y"}]}],
                                   "generationConfig": {"imageConfig": {"imageSize": "8K"}}}},
    ]  # fmt: skip
    uploaded = client.files.upload(
        file=str(jsonl_file(tmp_path, lines)), config={"mime_type": "jsonl"}
    )
    job = client.batches.create(model="gemini-3-pro-image", src=uploaded.name)
    done, _ = poll(gem, client, job.name or "", 3600)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    rows = {
        row["key"]: row
        for row in map(json.loads, client.files.download(file=done.dest.file_name).splitlines())
    }
    assert "response" in rows["good"]
    assert rows["bad"]["error"]["code"] == 3
    assert set(rows["bad"]["error"]) == {"code", "message"}
    with gem.http() as http:
        raw = http.get(f"/v1/{job.name}", headers={"x-goog-api-key": KEY}).json()
    assert raw["metadata"]["batchStats"] == {
        "requestCount": "2",
        "successfulRequestCount": "1",
        "failedRequestCount": "1",
    }


BAD_PARTS = [
    (
        [{"text": 5}],
        "Invalid value at 'contents[0].parts[0].text' (TYPE_STRING), 5",
    ),
    (
        [{"text": "x"}, {"inlineData": {"mimeType": "image/png", "data": "!!!"}}],
        (
            "Invalid value at 'contents[0].parts[1].inline_data.data' (TYPE_BYTES), "
            'Base64 decoding failed for "!!!"'
        ),
    ),
    (
        [{"text": "x"}, {"inline_data": {"mime_type": 7, "data": ""}}],
        "Invalid value at 'contents[0].parts[1].inline_data.mime_type' (TYPE_STRING), 7",
    ),
    (
        ["just text"],
        (
            "Invalid value at 'contents[0].parts[0]' "
            '(type.googleapis.com/google.ai.generativelanguage.v1beta.Part), "just text"'
        ),
    ),
]


def post_json(gem: Gem, path: str, body: dict[str, Any]) -> httpx2.Response:
    """POST `body` as JSON to `path` with the test key."""
    with gem.http() as http:
        return http.post(path, headers={"x-goog-api-key": KEY}, json=body)


@pytest.mark.parametrize(("parts", "message"), BAD_PARTS)
def test_generate_content_refuses_parts_of_the_wrong_type(
    gem: Gem, parts: list[Any], message: str
) -> None:
    """A part field of the wrong type or undecodable bytes is a 400 naming its path."""
    answer = post_json(
        gem, f"/v1beta/models/{MODEL}:generateContent", {"contents": [{"parts": parts}]}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}


@pytest.mark.parametrize(
    "data",
    [
        base64.b64encode(TINY_PNG).decode(),
        base64.b64encode(TINY_PNG).decode().rstrip("="),
        base64.urlsafe_b64encode(b"\xfb\xff" + TINY_PNG).decode(),
        base64.urlsafe_b64encode(b"\xfb\xff" + TINY_PNG).decode().rstrip("="),
    ],
    ids=["standard", "standard-unpadded", "url-safe", "url-safe-unpadded"],
)
def test_generate_content_takes_base64_in_either_alphabet(gem: Gem, data: str) -> None:
    """Bytes are accepted as proto3 JSON takes them: standard or URL-safe, padded or not."""
    parts = [{"text": "x"}, {"inlineData": {"mimeType": "image/png", "data": data}}]
    answer = post_json(
        gem, f"/v1beta/models/{MODEL}:generateContent", {"contents": [{"parts": parts}]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usageMetadata"]["promptTokensDetails"][1]["modality"] == "IMAGE"


@pytest.mark.parametrize(("parts", "message"), BAD_PARTS)
def test_inline_batch_with_a_bad_part_is_refused_whole(
    gem: Gem, parts: list[Any], message: str
) -> None:
    """A bad part in an inlined request is a 400 whose path starts at that request; no job."""
    good = {"request": {"contents": [{"parts": [{"text": "fine"}]}]}}
    bad = {"request": {"contents": [{"parts": parts}]}}
    body = {"batch": {"inputConfig": {"requests": {"requests": [good, bad]}}}}
    answer = post_json(gem, f"/v1beta/models/{MODEL}:batchGenerateContent", body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    prefix = "Invalid value at 'batch.input_config.requests.requests[1].request.contents[0]"
    assert error["message"] == message.replace("Invalid value at 'contents[0]", prefix)
    assert gem.sim.jobs == []


def test_bad_part_in_a_batch_file_is_that_lines_error(gem: Gem, tmp_path: Path) -> None:
    """In an input file, a bad part fails only its line (code 3, the path in the message)."""
    client = gem.client()
    lines = [
        {"key": "good", "request": {"contents": [{"parts": [{"text": "x"}]}]}},
        {"key": "bad", "request": {"contents": [{"parts": [{"text": 5}]}]}},
        {"key": "bytes", "request": {"contents": [{"parts": [
            {"text": "x"}, {"inlineData": {"mimeType": "image/png", "data": "!!!"}}]}]}},
    ]  # fmt: skip
    uploaded = client.files.upload(
        file=str(jsonl_file(tmp_path, lines)), config={"mime_type": "jsonl"}
    )
    job = client.batches.create(model=MODEL, src=uploaded.name)
    done, _ = poll(gem, client, job.name or "", 3600)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    rows = {
        row["key"]: row
        for row in map(json.loads, client.files.download(file=done.dest.file_name).splitlines())
    }
    assert "response" in rows["good"]
    assert rows["bad"]["error"] == {
        "code": 3,
        "message": "Invalid value at 'contents[0].parts[0].text' (TYPE_STRING), 5",
    }
    assert rows["bytes"]["error"] == {
        "code": 3,
        "message": "Invalid value at 'contents[0].parts[1].inline_data.data' (TYPE_BYTES), "
        'Base64 decoding failed for "!!!"',
    }


def test_inline_batch_over_20_mb_is_rejected(gem: Gem) -> None:
    """An inline batch body over 20 MB is a 400 before any job exists."""
    big = "x" * (MAX_INLINE_BYTES // 2)
    client = gem.client()
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model=MODEL, src=[{"contents": big}, {"contents": big}])
    assert caught.value.code == 400
    assert "exceeds the limit" in (caught.value.message or "")
    assert list(client.batches.list()) == []


def test_batch_create_accepts_snake_case_bodies(gem: Gem) -> None:
    """A raw REST body in snake_case (input_config, display_name) creates the same job."""
    body = {
        "batch": {
            "display_name": "snake",
            "input_config": {"requests": {"requests": [
                {"request": {"contents": [{"parts": [{"text": "x"}]}],
                             "generation_config": {"response_modalities": ["IMAGE"]}},
                 "metadata": {"key": "s1"}}]}},
        }
    }  # fmt: skip
    with gem.http() as http:
        created = http.post(
            f"/v1beta/models/{MODEL}:batchGenerateContent", json=body, params={"key": KEY}
        )
        assert created.status_code == 200
        assert created.json()["metadata"]["displayName"] == "snake"
        gem.sim.advance(10 * 3600)
        done = http.get(f"/v1beta/{created.json()['name']}", params={"key": KEY}).json()
    assert done["metadata"]["batchStats"] == {"requestCount": "1", "successfulRequestCount": "1"}


def test_unknown_scenario_in_display_name_is_400(gem: Gem) -> None:
    """A display name asking for a scenario that does not exist is refused with the known names."""
    client = gem.client()
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(
            model=MODEL, src=[{"contents": "x"}], config={"display_name": "cg_scenario=nope"}
        )
    assert caught.value.code == 400
    assert "succeeded" in (caught.value.message or "")
    assert list(client.batches.list()) == []


def test_base_url_with_a_path_prefix(gem: Gem, tmp_path: Path) -> None:
    """A base URL with a path (a gateway) keeps working, upload URL included."""
    options = types.HttpOptions(base_url=f"{gem.base_url}/gateway/gemini")
    client = genai.Client(api_key=KEY, http_options=options)
    path = jsonl_file(
        tmp_path, [{"key": "p", "request": {"contents": [{"parts": [{"text": "x"}]}]}}]
    )
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    assert (uploaded.uri or "").startswith(f"{gem.base_url}/gateway/gemini/v1/files/")
    job = client.batches.create(model=MODEL, src=uploaded.name)
    done, _ = poll(gem, client, job.name or "", 3600)
    rows = client.files.download(file=done.dest.file_name).splitlines()
    assert [json.loads(row)["key"] for row in rows] == ["p"]


# ---------------------------------------------------------------------------------------------
# Wire shapes
# ---------------------------------------------------------------------------------------------

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_operation_envelope_matches_the_reference(gem: Gem, tmp_path: Path) -> None:
    """Operations carry @type, string counters without zeros, 9-digit stamps, done and response."""
    client = gem.client()
    job = client.batches.create(model=MODEL, src=[{"contents": "a"}, {"contents": "b"}])
    with gem.http() as http:
        headers = {"x-goog-api-key": KEY}
        pending = http.get(f"/v1/{job.name}", headers=headers).json()
        assert re.fullmatch(r"batches/[a-z0-9]{36}", pending["name"])
        meta = pending["metadata"]
        assert meta["@type"].endswith("GenerateContentBatch")
        assert meta["model"] == f"models/{MODEL}"
        assert "displayName" not in meta
        assert "inputConfig" not in meta
        assert meta["batchStats"] == {"requestCount": "2", "pendingRequestCount": "2"}
        assert meta["state"] == "BATCH_STATE_PENDING"
        assert STAMP.match(meta["createTime"])
        assert meta["updateTime"] == meta["createTime"]
        assert "endTime" not in meta
        assert "done" not in pending
        assert "response" not in pending
        gem.sim.advance(601)
        running = http.get(f"/v1/{job.name}", headers=headers).json()
        assert running["metadata"]["state"] == "BATCH_STATE_RUNNING"
        assert running["metadata"]["updateTime"] > meta["createTime"]
        gem.sim.advance(3600)
        done = http.get(f"/v1/{job.name}", headers=headers).json()
        meta = done["metadata"]
        assert done["done"] is True
        assert STAMP.match(meta["endTime"])
        assert meta["batchStats"] == {"requestCount": "2", "successfulRequestCount": "2"}
        inlined = meta["output"]["inlinedResponses"]["inlinedResponses"]
        assert done["response"]["@type"].endswith("GenerateContentBatchOutput")
        assert done["response"]["inlinedResponses"]["inlinedResponses"] == inlined
        assert "metadata" not in inlined[0]
        listed = http.get("/v1/batches", headers=headers).json()["operations"][0]
        assert "output" not in listed["metadata"]
        assert listed["done"] is True

        path = jsonl_file(
            tmp_path, [{"key": "z", "request": {"contents": [{"parts": [{"text": "x"}]}]}}]
        )
        uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
        file_job = client.batches.create(
            model=MODEL, src=uploaded.name, config={"display_name": "f"}
        )
        gem.sim.advance(5000)
        done = http.get(f"/v1/{file_job.name}", headers=headers).json()
        result = f"files/batch-{done['name'].removeprefix('batches/')}"
        assert done["metadata"]["inputConfig"] == {"fileName": uploaded.name}
        assert done["metadata"]["output"] == {"responsesFile": result}
        assert done["response"]["responsesFile"] == result
        listed = http.get("/v1/batches", headers=headers).json()["operations"][0]
        assert listed["metadata"]["output"] == {"responsesFile": result}
        expired = client.batches.create(
            model=MODEL, src=[{"contents": "x"}], config={"display_name": "cg_scenario=expired"}
        )
        gem.sim.advance(10 * 3600)
        gone = http.get(f"/v1/{expired.name}", headers=headers).json()
        assert gone["metadata"]["state"] == "BATCH_STATE_EXPIRED"
        assert "output" not in gone["metadata"]
        assert "response" not in gone
        assert gone["error"]["code"] == 4


def test_v1beta_is_served_identically(gem: Gem, tmp_path: Path) -> None:
    """A client on api_version v1beta (as google-genai 2.x and Node) runs the same cycle."""
    client = gem.client(api_version="v1beta")
    path = jsonl_file(
        tmp_path, [{"key": "b", "request": {"contents": [{"parts": [{"text": "x"}]}]}}]
    )
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    assert (uploaded.uri or "").endswith(f"/v1beta/{uploaded.name}")
    job = client.batches.create(model=MODEL, src=uploaded.name)
    done, _ = poll(gem, client, job.name or "", 3600)
    rows = client.files.download(file=done.dest.file_name).splitlines()
    assert [json.loads(row)["key"] for row in rows] == ["b"]
    paths = [c[2] for c in gem.sim.calls.calls if c[0].startswith("gemini.")]
    assert paths
    assert all("/v1beta/" in p for p in paths)


# ---------------------------------------------------------------------------------------------
# Resumable upload, raw
# ---------------------------------------------------------------------------------------------


def test_resumable_upload_protocol(gem: Gem) -> None:
    """Start answers an absolute upload URL; chunks need offsets, may omit the key; finalize."""
    data = b'{"key":"a","request":{"contents":[{"parts":[{"text":"x"}]}]}}\n' * 3
    start_headers = {
        "x-goog-api-key": KEY,
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": str(len(data)),
        "X-Goog-Upload-Header-Content-Type": "jsonl",
    }
    with gem.http() as http:
        start = http.post(
            "/upload/v1beta/files",
            headers=start_headers,
            json={
                "file": {
                    "mimeType": "jsonl",
                    "displayName": "node-style",
                    "sizeBytes": str(len(data)),
                }
            },
        )
        assert start.status_code == 200
        assert start.headers["x-goog-upload-status"] == "active"
        url = start.headers["x-goog-upload-url"]
        assert url.startswith(f"{gem.base_url}/upload/v1beta/files?upload_id=")
        half = len(data) // 2
        chunk = {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
        first = http.post(url, headers=chunk, content=data[:half])
        assert first.status_code == 200
        assert first.headers["x-goog-upload-status"] == "active"
        wrong = http.post(
            url,
            headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "1"},
            content=b"z",
        )
        assert wrong.status_code == 400
        assert wrong.headers["x-goog-upload-status"] == "final"
        query = http.post(url, headers={"X-Goog-Upload-Command": "query"})
        assert query.headers["x-goog-upload-size-received"] == str(half)
        final = http.post(
            url,
            headers={
                "X-Goog-Upload-Command": "upload, finalize",
                "X-Goog-Upload-Offset": str(half),
            },
            content=data[half:],
        )
        assert final.status_code == 200
        assert final.headers["x-goog-upload-status"] == "final"
        file = final.json()["file"]
        assert re.fullmatch(r"files/[a-z0-9]{12}", file["name"])
        assert file["displayName"] == "node-style"
        assert file["mimeType"] == "jsonl"
        assert file["sizeBytes"] == str(len(data))
        assert file["state"] == "ACTIVE"
        assert file["source"] == "UPLOADED"
        assert STAMP.match(file["expirationTime"])
        again = http.post(url, headers={"X-Goog-Upload-Command": "upload, finalize"}, content=b"")
        assert again.status_code == 404
        unauthenticated = http.post(
            "/upload/v1/files", headers={**start_headers, "x-goog-api-key": ""}
        )
        assert unauthenticated.status_code == 403
    assert gem.sim.uploads[-1].bytes == len(data)


def test_python_sdk_upload_sends_snake_case_and_gets_a_file(gem: Gem, tmp_path: Path) -> None:
    """client.files.upload (snake_case, int size) yields an ACTIVE file whose hash matches."""
    client = gem.client()
    path = jsonl_file(
        tmp_path, [{"key": "k", "request": {"contents": [{"parts": [{"text": "x"}]}]}}]
    )
    uploaded = client.files.upload(
        file=str(path), config={"mime_type": "jsonl", "display_name": "py"}
    )
    assert uploaded.display_name == "py"
    assert uploaded.size_bytes == path.stat().st_size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert base64.b64decode(uploaded.sha256_hash or "").decode() == digest
    assert client.files.get(name=uploaded.name or "").name == uploaded.name
    with pytest.raises(errors.ClientError) as caught:
        client.files.download(file=uploaded.name or "")
    assert caught.value.code == 400


# ---------------------------------------------------------------------------------------------
# Auth and errors
# ---------------------------------------------------------------------------------------------


def test_keyless_requests_with_gemini_signals_get_gemini_403(gem: Gem) -> None:
    """A keyless request on a path both providers serve is Gemini's when it carries Gemini's
    signals (Google's query parameters, `x-goog-*` headers): 403 PERMISSION_DENIED, not
    OpenAI's 401."""
    with gem.http() as http:
        for answer in (
            http.get("/v1/batches", params={"pageSize": 5}),
            http.get("/v1/batches", params={"pageToken": "x"}),
            http.get("/v1/batches", headers={"x-goog-api-client": "genai-py/3.6.1"}),
        ):
            assert answer.status_code == 403
            assert answer.json()["error"]["status"] == "PERMISSION_DENIED"


def test_image_only_answers_list_only_image_tokens(gem: Gem) -> None:
    """With IMAGE alone asked for, candidatesTokensDetails lists IMAGE only (TEXT when asked,
    see test_generate_content_usage_per_model_and_size)."""
    client = gem.client()
    response = client.models.generate_content(
        model=MODEL,
        contents="A lighthouse",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
    )
    usage = response.usage_metadata
    assert usage is not None
    details = [(d.modality, d.token_count) for d in usage.candidates_tokens_details or []]
    assert details == [(types.MediaModality.IMAGE, 1290)]
    assert usage.candidates_token_count == 1290


def test_missing_key_is_403_and_wrong_key_is_400(gem: Gem) -> None:
    """No key answers 403 PERMISSION_DENIED; a rejected key 400 with reason API_KEY_INVALID."""
    with gem.http() as http:
        missing = http.get("/v1beta/batches")  # /v1beta: unambiguously Gemini without a key
        assert missing.status_code == 403
        assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
        wrong = http.get("/v1/batches", params={"key": "not-the-key"})
        assert wrong.status_code == 400
        details = wrong.json()["error"]["details"]
        assert details[0]["reason"] == "API_KEY_INVALID"
        assert http.get("/v1/batches", params={"key": KEY}).status_code == 200
    wrong_client = gem.client(key="not-the-key")
    with pytest.raises(errors.ClientError) as caught:
        wrong_client.batches.list()
    assert caught.value.code == 400


def test_unknown_ids_are_404(gem: Gem) -> None:
    """Unknown batch and file ids answer 404 NOT_FOUND through the SDK."""
    client = gem.client()
    for call in (
        lambda: client.batches.get(name="batches/doesnotexist"),
        lambda: client.batches.cancel(name="batches/doesnotexist"),
        lambda: client.batches.delete(name="batches/doesnotexist"),
        lambda: client.files.get(name="files/doesnotexist"),
        lambda: client.files.delete(name="files/doesnotexist"),
        lambda: client.files.download(file="files/doesnotexist"),
        lambda: client.batches.create(model=MODEL, src="files/doesnotexist"),
    ):
        with pytest.raises(errors.ClientError) as caught:
            call()
        assert caught.value.code == 404
        assert caught.value.status == "NOT_FOUND"


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503])
def test_error_bodies_are_google_shaped(mock_gem: Gem, status: int) -> None:
    """`GeminiFace.error` answers {"error": {code, message, status}} with JSON content type."""
    response = mock_gem.gemini.error(status, retry_after_s=0.05)
    body = json.loads(response.read())
    error = body["error"]
    assert set(error) <= {"code", "message", "status", "details"}
    assert error["code"] == status
    assert error["message"]
    assert error["status"].isupper()
    assert response.status == status
    assert response.headers["content-type"].startswith("application/json")
    if status == 429:
        retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
        assert retry == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.050s"}
        ]


def test_error_fixtures_are_well_formed_and_hold_no_key() -> None:
    """Every fixture error body has the Google shape and no credential-looking string."""
    folder = data_dir("fixtures") / "gemini" / "errors"
    files = sorted(folder.glob("*.json"))
    assert {f.stem for f in files} >= {"400", "403", "404", "429", "500", "503"}
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert "AIza" not in text
        error = json.loads(text)["error"]
        assert int(file.stem.split("_")[0]) == error["code"]
        assert isinstance(error["message"], str)
        assert isinstance(error["status"], str)
        assert isinstance(error.get("details", []), list)


# ---------------------------------------------------------------------------------------------
# Usage table
# ---------------------------------------------------------------------------------------------


def test_usage_table_has_the_reference_figures() -> None:
    """usage.yaml holds the token figures of gemini-pricing.md for every served model."""
    table = load_usage_table()
    figures = {
        name: (
            usage.output_image_tokens or usage.output_image_tokens_by_size,
            usage.input_image_tokens,
        )
        for name, usage in table.models.items()
    }
    assert figures == {
        "gemini-2.5-flash-image": (1290, 258),
        "gemini-3-pro-image": ({"1K": 1120, "2K": 1120, "4K": 2000}, 560),
        "gemini-3.1-flash-image": ({"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}, 1120),
        "gemini-3.1-flash-lite-image": ({"1K": 1120}, 1120),
    }
    assert table.default_image_size == "1K"
    assert table.lookup("models/gemini-3-pro-image-preview") is table.models["gemini-3-pro-image"]


def test_usage_table_agrees_with_the_rate_cards() -> None:
    """Image, input-image and thinking tokens match the newest rate card listing each model."""
    table = load_usage_table()
    cards = sorted((data_dir("pricing") / "gemini").glob("*.yaml"))
    assert cards
    newest: dict[str, dict[str, Any]] = {}
    for card in cards:
        for model in yaml.safe_load(card.read_text(encoding="utf-8"))["models"]:
            for model_id in [model["id"], *model.get("aliases", [])]:
                newest[model_id] = model
    checked = 0
    for name, usage in table.models.items():
        for model_id in [name, *usage.aliases]:
            card = newest.get(model_id)
            if card is None:
                continue
            checked += 1
            sizes = usage.output_image_tokens_by_size or {"1K": usage.output_image_tokens}
            assert card["output_image_tokens"] == sizes, model_id
            assert card["input_image_tokens"]["typical"] == usage.input_image_tokens, model_id
            typical = (card.get("thinking_tokens") or {}).get("typical", 0)
            assert typical == usage.thinking_tokens, model_id
    assert checked >= len(table.models)


# ---------------------------------------------------------------------------------------------
# Scale, state
# ---------------------------------------------------------------------------------------------


def test_large_result_file_is_streamed(mock_gem: Gem) -> None:
    """A 50,000-request result file is generated lazily in bounded chunks, every key present."""
    sim = mock_gem.sim
    count = 50_000
    data = b"".join(
        b'{"key":"r%d","request":{"contents":[{"parts":[{"text":"p%d"}]}]}}\n' % (i, i)
        for i in range(count)
    )
    client = mock_gem.client()
    uploaded = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    job = client.batches.create(model=MODEL, src=uploaded.name)
    sim.advance(10 * 3600)
    request = SimRequest.build(
        "GET",
        f"/v1/files/batch-{(job.name or '').removeprefix('batches/')}:download",
        query_string="alt=media",
        headers=[("x-goog-api-key", KEY)],
        base_url=GOOGLE,
    )
    response = sim.handle(request)
    assert response.status == 200
    assert not isinstance(response.body, bytes)
    lines = 0
    largest = 0
    last = b""
    for chunk in response.body:
        largest = max(largest, len(chunk))
        lines += chunk.count(b"\n")
        last = chunk
    assert lines == count
    assert largest < RESULT_CHUNK_BYTES + 4096
    assert json.loads(last.splitlines()[-1])["key"] == f"r{count - 1}"


def test_state_survives_save_and_load(mock_gem: Gem, tmp_path: Path) -> None:
    """A saved simulator reloads with its files and jobs; results are the same bytes."""
    sim = mock_gem.sim
    client = mock_gem.client()
    path = jsonl_file(
        tmp_path,
        [
            {"key": f"s{i}", "request": {"contents": [{"parts": [{"text": f"p{i}"}]}]}}
            for i in range(3)
        ],
    )
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    file_job = client.batches.create(model=MODEL, src=uploaded.name)
    inline_job = client.batches.create(
        model=MODEL, src=[{"contents": "x", "metadata": {"key": "i"}}]
    )
    saved = sim.save(tmp_path / "sim.json")
    sim.advance(10 * 3600)
    before = client.files.download(
        file=f"files/batch-{(file_job.name or '').removeprefix('batches/')}"
    )
    loaded = Simulator.load(saved, api_keys=[KEY])
    loaded.advance(10 * 3600)
    with serving(loaded, "mock") as base_url:
        other = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=base_url))
        after = other.files.download(
            file=f"files/batch-{(file_job.name or '').removeprefix('batches/')}"
        )
        assert other.files.get(name=uploaded.name or "").size_bytes == path.stat().st_size
        done = other.batches.get(name=inline_job.name or "")
    assert after == before
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert [r.metadata for r in done.dest.inlined_responses] == [{"key": "i"}]


# ---------------------------------------------------------------------------------------------
# Node: @google/genai against `costguard simulate serve`
# ---------------------------------------------------------------------------------------------

NODE_DIR = Path(__file__).parent / "node"


@pytest.mark.node
@pytest.mark.slow
def test_node_sdk_cycle(tmp_path: Path) -> None:
    """@google/genai runs upload, file and inline batches and download against the CLI server."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the @google/genai test (not installed)")
    if not (NODE_DIR / "node_modules" / "@google" / "genai").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    server = subprocess.Popen(
        [sys.executable, "-m", "costguard", "simulate", "serve", "--port", "0",
         "--scenario", "succeeded", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    reader: threading.Thread | None = None
    try:
        assert server.stdout is not None
        base_url, reader = _read_base_url(server.stdout)
        result = subprocess.run(
            [node, str(NODE_DIR / "gemini_cycle.mjs")],
            cwd=NODE_DIR,
            env={**os.environ, "SIM_BASE_URL": base_url, "SIM_API_KEY": KEY,
                 "WORK_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=20)
        if reader is not None:
            reader.join(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert report["file"]["state"] == "JOB_STATE_SUCCEEDED"
    assert sorted(report["file"]["keys"]) == ["n0", "n1", "n2"]
    assert report["file"]["images"] == 3
    assert report["inline"]["state"] == "JOB_STATE_SUCCEEDED"
    assert report["inline"]["keys"] == ["i0", "i1"]
    assert report["upload"]["state"] == "ACTIVE"
    assert report["missing"] == 404


def _read_base_url(stream: Any) -> tuple[str, threading.Thread]:
    """The first http:// URL the server prints (it picks its port), and the pipe's reader."""
    found: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        """Note the first URL, then drain the pipe until the server exits."""
        for line in stream:  # keeps draining the pipe so the server never blocks on it
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            if match and not found:
                found.append(match.group(0))
                ready.set()
        ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    ready.wait(timeout=30)
    assert found, "costguard simulate serve printed no URL"
    return found[0], thread
