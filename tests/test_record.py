"""`costguard simulate record`: the proxy forwards, names, scrubs and indexes real SDK traffic."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from google import genai
from google.genai import types
from openai import OpenAI
from PIL import Image

from costguard.proxy.scrub import REDACTED, Scrubber
from costguard.simulator import Simulator
from costguard.simulator.images import ImageSource
from costguard.simulator.recording.format import RecordingError, load_manifest
from costguard.simulator.recording.record import record_in_thread, shrink_images
from costguard.simulator.server import bind, serve_in_thread
from reckit import GEMINI_KEY, MODEL, OPENAI_KEY, Seen, record_cycle, recording
from sim_cli import costguard_command, simulate_process

SECRETS = [OPENAI_KEY, GEMINI_KEY, "rec-SECRET", "cookie-SECRET", "azure-SECRET"]
AUTH_HEADERS = ["authorization", "x-goog-api-key", "api-key", "cookie"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Seen]:
    """One recording of the full cycle (OpenAI file; Gemini inline and file), shared."""
    out = tmp_path_factory.mktemp("record") / "nightly"
    return out, record_cycle(out)


def every_file(folder: Path) -> list[Path]:
    """Every file under `folder`, recursively."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_full_cycle_is_indexed_per_job_with_collapsed_timelines(
    recorded: tuple[Path, Seen],
) -> None:
    """The manifest lists each job with its kind, its distinct states and its result files."""
    out, seen = recorded
    folder, manifest = load_manifest(out)
    assert folder == out
    assert manifest.name == "nightly"
    assert manifest.origin is not None
    assert manifest.upstream != manifest.origin
    jobs = {(job.provider, job.kind): job for job in manifest.jobs}
    assert sorted(jobs) == [("gemini", "file"), ("gemini", "inline"), ("openai", "file")]

    openai_job = jobs["openai", "file"]
    assert openai_job.id == seen.ids["openai"]
    assert [s.state for s in openai_job.timeline] == ["validating", "in_progress", "completed"]
    create_and_polls = 1 + seen.polls["openai"]
    assert sum(s.polls for s in openai_job.timeline) == create_and_polls
    assert [r.kind for r in openai_job.results] == ["output", "error"]
    assert openai_job.keys == ["c0", "c1", "c3", "c2"]
    assert openai_job.requests == 4

    inline = jobs["gemini", "inline"]
    assert f"batches/{inline.id}" == seen.ids["inline"]
    assert inline.display_name == "inline run"
    assert [s.state for s in inline.timeline] == [
        "BATCH_STATE_PENDING",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_SUCCEEDED",
    ]
    assert inline.keys == ["k0", "k1", "k2"]
    assert inline.results == []

    file_job = jobs["gemini", "file"]
    assert [r.file_id for r in file_job.results] == [f"batch-{file_job.id}"]
    assert file_job.keys == ["f0", "f1", "f2"]
    assert [(u.provider, u.filename) for u in manifest.uploads] == [
        ("openai", "in.jsonl"),
        ("gemini", None),
    ]
    assert manifest.description == (
        "openai: 1 job (file; completed); gemini: 2 jobs (inline, file; succeeded, succeeded)"
    )


def test_exchanges_are_named_by_route_and_hold_what_was_sent(recorded: tuple[Path, Seen]) -> None:
    """One JSON file per exchange, named `NNNN-<route>.json`; result files are JSONL sidecars."""
    out, seen = recorded
    names = [p.name for p in sorted((out / "exchanges").glob("*.json"))]
    routes = [re.sub(r"^\d{4}-|\.json$", "", name) for name in names]
    polls = seen.polls
    assert routes == [
        "openai.files.create",
        "openai.batches.create",
        *["openai.batches.retrieve"] * polls["openai"],
        "openai.files.content",
        "openai.files.content",
        "gemini.batches.create",
        *["gemini.batches.get"] * polls["inline"],
        "gemini.files.upload",
        "gemini.files.upload",
        "gemini.batches.create",
        *["gemini.batches.get"] * polls["file"],
        "gemini.files.download",
    ]
    for path in (out / "exchanges").glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        assert path.name.startswith(f"{record['seq']:04d}-{record['route']}")
        assert record["complete"] is True
        assert record["response"]["status"] == 200
    sidecars = sorted(p.name for p in (out / "exchanges").iterdir() if p.suffix != ".json")
    assert [re.sub(r"^\d{4}-", "", name) for name in sidecars] == [
        "openai.files.create.request.txt",
        "openai.files.content.response.jsonl",
        "openai.files.content.response.jsonl",
        "gemini.files.upload.request.jsonl",
        "gemini.files.download.response.jsonl",
    ]
    create = json.loads(next((out / "exchanges").glob("*-gemini.batches.create.json")).read_text())
    sent = create["request"]["body"]["json"]["batch"]
    assert sent["displayName"] == "inline run"
    assert create["params"] == {"model": MODEL}


def test_no_key_or_auth_header_survives_anywhere(recorded: tuple[Path, Seen]) -> None:
    """No file of the recording holds a key, an auth header or an upload id."""
    out, _ = recorded
    files = every_file(out)
    assert len(files) > 30
    for path in files:
        data = path.read_bytes()
        lowered = data.lower()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {path.name}"
        for header in AUTH_HEADERS:
            assert f'"{header}"'.encode() not in lowered, f"{header} header in {path.name}"
        assert b"Bearer" not in data
        for upload_id in re.findall(rb"upload_id=([^&\"\s]+)", data):
            assert upload_id == REDACTED.encode(), path.name
    upload_chunks = [
        json.loads(p.read_text())
        for p in (out / "exchanges").glob("*-gemini.files.upload.json")
        if "upload_id" in json.loads(p.read_text())["request"]["query"]
    ]
    assert upload_chunks
    assert all(c["request"]["query"]["upload_id"] == [REDACTED] for c in upload_chunks)


def test_keys_in_query_headers_cookies_and_bodies_are_scrubbed(tmp_path: Path) -> None:
    """`?key=`, `api-key`, cookies and a key echoed inside a body are all scrubbed."""
    out = tmp_path / "rec"
    with (
        recording(out) as (_, proxy, _),
        genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=proxy)) as client,
    ):
        job = client.batches.create(
            model=MODEL,
            src=[{"contents": "a heron", "metadata": {"key": "h0"}}],
            config={"display_name": f"leaky {GEMINI_KEY}"},
        )
        assert job.display_name == f"leaky {GEMINI_KEY}"  # the client gets the real answer
        listed = httpx2.get(
            f"{proxy}/v1beta/batches",
            params={"key": GEMINI_KEY},
            headers={"cookie": "session=cookie-SECRET", "api-key": "azure-SECRET"},
        )
        assert listed.status_code == 200
    for path in every_file(out):
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {path.name}"
    listing = json.loads(next((out / "exchanges").glob("*-gemini.batches.list.json")).read_text())
    assert listing["request"]["query"] == {"key": [REDACTED]}
    assert "cookie" not in listing["request"]["headers"]
    assert "api-key" not in listing["request"]["headers"]
    manifest = load_manifest(out)[1]
    assert manifest.jobs[0].display_name == f"leaky {REDACTED}"


def test_scrubber_drops_and_replaces_every_kind_of_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth headers, cookies, ?key=, upload ids, environment keys and --redact values all go."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-SECRET")
    scrub = Scrubber(["org-SECRET"])
    scrub.learn(
        {"authorization": "Bearer sk-rec-SECRET", "cookie": "a=cookie-SECRET; b=x1"},
        {"key": [GEMINI_KEY]},
    )
    scrub.learn_reply(
        [
            ("X-GUploader-UploadID", "up-SECRET-1"),
            ("X-Goog-Upload-URL", "https://h/upload/v1beta/files?upload_id=up-SECRET-2&x=1"),
        ]
    )
    headers = scrub.headers(
        [
            ("Authorization", "Bearer sk-rec-SECRET"),
            ("X-GUploader-UploadID", "up-SECRET-1"),
            ("Set-Cookie", "s=1"),
            ("X-Note", "sk-rec-SECRET, up-SECRET-2, cookie-SECRET, sk-env-SECRET"),
        ]
    )
    assert headers == {"x-note": "REDACTED, REDACTED, REDACTED, REDACTED"}
    body = b'{"k": "AIza-rec-SECRET", "o": "org-SECRET", "u": "up-SECRET-1"}'
    assert scrub.data(body) == b'{"k": "REDACTED", "o": "REDACTED", "u": "REDACTED"}'
    assert scrub.query({"key": ["x"], "alt": ["media"]}) == {"key": [REDACTED], "alt": ["media"]}
    assert scrub.text("/upload?upload_id=never-seen&a=1") == "/upload?upload_id=REDACTED&a=1"


class BigImages(ImageSource):
    """Large real images (what a real provider returns), to be shrunk in the recording."""

    def image_for(self, seed: str, mime: str = "image/png") -> bytes:
        """A 256x256 noise image of `mime`."""
        image = Image.effect_noise((256, 256), 80).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format={"image/png": "PNG", "image/jpeg": "JPEG"}[mime])
        return buffer.getvalue()

    def b64(self, seed: str, mime: str = "image/png") -> str:
        """The image for `seed`, base64-encoded."""
        return base64.b64encode(self.image_for(seed, mime)).decode("ascii")


def image_type(b64: str) -> str:
    """The format Pillow decodes from base64 image data."""
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        image.load()
        return str(image.format)


def test_shrink_images_stores_small_images_of_the_same_type(tmp_path: Path) -> None:
    """Stored images are small and decode as the same format; the client gets the real ones."""
    upstream = Simulator(time_scale=0)
    upstream.images = BigImages()
    out = tmp_path / "shrunk"
    with (
        serve_in_thread(upstream) as upstream_url,
        record_in_thread(upstream_url, out, shrink=True) as (proxy, _),
    ):
        with OpenAI(base_url=proxy + "/v1", api_key=OPENAI_KEY) as openai_client:
            image = openai_client.images.generate(
                model="gpt-image-1", prompt="a jay", output_format="jpeg"
            )
        options = types.HttpOptions(base_url=proxy)
        with genai.Client(api_key=GEMINI_KEY, http_options=options) as gemini:
            response = gemini.models.generate_content(model=MODEL, contents="a wren")
    served_jpeg = (image.data or [])[0].b64_json or ""
    assert len(served_jpeg) > 20_000
    stored = json.loads(next((out / "exchanges").glob("*-openai.images.generate.json")).read_text())
    stored_jpeg = stored["response"]["body"]["json"]["data"][0]["b64_json"]
    assert len(stored_jpeg) < len(served_jpeg) // 10
    assert image_type(stored_jpeg) == "JPEG"
    assert image.usage is not None
    assert stored["response"]["body"]["json"]["usage"]["output_tokens"] == image.usage.output_tokens

    parts = response.parts or []
    served_png = next(p.inline_data.data for p in parts if p.inline_data)
    assert served_png is not None
    assert len(served_png) > 20_000
    stored = json.loads(
        next((out / "exchanges").glob("*-gemini.models.generateContent.json")).read_text()
    )
    stored_part = stored["response"]["body"]["json"]["candidates"][0]["content"]["parts"][-1]
    assert stored_part["inlineData"]["mimeType"] == "image/png"
    assert image_type(stored_part["inlineData"]["data"]) == "PNG"
    assert len(stored_part["inlineData"]["data"]) < len(served_png) // 10
    assert [c.route for c in load_manifest(out)[1].calls] == [
        "openai.images.generate",
        "gemini.models.generateContent",
    ]


def test_shrink_images_leaves_everything_else_alone() -> None:
    """Only image payloads change: text parts, other fields and unknown types stay as they are."""
    big_png = base64.b64encode(BigImages().image_for("x")).decode()
    body: dict[str, Any] = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "here"},
                        {"inlineData": {"mimeType": "image/png", "data": big_png}},
                        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
                    ]
                }
            }
        ],
        "data": [{"b64_json": "bm90IGFuIGltYWdl"}],
    }
    shrunk = shrink_images(body)
    parts = shrunk["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "here"}
    assert len(parts[1]["inlineData"]["data"]) < len(big_png) // 10
    assert parts[2] == body["candidates"][0]["content"]["parts"][2]
    assert shrunk["data"] == body["data"]
    assert body["candidates"][0]["content"]["parts"][1]["inlineData"]["data"] == big_png


def test_large_bodies_stream_through_and_are_stored_byte_for_byte(tmp_path: Path) -> None:
    """A 3 MB upload and its download pass through intact; both are spilled to sidecars."""
    data = b"".join(bytes(range(256)) * 40 + b"\r\n%d\n" % i for i in range(300))
    assert len(data) > 3_000_000
    out = tmp_path / "big"
    with (
        recording(out) as (upstream, proxy, _),
        OpenAI(base_url=proxy + "/v1", api_key=OPENAI_KEY) as client,
    ):
        uploaded = client.files.create(file=("blob.bin", data), purpose="user_data")
        downloaded = client.files.content(uploaded.id).content
    assert downloaded == data
    assert upstream.uploads[0].bytes == len(data)
    exchanges = out / "exchanges"
    upload_body = next(exchanges.glob("*-openai.files.create.request.*")).read_bytes()
    assert data in upload_body  # the multipart envelope around the exact bytes
    download = json.loads(next(exchanges.glob("*-openai.files.content.json")).read_text())
    assert download["response"]["body"] == {"file": "0002-openai.files.content.response.bin"}
    assert (exchanges / "0002-openai.files.content.response.bin").read_bytes() == data
    assert not list(exchanges.glob("*.part"))


def test_unreachable_upstream_is_a_502_and_not_recorded(tmp_path: Path) -> None:
    """A request the upstream never answered gets a 502 and leaves no exchange behind."""
    out = tmp_path / "rec"
    with record_in_thread("http://127.0.0.1:9", out) as (proxy, recorder):
        answer = httpx2.get(f"{proxy}/v1/batches", headers={"authorization": "Bearer sk-x-1234"})
    assert answer.status_code == 502
    assert (
        "costguard record: upstream http://127.0.0.1:9 failed" in answer.json()["error"]["message"]
    )
    assert recorder.count == 0
    assert [p.name for p in every_file(out)] == ["recording.yaml"]


def test_each_provider_can_have_its_own_upstream(tmp_path: Path) -> None:
    """With openai= and gemini= upstreams, each SDK's traffic reaches its own provider."""
    openai_side, gemini_side = Simulator(time_scale=0), Simulator(time_scale=0)
    out = tmp_path / "both"
    with (
        serve_in_thread(openai_side) as openai_url,
        serve_in_thread(gemini_side) as gemini_url,
        record_in_thread({"openai": openai_url, "gemini": gemini_url}, out) as (proxy, _),
    ):
        with OpenAI(base_url=proxy + "/v1", api_key=OPENAI_KEY) as openai_client:
            openai_client.batches.list()
        options = types.HttpOptions(base_url=proxy)
        with genai.Client(api_key=GEMINI_KEY, http_options=options) as client:
            client.batches.create(model=MODEL, src=[{"contents": "a crane"}])
    with record_in_thread({"openai": openai_url}, tmp_path / "one") as (proxy, recorder):
        refused = httpx2.get(f"{proxy}/v1beta/batches", headers={"x-goog-api-key": GEMINI_KEY})
    assert openai_side.calls.by_endpoint() == {"openai.batches.list": 1}
    assert gemini_side.calls.by_endpoint() == {"gemini.batches.create": 1}
    manifest = load_manifest(out)[1]
    assert manifest.upstream == f"openai={openai_url} gemini={gemini_url}"
    assert [job.provider for job in manifest.jobs] == ["gemini"]
    assert refused.status_code == 502
    assert "no --upstream for this request" in refused.json()["error"]["message"]
    assert recorder.count == 0


def test_recording_into_a_used_folder_is_refused(recorded: tuple[Path, Seen]) -> None:
    """A folder that already holds a recording is never overwritten."""
    out, _ = recorded
    with pytest.raises(RecordingError, match="already holds a recording"):
        record_in_thread("http://127.0.0.1:9", out).__enter__()


def test_record_command_prints_where_to_point_and_a_summary(tmp_path: Path) -> None:
    """`costguard simulate record` prints the proxy URL and the SDK settings, then a summary."""
    out = tmp_path / "cli-rec"
    with (
        serve_in_thread(Simulator(time_scale=0)) as upstream,
        simulate_process("record", "--upstream", upstream, "--out", str(out), "--log") as (
            base_url,
            proc,
            lines,
        ),
        OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY) as client,
    ):
        assert client.batches.list().data == []
    text = "\n".join(lines)
    assert f"forwarding {base_url} -> {upstream}, recording into {out}" in text
    assert f"export OPENAI_BASE_URL={base_url}/v1" in text
    assert f"export GOOGLE_GEMINI_BASE_URL={base_url}" in text
    assert "GET /v1/batches -> 200 [openai.batches.list]" in text
    assert f"costguard-record: 1 exchanges, 0 jobs written to {out}" in text
    assert proc.returncode is not None
    assert yaml.safe_load((out / "recording.yaml").read_text())["exchanges"] == 1


def test_record_command_output_json_prints_events(tmp_path: Path) -> None:
    """`record --output json`: a `listening` event (one JSON line) then a `stopped` event with
    what was recorded; --log lines go to stderr."""
    out = tmp_path / "cli-rec"
    args = ["simulate", "record", "--port", "0", "--upstream", "", "--out", str(out)]
    with serve_in_thread(Simulator(time_scale=0)) as upstream:
        args[args.index("")] = upstream
        with subprocess.Popen(
            [*costguard_command(), *args, "--output", "json", "--log"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as proc:
            assert proc.stdout is not None
            listening = json.loads(proc.stdout.readline())
            with OpenAI(base_url=listening["openai_base_url"], api_key=OPENAI_KEY) as client:
                assert client.batches.list().data == []
            proc.send_signal(signal.SIGTERM)
            rest, err = proc.communicate(timeout=20)
    assert listening["event"] == "listening"
    assert (listening["upstreams"], listening["out"]) == ({"*": upstream}, str(out))
    assert json.loads(rest) == {
        "event": "stopped",
        "exchanges": 1,
        "summary": "1 exchanges, 0 jobs",
        "out": str(out),
    }
    assert "GET /v1/batches -> 200" in err


@pytest.mark.parametrize("problem", ["bad upstream", "mixed upstreams", "port taken"])
def test_record_command_rejects_bad_input_with_exit_2(tmp_path: Path, problem: str) -> None:
    """A bad upstream URL or a port in use is exit 2 with a one-line reason."""
    with bind() as taken:
        port = str(taken.getsockname()[1])
        args, message = {
            "bad upstream": (
                ["--upstream", "api.openai.com"],
                "give a base URL like https://api.openai.com",
            ),
            "mixed upstreams": (
                ["--upstream", "http://127.0.0.1:9", "--upstream", "gemini=http://127.0.0.1:9"],
                "give one URL, or openai=URL and/or gemini=URL",
            ),
            "port taken": (
                ["--upstream", "http://127.0.0.1:9", "--port", port],
                f"cannot listen on 127.0.0.1:{port}",
            ),
        }[problem]
        done = subprocess.run(
            [*costguard_command(), "simulate", "record", "--out", str(tmp_path / "r"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
