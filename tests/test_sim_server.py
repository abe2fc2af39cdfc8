"""The HTTP face (`server.py`) and `costguard simulate serve|scenarios` as a user runs them."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from costguard.cli.app import app
from costguard.simulator import Simulator
from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.openai import OpenAILimits
from costguard.simulator.server import serve_in_thread
from sim_cli import costguard_command, serve_process

KEY = "sk-server-test"
AUTH = {"authorization": f"Bearer {KEY}"}
ORDER = ["validating", "in_progress", "finalizing", "completed"]


def batch_input(count: int) -> bytes:
    """A valid images batch input file."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-1", "prompt": f"fox {i}"},
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def echo_route(sim: Simulator) -> None:
    """Add a route answering the base URL the simulator saw."""

    def echo(request: SimRequest, match: re.Match[str]) -> SimResponse:
        return SimResponse.json({"base_url": request.base_url, "path": request.path})

    sim.router.add("openai.echo", "GET", r"/v1/echo/.*", echo)


def test_base_url_comes_from_the_host_header() -> None:
    """The server hands handlers the base URL the client addressed, from the Host header."""
    sim = Simulator(time_scale=0)
    echo_route(sim)
    with serve_in_thread(sim) as base_url:
        direct = httpx2.get(f"{base_url}/v1/echo/a%20b", headers=AUTH).json()
        proxied = httpx2.get(
            f"{base_url}/v1/echo/x", headers={**AUTH, "host": "sim.example:9000"}
        ).json()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    assert direct == {"base_url": base_url, "path": "/v1/echo/a b"}
    assert proxied["base_url"] == "http://sim.example:9000"


def test_unmatched_and_broken_requests_over_http() -> None:
    """Over HTTP an unknown path is a loud 404 and a failing handler a 500; the server lives on."""
    sim = Simulator(time_scale=0)

    def broken(request: SimRequest, match: re.Match[str]) -> SimResponse:
        raise RuntimeError("boom")

    sim.router.add("openai.broken", "GET", r"/v1/broken", broken)
    with serve_in_thread(sim) as base_url:
        missing = httpx2.delete(f"{base_url}/v1/nothing/here", headers=AUTH)
        failing = httpx2.get(f"{base_url}/v1/broken", headers=AUTH)
        healthy = httpx2.get(f"{base_url}/v1/batches", headers=AUTH)
    assert missing.status_code == 404
    assert (
        missing.json()["error"]["message"] == "costguard-sim: DELETE /v1/nothing/here not simulated"
    )
    assert failing.status_code == 500
    assert "RuntimeError: boom" in failing.json()["error"]["message"]
    assert healthy.status_code == 200


def test_binary_upload_round_trips_through_multipart() -> None:
    """Arbitrary bytes (CR, LF, NUL) uploaded as multipart come back byte for byte."""
    data = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n\r" + bytes(range(256))
    with serve_in_thread(Simulator(time_scale=0)) as base_url:
        client = OpenAI(base_url=base_url + "/v1", api_key=KEY)
        file = client.files.create(file=("blob.bin", data), purpose="user_data")
        assert client.files.content(file.id).content == data
    assert file.bytes == len(data)


def test_generated_files_are_sent_chunked() -> None:
    """A result file goes out with chunked transfer encoding, not buffered with a length."""
    sim = Simulator(time_scale=0)
    with serve_in_thread(sim) as base_url:
        client = OpenAI(base_url=base_url + "/v1", api_key=KEY)
        file = client.files.create(file=("in.jsonl", batch_input(500)), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        sim.advance(86400)
        output = client.batches.retrieve(batch.id).output_file_id
        with httpx2.stream("GET", f"{base_url}/v1/files/{output}/content", headers=AUTH) as r:
            chunks = list(r.iter_raw())
            encoding = r.headers.get("transfer-encoding")
    assert encoding == "chunked"
    assert b"".join(chunks).count(b"\n") == 500


# -- the command line ------------------------------------------------------------------------


def poll(client: OpenAI, batch_id: str) -> str:
    """Poll until the batch is completed (the CLI's clock runs at the scenario's speed)."""
    for _ in range(2000):
        status = client.batches.retrieve(batch_id).status
        if status == "completed":
            return status
        threading.Event().wait(0.01)
    pytest.fail(f"{batch_id} did not complete")


def test_serve_prints_urls_env_vars_and_scenarios() -> None:
    """`serve --port 0` prints the base URL, both SDK env vars and the per-job mechanism."""
    with subprocess.Popen(
        [*costguard_command(), "simulate", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(7)]
        base = re.search(r"listening on (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert base is not None
        answer = httpx2.get(f"{base.group(1)}/v1/batches", headers=AUTH)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    text = "".join(lines)
    assert answer.json()["has_more"] is False
    assert f"export OPENAI_BASE_URL={base.group(1)}/v1" in text
    assert f"export GOOGLE_GEMINI_BASE_URL={base.group(1)}\n" in text
    assert "cg_scenario" in text
    assert "Scenarios: cancelled, expired," in text


def test_killed_server_resumes_from_its_state_file(tmp_path: Path) -> None:
    """After kill -9, `serve --state` picks up the same files and batches, time never rewinds."""
    state = tmp_path / "sim.json"
    with serve_process("--state", str(state)) as (base_url, proc):
        client = OpenAI(base_url=base_url + "/v1", api_key=KEY)
        file = client.files.create(file=("in.jsonl", batch_input(5)), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        before = client.batches.retrieve(batch.id).status
        proc.kill()
        proc.wait(timeout=20)
    with serve_process("--state", str(state)) as (base_url, _):
        client = OpenAI(base_url=base_url + "/v1", api_key=KEY)
        after = client.batches.retrieve(batch.id).status
        assert client.files.content(file.id).content == batch_input(5)
        assert poll(client, batch.id) == "completed"
        output = client.batches.retrieve(batch.id).output_file_id
        assert client.files.content(output or "").text.count("\n") == 5
    assert ORDER.index(after) >= ORDER.index(before)


def test_scenarios_command_lists_every_builtin() -> None:
    """`costguard simulate scenarios` prints one line per built-in scenario."""
    result = CliRunner().invoke(app, ["simulate", "scenarios"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == [
        "cancelled",
        "expired",
        "failed",
        "flaky",
        "quota",
        "realistic",
        "refusals",
        "shuffled",
        "slow",
        "succeeded",
    ]


def test_serve_rejects_an_unknown_scenario() -> None:
    """An unknown --scenario exits 2 with one line naming the built-ins."""
    result = CliRunner().invoke(app, ["simulate", "serve", "--scenario", "nope"])
    assert result.exit_code == 2
    assert "unknown scenario 'nope'; built-in scenarios:" in result.output
    assert result.output.count("\n") == 1


def test_serve_unknown_scenario_as_json(cli: Callable[..., Any]) -> None:
    """With --output json the unknown scenario is an error object on stdout (exit 2)."""
    result = cli("simulate", "serve", "--scenario", "bogus", "--output", "json")
    assert result.code == 2
    error = json.loads(result.out)["error"]
    assert (error["kind"], error["scenario"]) == ("unknown_scenario", "bogus")
    assert result.err.startswith("error: unknown scenario 'bogus'; built-in scenarios: ")


def test_serve_reports_a_taken_port() -> None:
    """A port in use exits 2 with a one-line hint."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["simulate", "serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port 0" in result.output


def test_help_imports_no_sdk_server_or_mock() -> None:
    """`costguard --help` and `costguard simulate --help` import no SDK, uvicorn or respx."""
    probe = (
        "import sys; from typer.testing import CliRunner; from costguard.cli.app import app; "
        "r = CliRunner(); assert r.invoke(app, ['--help']).exit_code == 0; "
        "assert r.invoke(app, ['simulate', '--help']).exit_code == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'openai', 'respx', 'uvicorn', 'starlette', 'httpx2', 'pytest_httpx2'} "
        "or m.startswith('google.genai')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["serve", "record"])
@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_outside_the_tcp_range_is_a_usage_error(
    tmp_path: Path, command: str, port: str
) -> None:
    """`--port` outside 0..65535 exits 2 with one line naming --port and the range."""
    extra = ["--upstream", "http://127.0.0.1:9", "--out", str(tmp_path / "rec")]
    args = ["simulate", command, "--port", port, *(extra if command == "record" else [])]
    try:
        done = subprocess.run(
            [*costguard_command(), *args], check=False, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"--port {port} was not refused: the command kept running ({exc.stdout!r})")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "--port" in done.stderr
    assert "0..65535" in done.stderr
    assert not (tmp_path / "rec").exists()


def started_banner(*args: str) -> tuple[list[str], str]:
    """`costguard simulate ARGS --port 0` until its banner is out: (stdout lines, stderr)."""
    with subprocess.Popen(
        [*costguard_command(), "simulate", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Stop with Ctrl-C"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    return lines, err


@pytest.mark.parametrize("command", ["serve", "record"])
def test_binding_all_interfaces_warns_and_shows_the_real_address(
    tmp_path: Path, command: str
) -> None:
    """`--host 0.0.0.0` warns once on stderr; the banner says all interfaces, exports loopback."""
    extra = ["--upstream", "http://127.0.0.1:9", "--out", str(tmp_path / "rec")]
    lines, err = started_banner(
        command, "--host", "0.0.0.0", *(extra if command == "record" else [])
    )
    text = "\n".join(lines)
    found = re.search(r"all interfaces \(0\.0\.0\.0:(\d+)\)", lines[0])
    assert found is not None, text
    local = f"http://127.0.0.1:{found.group(1)}"
    assert local in lines[0]
    assert f"export OPENAI_BASE_URL={local}/v1" in text
    assert f"export GOOGLE_GEMINI_BASE_URL={local}\n" in text + "\n"
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "0.0.0.0" in warnings[0]
    assert "other machines" in warnings[0]


def test_binding_loopback_prints_no_warning() -> None:
    """The default 127.0.0.1 bind prints the plain banner and nothing on stderr."""
    lines, err = started_banner("serve")
    assert re.match(r"costguard-sim: listening on http://127\.0\.0\.1:\d+ ", lines[0])
    assert err == ""


MIB = 1 << 20
BOUNDARY = "costguard-test-boundary"


def form_around(size: int, purpose: str = "batch") -> tuple[bytes, bytes, int]:
    """The multipart bytes before and after a `size`-byte file, and the whole body's length."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + size + len(tail)


def form_stream(size: int, purpose: str = "batch") -> Iterator[bytes]:
    """A multipart upload of a `size`-byte file, generated 64 KiB at a time (one buffer)."""
    head, tail, _ = form_around(size, purpose)
    yield head
    block = b"x" * (64 * 1024)
    for _ in range(size // len(block)):
        yield block
    yield b"x" * (size % len(block))
    yield tail


def headers_only(
    base_url: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send a POST's headers and no body; the answer (a server waiting for the body times out)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            answer = connection.getresponse()
        except TimeoutError:
            pytest.fail(f"POST {path}: the server waited for the body instead of answering")
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_upload_over_the_limit_is_refused_from_its_content_length() -> None:
    """An upload declaring more than 512 MB gets OpenAI's 400 file_too_large before any body."""
    sim = Simulator(time_scale=0)
    with serve_in_thread(sim) as base_url:
        status, _, body = headers_only(
            base_url,
            "/v1/files",
            {
                "Authorization": f"Bearer {KEY}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(600 * MIB),
            },
        )
    assert status == 400
    assert json.loads(body) == {
        "error": {
            "message": "File is too large.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert sim.calls.statuses("openai.files.create") == [400]
    assert sim.uploads == []


@pytest.mark.parametrize(
    ("size", "declared"),
    [(64 * MIB, False), (6 * MIB, True)],
    ids=["over-the-file-limit-chunked", "over-the-batch-limit-with-length"],
)
def test_upload_over_the_limit_is_refused_without_holding_it(size: int, declared: bool) -> None:
    """An over-limit upload is refused with file_too_large; the server never holds it in memory.

    Limits are lowered (8 MiB per file, 4 MiB per batch input) so the upload stays cheap: one
    sent chunked is cut off once past the file limit, one with its length under the file
    limit but over the batch limit is spooled to disk and refused from its part's size.
    """
    sim = Simulator(time_scale=0)
    sim.openai.limits = OpenAILimits(max_file_bytes=8 * MIB, max_batch_input_bytes=4 * MIB)
    headers = {**AUTH, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if declared:
        headers["content-length"] = str(form_around(size)[2])
    with serve_in_thread(sim) as base_url, httpx2.Client(timeout=60) as http:
        tracemalloc.start()
        try:
            answer = http.post(f"{base_url}/v1/files", headers=headers, content=form_stream(size))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "File is too large."
    assert sim.uploads == []
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB for a {size / MIB:.0f} MiB upload"


def test_upload_under_the_limit_is_stored_from_the_spool() -> None:
    """An upload larger than the in-memory spool is stored byte for byte and listed."""
    sim = Simulator(time_scale=0)
    size = 3 * MIB + 17
    length = form_around(size)[2]
    with serve_in_thread(sim) as base_url, httpx2.Client(timeout=60) as http:
        answer = http.post(
            f"{base_url}/v1/files",
            headers={
                **AUTH,
                "content-type": f"multipart/form-data; boundary={BOUNDARY}",
                "content-length": str(length),
            },
            content=form_stream(size),
        )
        content = http.get(f"{base_url}/v1/files/{answer.json()['id']}/content", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["bytes"] == size
    assert content.content == b"x" * size


def test_gemini_bodies_over_their_limits_are_refused_before_reading() -> None:
    """Gemini: a chunk past the 2 GB file limit, or a 20 MB+ generateContent, gets a 400 at once."""
    sim = Simulator(time_scale=0)
    with serve_in_thread(sim) as base_url, httpx2.Client(timeout=30) as http:
        start = http.post(
            f"{base_url}/upload/v1beta/files",
            headers={
                "x-goog-api-key": KEY,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
            },
            json={"file": {"mimeType": "jsonl"}},
        )
        upload_path = start.headers["x-goog-upload-url"].removeprefix(base_url)
        too_big_start = http.post(
            f"{base_url}/upload/v1beta/files",
            headers={
                "x-goog-api-key": KEY,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
            },
            json={"file": {"mimeType": "jsonl", "sizeBytes": str(3 * 1024 * MIB)}},
        )
        chunk = headers_only(
            base_url,
            upload_path,
            {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0",
             "Content-Length": str(3 * 1024 * MIB)},
        )  # fmt: skip
        generate = headers_only(
            base_url,
            "/v1beta/models/gemini-2.5-flash-image:generateContent",
            {"x-goog-api-key": KEY, "Content-Type": "application/json",
             "Content-Length": str(30 * MIB)},
        )  # fmt: skip
    limit = "Request payload size exceeds the limit: 2147483648 bytes."
    assert too_big_start.status_code == 400
    assert too_big_start.json()["error"]["message"] == limit
    status, headers, body = chunk
    assert status == 400
    assert headers["x-goog-upload-status"] == "final"
    assert json.loads(body)["error"] == {
        "code": 400,
        "message": limit,
        "status": "INVALID_ARGUMENT",
    }
    status, _, body = generate
    assert status == 400
    assert json.loads(body)["error"]["message"] == (
        "Request payload size exceeds the limit: 20971520 bytes."
    )


# -- readiness for programs: --output json and --ready-file ----------------------------------


def test_output_json_is_one_line_once_listening_and_nothing_else_on_stdout(
    tmp_path: Path,
) -> None:
    """`serve --output json` prints one JSON line (url, SDK base URLs, pid) once it listens;
    --log lines then go to stderr, so stdout stays machine-readable."""
    state = tmp_path / "sim.json"
    with subprocess.Popen(
        [*costguard_command(), "simulate", "serve", "--port", "0", "--output", "json", "--log",
         "--state", str(state), "--scenario", "expired"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        answer = httpx2.get(f"{ready['openai_base_url']}/batches", headers=AUTH)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
    url = ready["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert ready == {
        "event": "listening",
        "url": url,
        "openai_base_url": f"{url}/v1",
        "gemini_base_url": url,
        "host": "127.0.0.1",
        "port": int(url.rsplit(":", 1)[1]),
        "pid": proc.pid,
        "scenario": "expired",
        "state": str(state),
    }
    assert answer.status_code == 200
    assert rest == ""
    assert "GET /v1/batches -> 200" in err


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_ready_file_appears_whole_once_listening_and_goes_when_stopped(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """`--ready-file` replaces a stale file, holds {url, pid, ...} while the server listens,
    and is removed when it stops."""
    ready_file = tmp_path / "run" / "sim.ready"
    ready_file.parent.mkdir()
    ready_file.write_text('{"url": "http://127.0.0.1:1", "pid": 1}\n')
    with subprocess.Popen(
        [*costguard_command(), "simulate", "serve", "--port", "0", "--ready-file", str(ready_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        ready: dict[str, object] = {}
        for _ in range(3000):
            if ready_file.is_file():
                ready = json.loads(ready_file.read_text())  # whole, or not there at all
                if ready["pid"] == proc.pid:
                    break
            threading.Event().wait(0.01)
        assert ready.get("pid") == proc.pid, ready
        answer = httpx2.get(f"{ready['url']}/v1/batches", headers=AUTH)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=20)
    assert answer.status_code == 200
    assert not ready_file.exists()
    assert [p.name for p in ready_file.parent.iterdir()] == []
    assert proc.returncode == (-signal.SIGTERM if stop == signal.SIGTERM else 130), err


def test_a_ready_file_that_cannot_be_written_is_exit_2(tmp_path: Path) -> None:
    """A --ready-file under a file (not a folder) stops the server with one line, exit 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [*costguard_command(), "simulate", "serve", "--port", "0", "--ready-file",
         str(blocker / "ready.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --ready-file {blocker / 'ready.json'}: Not a directory"
    ]
