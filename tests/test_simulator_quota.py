"""Provider batch quotas (`Scenario.quota`), driven by the real OpenAI and google-genai SDKs
against the simulator's HTTP server.

OpenAI creates a batch past its model's enqueued-token limit and fails it at validation
(`token_limit_exceeded`); Gemini refuses the create with 429 RESOURCE_EXHAUSTED, for enqueued
tokens and for concurrent jobs. Jobs free their share once terminal.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from openai import OpenAI

from costguard.simulator import Simulator
from costguard.simulator.gemini import GeminiFace
from costguard.simulator.gemini.content import enqueued_tokens as gemini_enqueued_tokens
from costguard.simulator.gemini.usage import load_usage_table
from costguard.simulator.openai import OpenAIFace
from costguard.simulator.openai.usage import UsageTable, parse_image_call
from costguard.simulator.openai.usage import enqueued_tokens as openai_enqueued_tokens
from costguard.simulator.scenario import (
    Quota,
    Scenario,
    TokenSpread,
    UnknownScenarioError,
    load_scenario,
)
from costguard.simulator.server import serve_in_thread

KEY = "sk-quota-test"
OPENAI_MODEL = "gpt-image-1"
GEMINI_MODEL = "gemini-2.5-flash-image"
PENDING_S, RUNNING_S, FINALIZING_S = 600, 3600, 300
GEMINI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


def scenario(quota: Quota | None = None, **fields: Any) -> Scenario:
    """A succeeding scenario with the test timeline and `quota`."""
    return Scenario(
        name="quota-test",
        description="quota test",
        pending_s=PENDING_S,
        running_s=RUNNING_S,
        finalizing_s=FINALIZING_S,
        quota=quota or Quota(),
        **fields,
    )


@contextlib.contextmanager
def serve(sc: Scenario) -> Iterator[tuple[Simulator, str]]:
    """A stopped-clock simulator under `sc`, served on a local socket."""
    sim = Simulator(sc, api_keys=[KEY], time_scale=0)
    with serve_in_thread(sim) as base_url:
        yield sim, base_url


# -- OpenAI ------------------------------------------------------------------------------------


def openai_client(base_url: str) -> OpenAI:
    """The real SDK, strict about the shapes it parses."""
    return OpenAI(api_key=KEY, base_url=f"{base_url}/v1", _strict_response_validation=True)


def openai_input(count: int, size: str = "1024x1024", quality: str = "medium") -> bytes:
    """A batch input file of `count` image generations (equal tokens per line)."""
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {
                "model": OPENAI_MODEL,
                "prompt": f"a red fox {i:03d}",
                "size": size,
                "quality": quality,
            },
        }
        for i in range(count)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def openai_batch(client: OpenAI, data: bytes) -> str:
    """Upload `data` and create a batch of it; its id."""
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    return batch.id


def openai_tokens_of_a_batch(data: bytes) -> int:
    """The `usage.total_tokens` a completed batch of `data` reports, with no quota."""
    with serve(scenario()) as (sim, base_url):
        client = openai_client(base_url)
        batch_id = openai_batch(client, data)
        sim.advance(PENDING_S + RUNNING_S + FINALIZING_S)
        done = client.batches.retrieve(batch_id)
        assert done.status == "completed"
        assert done.usage is not None
        face = sim.faces["openai"]
        assert isinstance(face, OpenAIFace)
        assert face.batches[batch_id].enqueued_tokens == done.usage.total_tokens
        return done.usage.total_tokens


def test_openai_batch_past_the_token_limit_fails_at_validation() -> None:
    """Three batches of equal tokens, a limit holding two: the third is created, then fails
    `token_limit_exceeded` once it leaves validating; after the two complete, a new one runs."""
    data = openai_input(3)
    tokens = openai_tokens_of_a_batch(data)
    limit = 2 * tokens
    with serve(scenario(Quota(enqueued_tokens={OPENAI_MODEL: limit}))) as (sim, base_url):
        client = openai_client(base_url)
        first, second, third = (openai_batch(client, data) for _ in range(3))
        assert client.batches.retrieve(third).status == "validating"

        sim.advance(PENDING_S)
        assert [client.batches.retrieve(b).status for b in (first, second)] == ["in_progress"] * 2
        failed = client.batches.retrieve(third)
        assert failed.status == "failed"
        assert failed.failed_at is not None
        assert failed.in_progress_at is None
        assert failed.output_file_id is None
        assert failed.error_file_id is None
        assert failed.usage is None or failed.usage.total_tokens == 0
        assert failed.request_counts is not None
        assert failed.request_counts.completed == 0
        assert failed.errors is not None
        assert failed.errors.object == "list"
        assert failed.model_dump(mode="json")["errors"] == {
            "object": "list",
            "data": [
                {
                    "code": "token_limit_exceeded",
                    "message": f"Enqueued token limit reached for {OPENAI_MODEL} in organization "
                    f"org-costguard-sim. Limit: {limit:,} enqueued tokens. Please try again "
                    "once some in_progress batches have been completed.",
                    "param": None,
                    "line": None,
                }
            ],
        }
        assert "," in f"{limit:,}" or limit < 1000

        # while the first two still run, the failed third frees nothing it never held
        blocked = openai_batch(client, data)
        sim.advance(RUNNING_S + FINALIZING_S)
        assert [client.batches.retrieve(b).status for b in (first, second)] == ["completed"] * 2
        assert client.batches.retrieve(blocked).status == "failed"

        fresh = openai_batch(client, data)
        sim.advance(PENDING_S)
        assert client.batches.retrieve(fresh).status == "in_progress"
        sim.advance(RUNNING_S + FINALIZING_S)
        done = client.batches.retrieve(fresh)
        assert done.status == "completed"
        assert done.output_file_id is not None
        assert done.usage is not None
        assert done.usage.total_tokens == tokens


def test_openai_cancelled_batch_frees_its_tokens_once_cancelled() -> None:
    """A cancelling batch still holds its tokens; once cancelled it no longer counts."""
    data = openai_input(2)
    tokens = openai_tokens_of_a_batch(data)
    with serve(scenario(Quota(enqueued_tokens={OPENAI_MODEL: tokens}))) as (sim, base_url):
        client = openai_client(base_url)
        first = openai_batch(client, data)
        sim.advance(PENDING_S)
        assert client.batches.cancel(first).status == "cancelling"
        during = openai_batch(client, data)
        sim.advance(FINALIZING_S)
        assert client.batches.retrieve(first).status == "cancelled"
        after = openai_batch(client, data)
        sim.advance(PENDING_S)
        assert client.batches.retrieve(during).status == "failed"
        assert client.batches.retrieve(after).status == "in_progress"


def test_openai_limits_are_per_model_and_concurrent_jobs_do_not_apply() -> None:
    """Another model's batches do not count, and `concurrent_jobs` is Gemini's alone."""
    quota = Quota(enqueued_tokens={"gpt-image-1-mini": 1}, concurrent_jobs=1)
    with serve(scenario(quota)) as (sim, base_url):
        client = openai_client(base_url)
        ids = [openai_batch(client, openai_input(2)) for _ in range(3)]
        sim.advance(PENDING_S)
        assert [client.batches.retrieve(b).status for b in ids] == ["in_progress"] * 3


# -- Gemini ------------------------------------------------------------------------------------


def gemini_client(base_url: str) -> genai.Client:
    """The real google-genai SDK, with its default (no) retries."""
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=base_url))


INLINE: list[Any] = [
    {"contents": "a red fox", "metadata": {"key": "a"}},
    {"contents": "a blue fox", "metadata": {"key": "b"}},
    {"contents": "a green fox", "metadata": {"key": "c"}},
]


def part(text: str) -> dict[str, Any]:
    """A user content of one text part, as the REST API spells it."""
    return {"role": "user", "parts": [{"text": text}]}


def gemini_file(client: genai.Client, tmp_path: Path) -> str:
    """Upload the JSONL form of `INLINE`; the file's name."""
    path = tmp_path / "in.jsonl"
    lines = [
        {"key": item["metadata"]["key"], "request": {"contents": [part(item["contents"])]}}
        for item in INLINE
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    assert uploaded.name is not None
    return uploaded.name


def gemini_tokens_of_a_job(src: Any = INLINE, model: str = GEMINI_MODEL, **fields: Any) -> int:
    """The sum of `totalTokenCount` over a finished inline job of `src`, with no quota."""
    with serve(scenario(**fields)) as (sim, base_url):
        client = gemini_client(base_url)
        job = client.batches.create(model=model, src=src)
        sim.advance(PENDING_S + RUNNING_S)
        done = client.batches.get(name=job.name or "")
        assert done.state == types.JobState.JOB_STATE_SUCCEEDED
        assert done.dest is not None
        responses = done.dest.inlined_responses or []
        total = 0
        for item in responses:
            assert item.response is not None
            assert item.response.usage_metadata is not None
            total += item.response.usage_metadata.total_token_count or 0
        face = sim.faces["gemini"]
        assert isinstance(face, GeminiFace)
        assert face._batches[(job.name or "").removeprefix("batches/")].enqueued_tokens == total
        return total


def assert_quota_refusal(
    sim: Simulator, client: genai.Client, src: Any, config: dict[str, str] | None = None
) -> None:
    """Creating a job of `src` raises ClientError 429 RESOURCE_EXHAUSTED after exactly one
    request (the SDK does not retry by default)."""
    before = sim.calls.count("gemini.batches.create")
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model=GEMINI_MODEL, src=src, config=config)
    assert sim.calls.count("gemini.batches.create") == before + 1
    assert sim.calls.statuses("gemini.batches.create")[-1] == 429
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.details == {
        "error": {"code": 429, "message": GEMINI_QUOTA_MESSAGE, "status": "RESOURCE_EXHAUSTED"}
    }


@pytest.mark.parametrize("source", ["inline", "file"])
def test_gemini_create_past_the_token_limit_is_refused_429(source: str, tmp_path: Path) -> None:
    """Three jobs of equal tokens, a limit holding two: the third create is a 429 and no job;
    after the two succeed, a new job is created."""
    tokens = gemini_tokens_of_a_job()
    quota = Quota(enqueued_tokens={GEMINI_MODEL: 2 * tokens})
    with serve(scenario(quota)) as (sim, base_url):
        client = gemini_client(base_url)
        src = INLINE if source == "inline" else gemini_file(client, tmp_path)
        first = client.batches.create(model=GEMINI_MODEL, src=src)
        second = client.batches.create(model=GEMINI_MODEL, src=src)
        assert_quota_refusal(sim, client, src)
        assert len(list(client.batches.list())) == 2

        sim.advance(PENDING_S)  # running still counts
        assert_quota_refusal(sim, client, src)
        sim.advance(RUNNING_S)
        for job in (first, second):
            assert client.batches.get(name=job.name or "").state == "JOB_STATE_SUCCEEDED"
        fresh = client.batches.create(model=GEMINI_MODEL, src=src)
        assert fresh.state == types.JobState.JOB_STATE_PENDING
        # another model has its own limit (none here)
        client.batches.create(model="gemini-3.1-flash-image", src=INLINE)


def test_gemini_concurrent_jobs_limit_and_cancel_frees_it() -> None:
    """`concurrent_jobs: 2`: a third create is a 429 until one job is terminal (cancelled
    jobs count once cancelled, which Gemini is at once)."""
    with serve(scenario(Quota(concurrent_jobs=2))) as (sim, base_url):
        client = gemini_client(base_url)
        first = client.batches.create(model=GEMINI_MODEL, src=INLINE)
        client.batches.create(model="gemini-3.1-flash-image", src=INLINE)
        assert_quota_refusal(sim, client, INLINE)
        client.batches.cancel(name=first.name or "")
        assert client.batches.get(name=first.name or "").state == "JOB_STATE_CANCELLED"
        third = client.batches.create(model=GEMINI_MODEL, src=INLINE)
        assert_quota_refusal(sim, client, INLINE)
        sim.advance(PENDING_S + RUNNING_S)
        assert client.batches.get(name=third.name or "").state == "JOB_STATE_SUCCEEDED"
        client.batches.create(model=GEMINI_MODEL, src=INLINE)


def test_gemini_builtin_quota_scenario_per_job() -> None:
    """`cg_scenario=quota` in a display name applies the built-in's limits (2 jobs)."""
    with serve(scenario()) as (sim, base_url):
        client = gemini_client(base_url)
        config = {"display_name": "nightly cg_scenario=quota"}
        for _ in range(2):
            client.batches.create(model=GEMINI_MODEL, src=INLINE, config=config)
        assert_quota_refusal(sim, client, INLINE, config)


def test_gemini_enqueued_tokens_match_reported_usage_with_thinking_and_sizes() -> None:
    """Enqueued tokens are the usage the results report: sizes, TEXT+IMAGE or IMAGE only,
    drawn thinking tokens."""
    src: list[Any] = [
        {"contents": "a fox", "metadata": {"key": "k1"},
         "config": {"response_modalities": ["IMAGE"], "image_config": {"image_size": "2K"}}},
        {"contents": "a much longer prompt about a fox in the snow", "metadata": {"key": "k2"},
         "config": {"image_config": {"image_size": "4K", "aspect_ratio": "16:9"}}},
        {"contents": "no key here"},
    ]  # fmt: skip
    spread = TokenSpread(median=400, max=4000)
    total = gemini_tokens_of_a_job(src, "gemini-3.1-flash-image", thinking_tokens=spread)
    assert total > 1680 + 2520


# -- cost and scenario files ---------------------------------------------------------------------


def test_enqueued_tokens_of_50000_requests_are_cheap() -> None:
    """Counting a 50,000-request job draws no image: well under a second or two."""
    gemini_table = load_usage_table()
    request = {"contents": [{"parts": [{"text": "a red fox in the snow"}]}]}
    openai_table = UsageTable.load()
    body = {"model": OPENAI_MODEL, "prompt": "a red fox in the snow", "size": "1024x1536"}
    started = time.perf_counter()
    gemini = sum(
        gemini_enqueued_tokens(GEMINI_MODEL, request, gemini_table, key=f"k{i}")
        for i in range(50_000)
    )
    openai = sum(
        openai_enqueued_tokens(
            parse_image_call(body, openai_table, edit=False, key=f"c{i}"), openai_table
        )
        for i in range(50_000)
    )
    assert time.perf_counter() - started < 3
    assert gemini == 50_000 * gemini_enqueued_tokens(GEMINI_MODEL, request, gemini_table)
    assert openai > 50_000


def test_scenario_file_with_quota_loads(tmp_path: Path) -> None:
    """`quota:` in a scenario file: per-model token limits and concurrent jobs."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\ndescription: x\nquota:\n  enqueued_tokens:\n    gpt-image-1: 2000000\n"
        "  concurrent_jobs: 3\n"
    )
    loaded = load_scenario(str(path))
    assert loaded.quota == Quota(enqueued_tokens={"gpt-image-1": 2_000_000}, concurrent_jobs=3)
    assert loaded.quota.token_limit("models/gpt-image-1") == 2_000_000
    assert loaded.quota.token_limit("gpt-image-2") is None
    assert load_scenario("succeeded").quota == Quota()


@pytest.mark.parametrize(
    ("quota", "where"),
    [
        ("  enqueued_tokens:\n    gpt-image-1: -1\n", r"quota\.enqueued_tokens\.gpt-image-1: "),
        ("  concurrent_jobs: -2\n", r"quota\.concurrent_jobs: "),
        ("  concurrent_jobs: 0\n", r"quota\.concurrent_jobs: "),
        ("  per_minute: 5\n", r"quota\.per_minute: Extra inputs are not permitted"),
        ("  enqueued_tokens: lots\n", r"quota\.enqueued_tokens: "),
    ],
)
def test_bad_quota_is_refused_naming_file_and_field(tmp_path: Path, quota: str, where: str) -> None:
    """A negative limit, zero jobs or an unknown key fails with the file and the field."""
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\ndescription: x\nquota:\n{quota}")
    with pytest.raises(UnknownScenarioError, match=rf"mine\.yaml: invalid scenario: {where}"):
        load_scenario(str(path))


def test_builtin_quota_scenario() -> None:
    """The built-in `quota` scenario has small limits."""
    quota = load_scenario("quota").quota
    assert quota.concurrent_jobs == 2
    assert quota.token_limit(OPENAI_MODEL) == 20_000
    assert quota.token_limit(GEMINI_MODEL) == 20_000
