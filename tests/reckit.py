"""Test helper (not a test module): drive the real SDKs through record and replay.

`Cycle` runs what a pipeline runs (OpenAI file batch; Gemini inline batch and file batch) with
a pluggable pause between polls and optional extra polls, and summarises every result by key
(finish reason or error code, plus a digest of the image bytes) so two runs compare exactly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types
from openai import OpenAI

from costguard.simulator import Simulator
from costguard.simulator.recording.record import Recorder, record_in_thread
from costguard.simulator.server import serve_in_thread

OPENAI_KEY = "sk-rec-SECRET"
GEMINI_KEY = "AIza-rec-SECRET"
MODEL = "gemini-2.5-flash-image"
STEP_S = 900.0
"""Simulated seconds between recorded polls: several polls per state."""
OPENAI_TERMINAL = {"completed", "failed", "expired", "cancelled"}


def openai_input(count: int = 4) -> bytes:
    """An images batch input; request c2 carries the refusal marker."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {
                    "model": "gpt-image-1",
                    "prompt": f"a fox, take {i}" + (" [refuse]" if i == 2 else ""),
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def inline_src(count: int = 3) -> list[dict[str, Any]]:
    """Inline Gemini requests keyed k0..; k1 carries the refusal marker."""
    return [
        {
            "contents": f"an owl, take {i}" + (" [refuse]" if i == 1 else ""),
            "metadata": {"key": f"k{i}"},
            "config": {"response_modalities": ["IMAGE"]},
        }
        for i in range(count)
    ]


def file_lines(count: int = 3) -> str:
    """A Gemini batch input file keyed f0..."""
    return "".join(
        json.dumps(
            {"key": f"f{i}", "request": {"contents": [{"parts": [{"text": f"a lynx {i}"}]}]}}
        )
        + "\n"
        for i in range(count)
    )


def digest(data: str | bytes | None) -> str | None:
    """A short digest of image data (base64 text is decoded first)."""
    if data is None:
        return None
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


def gemini_summary(
    response: dict[str, Any] | None, error: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """(outcome, image digest) of a Gemini result in wire JSON."""
    if response is None:
        return ("error", (error or {}).get("code"))
    if response.get("promptFeedback"):
        return ("blocked", None)
    candidate = (response.get("candidates") or [{}])[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    image = next((p["inlineData"]["data"] for p in parts if "inlineData" in p), None)
    return (candidate.get("finishReason"), digest(image))


def sdk_summary(response: types.GenerateContentResponse | None) -> tuple[Any, ...]:
    """`gemini_summary` of a response the SDK parsed (inline results)."""
    if response is None:
        return ("error", None)
    if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
        return ("blocked", None)
    candidate = (response.candidates or [types.Candidate()])[0]
    parts = candidate.content.parts if candidate.content else None
    image = next((p.inline_data.data for p in parts or [] if p.inline_data), None)
    reason = candidate.finish_reason.value if candidate.finish_reason else None
    return (reason, digest(image))


def openai_summary(row: dict[str, Any]) -> tuple[Any, ...]:
    """(status or error code, image digest) of an OpenAI result line."""
    response = row.get("response")
    if response is None:
        return ("unfinished", row["error"]["code"])
    body = response["body"]
    if response["status_code"] != 200:
        return (response["status_code"], body["error"]["code"])
    return (200, digest(body["data"][0]["b64_json"]))


@dataclass
class Seen:
    """What one run of the cycle saw."""

    results: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    """Per job (`openai`, `inline`, `file`): key -> summary."""
    polls: dict[str, int] = field(default_factory=dict)
    states: dict[str, list[str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


class Cycle:
    """The three jobs, against `base_url`, with `tick()` between polls and extra polls."""

    def __init__(
        self,
        base_url: str,
        workdir: Path,
        *,
        tick: Callable[[], None] = lambda: None,
        extra_polls: int = 0,
    ) -> None:
        self.openai = OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
        options = types.HttpOptions(base_url=base_url)
        self.gemini = genai.Client(api_key=GEMINI_KEY, http_options=options)
        self.workdir = workdir
        self.tick = tick
        self.extra = extra_polls
        self.seen = Seen()

    def __enter__(self) -> Cycle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both SDK clients (no socket is left for the garbage collector)."""
        self.openai.close()
        self.gemini.close()

    def _wait(
        self,
        label: str,
        get: Callable[[], Any],
        state: Callable[[Any], str],
        done: Callable[[Any], bool],
    ) -> Any:
        states: list[str] = []
        for _ in range(200):
            current = get()
            states.append(state(current))
            if done(current):
                break
            self.tick()
        else:
            raise AssertionError(f"{label} never finished: {states}")
        for _ in range(self.extra):
            current = get()
            states.append(state(current))
        self.seen.polls[label] = len(states)
        self.seen.states[label] = states
        return current

    def run_openai(self) -> None:
        """Upload, create, poll, download both result files."""
        client = self.openai
        upload = client.files.create(file=("in.jsonl", openai_input()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        self.seen.ids["openai"] = batch.id
        done = self._wait(
            "openai",
            lambda: client.batches.retrieve(batch.id),
            lambda b: str(b.status),
            lambda b: b.status in OPENAI_TERMINAL,
        )
        results = {}
        for file_id in (done.output_file_id, done.error_file_id):
            if file_id:
                for line in client.files.content(file_id).text.splitlines():
                    row = json.loads(line)
                    results[row["custom_id"]] = openai_summary(row)
        self.seen.results["openai"] = results

    def run_inline(self) -> None:
        """An inline Gemini batch: create, poll, read the inline results."""
        client = self.gemini
        job = client.batches.create(
            model=MODEL, src=inline_src(), config={"display_name": "inline run"}
        )
        self.seen.ids["inline"] = job.name or ""
        done = self._wait(
            "inline",
            lambda: client.batches.get(name=job.name or ""),
            lambda j: j.state.name,
            lambda j: bool(j.done),
        )
        results = {}
        for item in (done.dest.inlined_responses if done.dest else None) or []:
            results[(item.metadata or {})["key"]] = sdk_summary(item.response)
        self.seen.results["inline"] = results

    def run_file(self) -> None:
        """Upload a JSONL file, run a file batch, download and read the result file."""
        client = self.gemini
        source = self.workdir / "gemini-input.jsonl"
        source.write_text(file_lines(), encoding="utf-8")
        uploaded = client.files.upload(file=str(source), config={"mime_type": "jsonl"})
        job = client.batches.create(
            model=MODEL, src=uploaded.name or "", config={"display_name": "file run"}
        )
        self.seen.ids["file"] = job.name or ""
        done = self._wait(
            "file",
            lambda: client.batches.get(name=job.name or ""),
            lambda j: j.state.name,
            lambda j: bool(j.done),
        )
        results = {}
        if done.dest is not None and done.dest.file_name:
            data = client.files.download(file=done.dest.file_name)
            for line in data.splitlines():
                row = json.loads(line)
                results[row["key"]] = gemini_summary(row.get("response"), row.get("error"))
        self.seen.results["file"] = results

    def run(self) -> Seen:
        """All three jobs, one after the other."""
        self.run_openai()
        self.run_inline()
        self.run_file()
        return self.seen


@contextlib.contextmanager
def recording(out: Path, *, shrink: bool = False) -> Iterator[tuple[Simulator, str, Recorder]]:
    """An upstream `serve_in_thread` simulator (stopped clock) behind a recording proxy.

    Yields:
        The upstream simulator (advance its clock between polls), the proxy's base URL and
        the recorder.
    """
    upstream = Simulator(time_scale=0)
    with (
        serve_in_thread(upstream) as upstream_url,
        record_in_thread(upstream_url, out, shrink=shrink) as (proxy, recorder),
    ):
        yield upstream, proxy, recorder


def record_cycle(out: Path) -> Seen:
    """Record the full cycle into `out`; what the client saw while recording."""
    with recording(out) as (upstream, proxy, _):
        cycle = Cycle(proxy, out.parent, tick=lambda: upstream.advance(STEP_S))
        try:
            return cycle.run()
        finally:
            cycle.close()


def run_cycle(base_url: str, workdir: Path, **options: Any) -> Seen:
    """A whole `Cycle` against `base_url`, its clients closed afterwards."""
    with Cycle(base_url, workdir, **options) as cycle:
        return cycle.run()
