"""What the providers report of a job: its state in costguard's words, and its request counts.

Gemini's SDK drops the API's `batchStats`; `GeminiProvider` reads them from the `batches.get`
answer itself, so Gemini parts show done and failed counts (or `?` when the API gave none).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from costguard.models import ImageRequest
from costguard.providers.gemini import GeminiProvider, batch_counts
from costguard.providers.openai import OpenAIProvider
from costguard.simulator import simulate

FLASH = "gemini-3.1-flash-image"


def gemini_counts(provider: GeminiProvider, job: str) -> tuple[str, str, Any, Any, Any]:
    """(state, raw state, total, done, failed) of a Gemini job."""
    s = provider.status(job)
    return s.state, s.raw_state, s.total, s.completed, s.failed


def test_gemini_inline_job_reports_batch_stats_through_its_life(tmp_path: Path) -> None:
    """Pending and running jobs count their requests (0 done, 0 failed: zeros the API leaves
    out); a finished one counts what succeeded."""
    with simulate("succeeded", time_scale=0) as sim:
        provider = GeminiProvider("sim-key", base=tmp_path)
        requests = [ImageRequest(f"k{i}", f"cat {i}", FLASH, "gemini", "1K") for i in range(3)]
        job = provider.submit(FLASH, requests, "tag", tmp_path / "work").job_id
        assert gemini_counts(provider, job) == ("queued", "JOB_STATE_PENDING", 3, 0, 0)
        sim.advance(1200)
        assert gemini_counts(provider, job) == ("running", "JOB_STATE_RUNNING", 3, 0, 0)
        sim.advance(4000)
        assert gemini_counts(provider, job) == ("succeeded", "JOB_STATE_SUCCEEDED", 3, 3, 0)
        assert len(list(provider.results(job, tmp_path / "work"))) == 3


def test_a_failed_gemini_job_says_why(tmp_path: Path) -> None:
    """A job the Gemini API failed carries the Operation's error (the SDK drops it)."""
    with simulate("failed", time_scale=0) as sim:
        provider = GeminiProvider("sim-key", base=tmp_path)
        requests = [ImageRequest("k", "a cat", FLASH, "gemini", "1K")]
        job = provider.submit(FLASH, requests, "tag", tmp_path / "work").job_id
        sim.advance(10_000)
        status = provider.status(job)
    assert status.state == "failed"
    assert status.error is not None
    code, _, message = status.error.partition(": ")
    assert code.isdigit()
    assert message


def test_gemini_file_job_counts_a_failed_request(tmp_path: Path) -> None:
    """A request the API could not run is counted failed (`failedRequestCount`), the job
    still succeeds."""
    lines = [
        {"key": "good", "request": {"contents": [{"parts": [{"text": "x"}]}]}},
        {"key": "bad", "request": {"contents": [{"parts": [{"text": "y"}]}],
                                   "generationConfig": {"imageConfig": {"imageSize": "8K"}}}},
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with simulate("succeeded", time_scale=0) as sim:
        provider = GeminiProvider("sim-key", base=tmp_path)
        uploaded = provider.client.files.upload(file=str(path), config={"mime_type": "jsonl"})
        assert uploaded.name is not None
        job = provider.client.batches.create(model="gemini-3-pro-image", src=uploaded.name)
        assert job.name is not None
        sim.advance(6000)
        assert gemini_counts(provider, job.name) == ("succeeded", "JOB_STATE_SUCCEEDED", 2, 1, 1)


def answer(path: str, body: bytes, method: str = "GET", status: int = 200) -> httpx2.Response:
    """A response to `method path`, as the SDK's client would get it."""
    request = httpx2.Request(method, f"https://generativelanguage.googleapis.com{path}")
    return httpx2.Response(status, content=body, request=request)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            (
                b'{"name":"batches/a1","metadata":{"batchStats":{"requestCount":"6",'
                b'"successfulRequestCount":"4","failedRequestCount":"1","pendingRequestCount":"1"},'
                b'"state":"BATCH_STATE_RUNNING"}}'
            ),
            (6, 4, 1),
        ),
        (b'{"metadata": {"batchStats" : {"requestCount": "3"}}}', (3, 0, 0)),
        (b'{"name":"batches/a1","metadata":{"state":"BATCH_STATE_PENDING"}}', (None, None, None)),
        (
            (
                b'{"metadata":{"output":{"inlinedResponses":{"inlinedResponses":[{"response":'
                b'{"candidates":[{"content":{"parts":[{"text":"\\"batchStats\\": {\\"requestCount'
                b'\\": \\"9\\"}"}]}}]}}]}}}}'
            ),
            (None, None, None),
        ),
        (b'{"metadata":{"batchStats":{"requestCount":"many"}}}', (None, 0, 0)),
    ],
    ids=["running", "zeros-left-out", "no-stats", "text-that-looks-like-stats", "not-a-number"],
)
def test_gemini_batch_stats_are_read_from_the_answer(
    tmp_path: Path, body: bytes, expected: tuple[Any, ...]
) -> None:
    """The counts come from the answer's `metadata.batchStats` only; missing ones are unknown
    (None, shown `?`), never a guess."""
    provider = GeminiProvider("k", base=tmp_path)
    provider._note_batch_stats(answer("/v1beta/batches/a1", body))
    assert batch_counts(provider._stats["batches/a1"]) == expected


class Unread(httpx2.SyncByteStream):
    """A body that fails the test if anything reads it."""

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("the body was read")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1beta/files/batch-a1:download"),
        ("GET", "/v1beta/batches"),
        ("POST", "/v1beta/batches/a1:cancel"),
        ("POST", "/v1beta/models/gemini-3-pro-image:batchGenerateContent"),
    ],
)
def test_no_other_gemini_answer_is_read(tmp_path: Path, method: str, path: str) -> None:
    """A download (a result file of up to gigabytes) or any other call is left unread."""
    provider = GeminiProvider("k", base=tmp_path)
    request = httpx2.Request(method, f"https://generativelanguage.googleapis.com{path}")
    provider._note_batch_stats(httpx2.Response(200, stream=Unread(), request=request))
    assert provider._stats == {}


def test_openai_states_and_counts_in_costguards_words(tmp_path: Path) -> None:
    """OpenAI's `validating`, `in_progress`, `completed` are queued, running, succeeded, with
    the batch's own request counts (none while it validates)."""
    with simulate("succeeded", time_scale=0) as sim:
        provider = OpenAIProvider("sim-key", base=tmp_path)
        requests = [
            ImageRequest(f"k{i}", f"cat {i}", "gpt-image-1.5", "openai", "1024x1024", "low")
            for i in range(4)
        ]
        job = provider.submit("gpt-image-1.5", requests, "tag", tmp_path / "work").job_id
        seen = []
        for step in (0, 600, 1800, 2100):
            sim.advance(step)
            s = provider.status(job)
            seen.append((s.state, s.raw_state, s.total, s.completed, s.failed))
    assert seen == [
        ("queued", "validating", 0, 0, 0),  # counted once validated, as the API does
        ("running", "in_progress", 4, 0, 0),
        ("running", "in_progress", 4, 2, 0),
        ("succeeded", "completed", 4, 4, 0),
    ]
