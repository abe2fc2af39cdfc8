"""The OpenAI face, driven by the real `openai` Python SDK through both transports.

Every test runs twice: through the in-process respx face (`simulate()`) and through the real
HTTP server in a thread (`serve_in_thread`). Clients validate responses strictly, so a missing
required field fails the test. The simulated clock is stopped (time_scale=0) and tests move it
with `sim.advance()`, so nothing depends on wall time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from PIL import Image

from costguard.resources import data_dir
from costguard.simulator import Simulator, simulate
from costguard.simulator.core import SimRequest
from costguard.simulator.openai import OpenAILimits, error_body
from costguard.simulator.server import serve_in_thread

KEY = "sk-test-costguard"
ENDPOINT = "/v1/images/generations"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Env:
    """One simulator and an SDK client pointed at it through one transport."""

    sim: Simulator
    client: OpenAI
    transport: str
    base_url: str

    def async_client(self) -> AsyncOpenAI:
        """An async client on the same transport."""
        return AsyncOpenAI(api_key=KEY, base_url=self.base_url, _strict_response_validation=True)


@pytest.fixture(params=["mock", "server"])
def make_env(request: pytest.FixtureRequest) -> Iterator[Callable[..., Env]]:
    """Factory: `make_env(scenario, api_keys=None, **client_options)` on the param's transport."""
    transport: str = request.param
    with contextlib.ExitStack() as stack:
        sims: list[Simulator] = []

        def make(
            scenario: str = "succeeded", api_keys: set[str] | None = None, **options: Any
        ) -> Env:
            if transport == "mock":
                sim = stack.enter_context(simulate(scenario, api_keys=api_keys, time_scale=0))
                base_url = "https://api.openai.com/v1"
            else:
                sim = Simulator(scenario, api_keys=api_keys, time_scale=0)
                base_url = stack.enter_context(serve_in_thread(sim)) + "/v1"
            sims.append(sim)
            options.setdefault("api_key", KEY)
            client = OpenAI(base_url=base_url, _strict_response_validation=True, **options)
            stack.callback(client.close)
            return Env(sim, client, transport, base_url)

        yield make
        for sim in sims:
            assert not sim.unmatched, sim.unmatched
            assert not sim.failures, sim.failures


def image_lines(count: int, *, model: str = "gpt-image-1", **body: Any) -> list[dict[str, Any]]:
    """`count` batch input lines for /v1/images/generations."""
    return [
        {
            "custom_id": f"img-{i}",
            "method": "POST",
            "url": ENDPOINT,
            "body": {"model": model, "prompt": f"a red fox, study {i}", "quality": "low", **body},
        }
        for i in range(count)
    ]


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """JSONL bytes of `lines`."""
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(env: Env, data: bytes, name: str = "batch.jsonl") -> str:
    """Upload `data` with purpose=batch; the file id."""
    return env.client.files.create(file=(name, data), purpose="batch").id


def create(env: Env, data: bytes, **options: Any) -> Any:
    """Upload `data` and create a batch over it."""
    file_id = upload(env, data)
    return env.client.batches.create(
        input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h", **options
    )


def poll(env: Env, batch_id: str, step_s: float = 1800) -> Any:
    """Retrieve until terminal, moving simulated time `step_s` between polls."""
    for _ in range(200):
        batch = env.client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        env.sim.advance(step_s)
    pytest.fail(f"{batch_id} never reached a terminal status")


def lines_of(env: Env, file_id: str | None) -> list[dict[str, Any]]:
    """The parsed JSONL lines of a file (none for a missing file id)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in env.client.files.content(file_id).text.splitlines()]


def decode(b64: str) -> Image.Image:
    """A base64 image, fully decoded by Pillow."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


N = 12
EXPECTED = {
    # scenario: (status, completed, failed, error codes in the error file)
    "succeeded": ("completed", 12, 0, set()),
    "expired": ("expired", 7, 5, {"batch_expired"}),
    "cancelled": ("cancelled", 6, 6, {"batch_cancelled"}),
    "failed": ("failed", 0, 0, set()),
    "refusals": ("completed", 9, 3, {"moderation_blocked"}),
    "flaky": ("completed", 12, 0, set()),
    "slow": ("completed", 12, 0, set()),
    "shuffled": ("completed", 12, 0, set()),
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_batch_cycle_under_each_scenario(make_env: Callable[..., Env], scenario: str) -> None:
    """Upload, create, poll, download: status, counts, files and images follow the scenario."""
    env = make_env(scenario)
    status, completed, failed, codes = EXPECTED[scenario]
    batch = poll(env, create(env, jsonl(image_lines(N))).id)
    output, errors = lines_of(env, batch.output_file_id), lines_of(env, batch.error_file_id)

    assert batch.status == status
    assert len(output) == completed
    assert len(errors) == failed
    found = {(line["error"] or line["response"]["body"]["error"])["code"] for line in errors}
    assert found == codes
    for line in output:
        body = line["response"]["body"]
        assert line["error"] is None
        assert line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        assert decode(body["data"][0]["b64_json"]).format == "PNG"
        assert body["usage"]["output_tokens"] == 272
    if status == "failed":
        assert batch.errors is not None
        assert "failed" in batch.errors.data[0].message
        assert batch.request_counts.total == 0
        return
    assert batch.request_counts.model_dump() == {
        "total": N,
        "completed": completed,
        "failed": failed,
    }
    assert batch.usage is not None
    assert batch.usage.output_tokens == sum(
        line["response"]["body"]["usage"]["output_tokens"] for line in output
    )
    assert batch.usage.input_tokens == sum(
        line["response"]["body"]["usage"]["input_tokens"] for line in output
    )
    ids = [line["custom_id"] for line in output]
    if scenario == "shuffled":
        assert ids != sorted(ids, key=lambda cid: int(cid.split("-")[1]))
        assert sorted(ids) == sorted(f"img-{i}" for i in range(N))
    if scenario == "refusals":
        assert sorted(line["custom_id"] for line in errors) == ["img-11", "img-3", "img-7"]
        assert all(line["response"]["status_code"] == 400 for line in errors)
        assert all(line["error"] is None for line in errors)
    if scenario == "expired":
        assert batch.expired_at == batch.created_at + 86400
        assert all(line["response"] is None for line in errors)
    if scenario == "flaky":
        statuses = [call[3] for call in env.sim.calls.calls]
        assert 429 in statuses
        assert 503 in statuses


def test_per_job_scenario_from_metadata(make_env: Callable[..., Env]) -> None:
    """`metadata={"cg_scenario": NAME}` runs one job under another scenario, no restart."""
    env = make_env("succeeded")
    data = jsonl(image_lines(5))
    normal = poll(env, create(env, data).id)
    expired = poll(env, create(env, data, metadata={"cg_scenario": "expired"}).id)
    assert normal.status == "completed"
    assert expired.status == "expired"
    assert [job.scenario for job in env.sim.jobs] == ["succeeded", "expired"]


def test_unknown_scenario_is_a_400_listing_the_builtins(make_env: Callable[..., Env]) -> None:
    """An unknown cg_scenario answers 400 naming the scenarios that exist."""
    env = make_env()
    with pytest.raises(openai.BadRequestError, match="unknown scenario 'nope'") as caught:
        create(env, jsonl(image_lines(1)), metadata={"cg_scenario": "nope"})
    assert "expired" in caught.value.message
    assert "succeeded" in caught.value.message


def test_statuses_follow_the_clock(make_env: Callable[..., Env]) -> None:
    """validating -> in_progress (counts grow) -> finalizing -> completed, timestamps in order."""
    env = make_env()
    batch = create(env, jsonl(image_lines(10)))
    assert batch.status == "validating"
    assert batch.expires_at == batch.created_at + 86400
    seen = []
    for step in (600, 1800, 1800, 300):
        env.sim.advance(step)
        seen.append(env.client.batches.retrieve(batch.id))
    assert [b.status for b in seen] == ["in_progress", "in_progress", "finalizing", "completed"]
    assert [b.request_counts.completed for b in seen] == [0, 5, 10, 10]
    done = seen[-1]
    assert done.in_progress_at == batch.created_at + 600
    assert done.finalizing_at == batch.created_at + 4200
    assert done.completed_at == batch.created_at + 4500
    assert done.model == "gpt-image-1"


def test_client_cancel_keeps_the_finished_part(make_env: Callable[..., Env]) -> None:
    """Cancel mid-run: cancelling, then cancelled with output + batch_cancelled lines."""
    env = make_env()
    batch = create(env, jsonl(image_lines(10)))
    env.sim.advance(600 + 1800)
    cancelling = env.client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    env.sim.advance(300)
    done = env.client.batches.retrieve(batch.id)
    assert done.status == "cancelled"
    assert done.request_counts.model_dump() == {"total": 10, "completed": 5, "failed": 5}
    output, errors = lines_of(env, done.output_file_id), lines_of(env, done.error_file_id)
    assert [line["custom_id"] for line in output] == [f"img-{i}" for i in range(5)]
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert env.client.batches.cancel(batch.id).status == "cancelled"


def test_cancel_during_validation_leaves_no_files(make_env: Callable[..., Env]) -> None:
    """A job cancelled before validation ends is cancelled with no counts and no files."""
    env = make_env()
    batch = create(env, jsonl(image_lines(3)))
    assert env.client.batches.cancel(batch.id).status == "cancelling"
    done = poll(env, batch.id)
    assert done.status == "cancelled"
    assert done.output_file_id is None
    assert done.error_file_id is None
    assert done.request_counts.total == 0


def test_cancel_of_a_finished_batch_is_rejected(make_env: Callable[..., Env]) -> None:
    """Cancelling a completed batch answers 400 naming its status."""
    env = make_env()
    batch = poll(env, create(env, jsonl(image_lines(2))).id)
    with pytest.raises(openai.BadRequestError, match="status 'completed'"):
        env.client.batches.cancel(batch.id)


def test_batch_list_pages_newest_first(make_env: Callable[..., Env]) -> None:
    """batches.list pages with limit/after, newest first, has_more on every page."""
    env = make_env()
    file_id = upload(env, jsonl(image_lines(1)))
    created = []
    for _ in range(5):
        created.append(
            env.client.batches.create(
                input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h"
            ).id
        )
        env.sim.advance(1)
    first = env.client.batches.list(limit=2)
    assert [b.id for b in first.data] == created[::-1][:2]
    assert first.has_more is True
    assert [b.id for b in env.client.batches.list(limit=2)] == created[::-1]
    last = env.client.batches.list(limit=2, after=created[1])
    assert [b.id for b in last.data] == [created[0]]
    assert last.has_more is False
    assert env.sim.calls.count("openai.batches.list") == 5


def test_file_lifecycle(make_env: Callable[..., Env]) -> None:
    """Files: create, retrieve, list with paging, content round-trip, delete, then 404."""
    env = make_env()
    data = jsonl(image_lines(3))
    ids = [upload(env, data, f"part-{i}.jsonl") for i in range(3)]
    got = env.client.files.retrieve(ids[0])
    assert (got.filename, got.bytes, got.purpose, got.status) == (
        "part-0.jsonl",
        len(data),
        "batch",
        "processed",
    )
    assert got.expires_at == got.created_at + 30 * 86400
    page = env.client.files.list(purpose="batch", limit=2)
    assert page.has_more is True
    assert {f.id for f in env.client.files.list(purpose="batch", limit=2)} == set(ids)
    assert env.client.files.content(ids[1]).content == data
    deleted = env.client.files.delete(ids[1])
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError, match=f"No such File object: {ids[1]}"):
        env.client.files.retrieve(ids[1])
    assert [u.filename for u in env.sim.uploads] == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]


def test_result_files_are_batch_output_file_objects(make_env: Callable[..., Env]) -> None:
    """Output and error files are FileObjects with purpose batch_output and the batch's name."""
    env = make_env("refusals")
    batch = poll(env, create(env, jsonl(image_lines(4))).id)
    output = env.client.files.retrieve(batch.output_file_id or "")
    errors = env.client.files.retrieve(batch.error_file_id or "")
    assert (output.purpose, errors.purpose) == ("batch_output", "batch_output")
    assert output.filename == f"{batch.id}_output.jsonl"
    assert errors.filename == f"{batch.id}_error.jsonl"
    assert output.bytes == len(env.client.files.content(output.id).content)
    listed = {f.id for f in env.client.files.list(purpose="batch_output")}
    assert listed == {output.id, errors.id}


def test_output_expires_after_sets_the_result_file_expiry(make_env: Callable[..., Env]) -> None:
    """output_expires_after makes the output file expire that long after it is created."""
    env = make_env()
    batch = create(
        env, jsonl(image_lines(1)), output_expires_after={"anchor": "created_at", "seconds": 3600}
    )
    done = poll(env, batch.id)
    output = env.client.files.retrieve(done.output_file_id or "")
    assert output.expires_at == output.created_at + 3600


def test_streamed_download_matches_the_whole_file(make_env: Callable[..., Env]) -> None:
    """A streamed download of a generated output file equals the buffered one."""
    env = make_env()
    batch = poll(env, create(env, jsonl(image_lines(300))).id)
    file_id = batch.output_file_id or ""
    with env.client.files.with_streaming_response.content(file_id) as response:
        streamed = b"".join(response.iter_bytes())
    assert streamed == env.client.files.content(file_id).content
    assert streamed.count(b"\n") == 300


def test_async_client_downloads_a_result_file(make_env: Callable[..., Env]) -> None:
    """AsyncOpenAI reads a generated (streamed) result file too."""
    env = make_env()
    batch = poll(env, create(env, jsonl(image_lines(3))).id)

    async def download() -> bytes:
        async with env.async_client() as client:
            response = await client.files.content(batch.output_file_id or "")
            return response.content

    assert asyncio.run(download()).count(b"\n") == 3


VALIDATION_CASES = [
    ("invalid_json", [b'{"custom_id": "a", "method": '], "invalid_json_line", 1),
    (
        "missing_method",
        [{"custom_id": "a", "url": ENDPOINT, "body": {"model": "gpt-image-1", "prompt": "x"}}],
        "missing_required_parameter",
        1,
    ),
    (
        "url_mismatch",
        [
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/images/edits",
                "body": {"model": "gpt-image-1", "prompt": "x"},
            }
        ],
        "url_mismatch",
        1,
    ),
    ("duplicate_custom_id", [*image_lines(2), image_lines(1)[0]], "duplicate_custom_id", 3),
    (
        "model_mismatch",
        [*image_lines(1), *image_lines(2, model="gpt-image-1.5")[1:]],
        "model_mismatch",
        2,
    ),
    ("empty_file", [], "empty_file", None),
    ("too_many_tasks", image_lines(4), "too_many_tasks", None),
]


@pytest.mark.parametrize(
    ("case", "lines", "code", "line"), VALIDATION_CASES, ids=[c[0] for c in VALIDATION_CASES]
)
def test_invalid_input_fails_the_batch_with_line_numbers(
    make_env: Callable[..., Env], case: str, lines: list[Any], code: str, line: int | None
) -> None:
    """An invalid input file is accepted, then the batch fails with errors.data naming the line."""
    env = make_env()
    env.sim.openai.limits = OpenAILimits(max_requests=3)
    data = b"".join(x + b"\n" if isinstance(x, bytes) else jsonl([x]) for x in lines)
    batch = create(env, data)
    assert batch.status == "validating"
    done = poll(env, batch.id)
    assert done.status == "failed"
    assert done.failed_at == done.created_at + 600
    assert done.errors is not None
    assert (done.errors.data[0].code, done.errors.data[0].line) == (code, line)
    assert (done.output_file_id, done.error_file_id) == (None, None)


def test_upload_rejects_a_non_jsonl_batch_file(make_env: Callable[..., Env]) -> None:
    """purpose=batch with a .txt file answers the real 400."""
    env = make_env()
    with pytest.raises(
        openai.BadRequestError, match=r"Invalid file format for Batch API\. Must be \.jsonl"
    ):
        upload(env, b"{}\n", "batch.txt")


def test_upload_rejects_a_file_over_the_batch_limit(make_env: Callable[..., Env]) -> None:
    """A batch input file over the size limit answers 400 'File is too large.'."""
    env = make_env()
    env.sim.openai.limits = OpenAILimits(max_batch_input_bytes=100)
    with pytest.raises(openai.BadRequestError, match=r"File is too large\."):
        upload(env, jsonl(image_lines(3)))


CREATE_ERRORS = [
    ("window", {"completion_window": "48h"}, openai.BadRequestError, "Invalid value: '48h'"),
    ("endpoint", {"endpoint": "/v1/foo"}, openai.BadRequestError, "Invalid value: '/v1/foo'"),
    (
        "not_simulated",
        {"endpoint": "/v1/chat/completions"},
        openai.BadRequestError,
        "not simulated",
    ),
    (
        "metadata_pairs",
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        openai.BadRequestError,
        "too many properties",
    ),
    ("metadata_value", {"metadata": {"k": "v" * 513}}, openai.BadRequestError, "string too long"),
    (
        "input_file",
        {"input_file_id": "file-missing"},
        openai.NotFoundError,
        "No such File object: file-missing",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "error", "message"), CREATE_ERRORS, ids=[c[0] for c in CREATE_ERRORS]
)
def test_create_rejects_bad_calls(
    make_env: Callable[..., Env],
    case: str,
    change: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    """batches.create checks window, endpoint, metadata and the file before creating anything."""
    env = make_env()
    options = {
        "input_file_id": upload(env, jsonl(image_lines(1))),
        "endpoint": ENDPOINT,
        "completion_window": "24h",
        **change,
    }
    with pytest.raises(error, match=message):
        env.client.batches.create(**options)
    assert env.sim.jobs == []


def test_unknown_ids_are_404(make_env: Callable[..., Env]) -> None:
    """Unknown file and batch ids answer 404 on every endpoint that takes one."""
    env = make_env()
    calls: list[Callable[[], object]] = [
        lambda: env.client.files.retrieve("file-nope"),
        lambda: env.client.files.content("file-nope"),
        lambda: env.client.files.delete("file-nope"),
        lambda: env.client.batches.retrieve("batch_nope"),
        lambda: env.client.batches.cancel("batch_nope"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()


def test_wrong_and_missing_keys_are_401(make_env: Callable[..., Env]) -> None:
    """With api_keys set, another key gets invalid_api_key; no key at all gets the real 401."""
    env = make_env(api_keys={KEY}, api_key="sk-wrong-key-123456")
    with pytest.raises(openai.AuthenticationError) as wrong:
        env.client.batches.list()
    assert wrong.value.code == "invalid_api_key"
    assert "sk-wrong-key-123456" not in wrong.value.message
    raw = httpx2.get(env.base_url + "/batches")
    assert raw.status_code == 401
    assert raw.json()["error"]["message"].startswith("You didn't provide an API key.")


def test_sync_generate_usage_follows_the_table(make_env: Callable[..., Env]) -> None:
    """images.generate: usage per model x size x quality, input tokens from the prompt."""
    env = make_env()
    cases = [
        ("gpt-image-1", "1024x1024", "low", 272),
        ("gpt-image-1-mini", "1024x1536", "medium", 1584),
        ("gpt-image-1.5", "1536x1024", "high", 6208),
        ("gpt-image-2", "1024x1024", "medium", 1756),
        ("gpt-image-2", "1536x1024", "high", 5488),
    ]
    for model, size, quality, tokens in cases:
        result = env.client.images.generate(
            model=model, prompt="a red fox", size=size, quality=quality
        )  # type: ignore[arg-type]
        assert result.usage is not None
        assert result.usage.output_tokens == tokens
        assert result.usage.input_tokens == 3  # ceil(9 bytes / 4)
        assert (result.size, result.quality) == (size, quality)
        assert decode(result.data[0].b64_json or "").format == "PNG"  # type: ignore[index]


def test_sync_generate_n_and_jpeg(make_env: Callable[..., Env]) -> None:
    """n images in the asked output_format, each billed."""
    env = make_env()
    result = env.client.images.generate(
        model="gpt-image-1", prompt="a fox", n=2, output_format="jpeg", quality="low"
    )
    assert result.data is not None
    assert [decode(d.b64_json or "").format for d in result.data] == ["JPEG", "JPEG"]
    assert result.usage is not None
    assert result.usage.output_tokens == 2 * 272


def test_sync_edit_counts_input_images(make_env: Callable[..., Env]) -> None:
    """images.edit (multipart) with two images bills 194 image tokens per input image."""
    env = make_env()
    png = base64.b64decode(
        env.client.images.generate(model="gpt-image-1", prompt="x").data[0].b64_json or ""
    )  # type: ignore[index]
    result = env.client.images.edit(
        model="gpt-image-1",
        prompt="make it blue",
        image=[("a.png", png, "image/png"), ("b.png", png, "image/png")],
        quality="low",
    )
    assert result.usage is not None
    assert result.usage.input_tokens_details.image_tokens == 388
    assert result.usage.output_tokens == 272
    assert decode(result.data[0].b64_json or "").format == "PNG"  # type: ignore[index]


def test_sync_refusal_is_moderation_blocked(make_env: Callable[..., Env]) -> None:
    """A prompt with [refuse] answers 400 moderation_blocked, the real error shape."""
    env = make_env()
    with pytest.raises(openai.BadRequestError) as caught:
        env.client.images.generate(model="gpt-image-1", prompt="a fox [refuse]")
    assert (caught.value.code, caught.value.type) == (
        "moderation_blocked",
        "image_generation_user_error",
    )
    assert "rejected by the safety system" in caught.value.message


def test_refusals_scenario_refuses_every_fourth_sync_call(make_env: Callable[..., Env]) -> None:
    """Under `refusals`, sync calls at positions 3, 7, ... are refused."""
    env = make_env("refusals")
    refused = []
    for i in range(8):
        try:
            env.client.images.generate(model="gpt-image-1", prompt=f"fox {i}")
        except openai.BadRequestError:
            refused.append(i)
    assert refused == [3, 7]


def test_unknown_model_is_404_sync_and_a_404_line_in_batch(make_env: Callable[..., Env]) -> None:
    """An unknown model: 404 model_not_found synchronously, a 404 error-file line in a batch."""
    env = make_env()
    with pytest.raises(openai.NotFoundError) as caught:
        env.client.images.generate(model="gpt-image-9", prompt="x")
    assert caught.value.code == "model_not_found"
    batch = poll(env, create(env, jsonl(image_lines(2, model="gpt-image-9"))).id)
    assert batch.status == "completed"
    assert batch.output_file_id is None
    errors = lines_of(env, batch.error_file_id)
    assert [line["response"]["status_code"] for line in errors] == [404, 404]
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"


def test_batch_edits_with_image_references(make_env: Callable[..., Env]) -> None:
    """A /v1/images/edits batch (JSON image references) bills the input images."""
    env = make_env()
    lines = [
        {
            "custom_id": "edit-0",
            "method": "POST",
            "url": "/v1/images/edits",
            "body": {
                "model": "gpt-image-1.5",
                "prompt": "make it blue",
                "images": [{"image_url": "https://example.com/a.png"}, {"file_id": "file-x"}],
                "quality": "high",
                "size": "1024x1536",
            },
        }
    ]
    file_id = upload(env, jsonl(lines))
    batch = env.client.batches.create(
        input_file_id=file_id, endpoint="/v1/images/edits", completion_window="24h"
    )
    done = poll(env, batch.id)
    usage = lines_of(env, done.output_file_id)[0]["response"]["body"]["usage"]
    assert usage["input_tokens_details"]["image_tokens"] == 388
    assert usage["output_tokens"] == 6240


def test_flaky_calls_are_retried_by_the_sdk(make_env: Callable[..., Env]) -> None:
    """Every 3rd call is a 429/503 with retry hints; the SDK's retries get through."""
    env = make_env("flaky")
    for _ in range(6):
        env.client.batches.list()
    statuses = env.sim.calls.statuses("openai.batches.list")
    assert statuses == [200, 200, 429, 200, 200, 503, 200, 200]


def test_flaky_calls_surface_without_retries(make_env: Callable[..., Env]) -> None:
    """With max_retries=0 the third call raises the provider's 429 with its hint."""
    env = make_env("flaky", max_retries=0)
    env.client.batches.list()
    env.client.batches.list()
    with pytest.raises(openai.RateLimitError) as caught:
        env.client.batches.list()
    assert caught.value.response.headers["retry-after-ms"] == "50"
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


def test_result_files_are_generated_lazily() -> None:
    """The output file's content is an iterator of chunks, not a prebuilt body."""
    sim = Simulator(time_scale=0)
    face = sim.openai
    auth = [("authorization", f"Bearer {KEY}")]
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.jsonl"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + jsonl(image_lines(2000))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [*auth, ("content-type", f"multipart/form-data; boundary={boundary}")]
    uploaded = sim.handle(SimRequest.build("POST", "/v1/files", headers=headers, body=body))
    file_id = json.loads(uploaded.read())["id"]
    payload = json.dumps(
        {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
    )
    created = sim.handle(
        SimRequest.build("POST", "/v1/batches", headers=auth, body=payload.encode())
    )
    batch_id = json.loads(created.read())["id"]
    sim.advance(86400)
    batch = json.loads(
        sim.handle(SimRequest.build("GET", f"/v1/batches/{batch_id}", headers=auth)).read()
    )
    content = sim.handle(
        SimRequest.build("GET", f"/v1/files/{batch['output_file_id']}/content", headers=auth)
    )
    assert not isinstance(content.body, bytes)
    first = next(iter(content.body))
    assert 0 < len(first) < 200_000
    assert face.files[batch["output_file_id"]].blob is None


def test_error_fixtures_have_the_api_shape() -> None:
    """Every OpenAI error fixture is exactly {"error": {message, type, param, code, ...}}."""
    folder = data_dir("fixtures") / "openai" / "errors"
    names = sorted(p.stem for p in folder.glob("*.json"))
    assert len(names) >= 15
    for name in names:
        body = error_body(name)
        assert list(body) == ["error"], name
        assert {"message", "type", "param", "code"} <= set(body["error"]), name
        assert int(name[:3]) in {400, 401, 404, 429, 500, 503}, name
