"""Serving the gateway: `costguard guard` as a process, `costguard.guard()` in-process, a
restart resuming open batches from the ledger, the watcher and the grace rule."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types
from openai import APIStatusError, OpenAI

import costguard
from costguard.gateway.app import Guard, GuardOptions
from costguard.gateway.serve import running
from costguard.ledger import open_ledger
from costguard.ledger.records import Run
from costguard.proxy.server import app_in_thread
from costguard.simulator import Simulator
from costguard.simulator.server import serve_in_thread

OPENAI_KEY = "sk-serve-SECRET-0123456789"
GEMINI_KEY = "AIza-serve-SECRET-0123456789abcdef"
SRC = str(Path(costguard.__file__).resolve().parents[1])


def budget(ledger_path: Path, usd: str = "100") -> None:
    """Set budget `team` in the ledger."""
    ledger = open_ledger(ledger_path)
    ledger.set_budget("team", usd=Decimal(usd))
    ledger.close()


def runs_of(ledger_path: Path) -> list[Run]:
    """The ledger's runs, newest first."""
    ledger = open_ledger(ledger_path)
    try:
        return ledger.runs(limit=100)
    finally:
        ledger.close()


@contextlib.contextmanager
def gateway(
    ledger_path: Path, upstream: str, log: list[str], **options: object
) -> Iterator[tuple[str, Guard]]:
    """A gateway (with its watcher) in a thread in front of `upstream`."""
    ledger = open_ledger(ledger_path)
    chosen = GuardOptions(
        budget="team",
        upstreams={"openai": upstream, "gemini": upstream},
        **options,  # type: ignore[arg-type]
    )
    try:
        with (
            running(ledger, chosen, log=log.append) as (guard, app),
            app_in_thread(app, lifespan="on") as url,
        ):
            yield url, guard
    finally:
        ledger.close()


def wait_for(check: Callable[[], bool], seconds: float = 15) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def openai_batch_input(count: int = 2) -> bytes:
    """An OpenAI images batch input file."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-2", "prompt": f"a fox {i}", "quality": "low"},
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def test_guard_context_manager_points_the_sdks_at_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`costguard.guard()`: SDK clients made in the block are guarded; the variables are
    restored after, even on error."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://before.invalid/v1")
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    upstream_log: list[str] = []
    with serve_in_thread(Simulator(), log=upstream_log.append) as upstream:
        upstreams = {"openai": upstream, "gemini": upstream}
        with costguard.guard(budget="team", ledger=str(ledger), upstreams=upstreams) as url:
            assert os.environ["OPENAI_BASE_URL"] == url + "/v1"
            assert os.environ["GOOGLE_GEMINI_BASE_URL"] == url
            with OpenAI(api_key=OPENAI_KEY) as client:
                client.images.generate(model="gpt-image-2", prompt="a fox", quality="low")
            gemini = genai.Client(api_key=GEMINI_KEY)
            gemini.models.generate_content(
                model="gemini-3.1-flash-image",
                contents="an owl",
                config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
            )
            gemini.close()
        assert len(upstream_log) == 2
        assert os.environ["OPENAI_BASE_URL"] == "http://before.invalid/v1"
        assert "GOOGLE_GEMINI_BASE_URL" not in os.environ
        with (
            pytest.raises(APIStatusError) as caught,
            costguard.guard(
                budget="team", max_usd="0.001", ledger=ledger, upstreams=upstreams, owner="ci"
            ),
            OpenAI(api_key=OPENAI_KEY) as client,
        ):  # default retries on
            client.images.generate(model="gpt-image-2", prompt="a fox", quality="high")
        assert caught.value.status_code == 402
        assert len(upstream_log) == 2
        assert os.environ["OPENAI_BASE_URL"] == "http://before.invalid/v1"
    runs = runs_of(ledger)
    assert sorted(r.status for r in runs) == ["completed", "completed", "refused"]
    assert all(Decimal(0) < r.spent <= r.estimate for r in runs if r.status == "completed")
    assert next(r for r in runs if r.status == "refused").owner == "ci"


def test_guard_context_manager_refuses_a_budget_not_set(tmp_path: Path) -> None:
    """A mistyped budget raises before anything is served."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    with (
        pytest.raises(costguard.CostguardError, match="budgets set: 'team'"),
        costguard.guard(budget="taem", ledger=ledger),
    ):
        pass


def guard_process(ledger: Path, upstream: str, *args: str) -> subprocess.Popen[str]:
    """`costguard guard --port 0 --output json ...` as a subprocess of this worktree's code."""
    env = dict(os.environ, PYTHONPATH=SRC)
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "costguard", "guard", "--ledger", str(ledger)]
    command += ["--upstream", f"openai={upstream}", "--upstream", f"gemini={upstream}"]
    return subprocess.Popen(
        [*command, "--port", "0", "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_guard_cli_serves_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The readiness line, a call through it with the OpenAI SDK, one log line per call
    without the key, SIGTERM ends it; a mistyped budget exits 5 before listening."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    with serve_in_thread(Simulator()) as upstream:
        wrong = guard_process(ledger, upstream, "--budget", "taem")
        out, err = wrong.communicate(timeout=60)
        assert wrong.returncode == 5
        assert "listening" not in out
        assert "'taem'" in err
        assert "'team'" in err
        proc = guard_process(ledger, upstream, "--budget", "team")
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["event"] == "listening"
            url = ready["url"]
            assert ready["openai_base_url"] == url + "/v1"
            with OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0) as client:
                client.images.generate(model="gpt-image-2", prompt="a fox", quality="low")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM)
    lines = [line for line in err.splitlines() if "/v1/images/generations" in line]
    assert len(lines) == 1
    assert lines[0].startswith("POST /v1/images/generations -> 200")
    assert "admitted" in lines[0]
    assert "$" in lines[0]
    assert OPENAI_KEY not in out + err
    (run,) = runs_of(ledger)
    assert run.status == "completed"
    assert OPENAI_KEY not in json.dumps(run.meta) + run.owner
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("ledger.sqlite3*"))
    assert OPENAI_KEY.encode() not in stored


def admit_openai_batch(url: str) -> str:
    """Upload and create an OpenAI batch through the gateway at `url`; its id."""
    with OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0) as client:
        upload = client.files.create(file=("in.jsonl", openai_batch_input()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        )
    return batch.id


@pytest.mark.slow
@pytest.mark.parametrize("who", ["pipeline", "watcher"])
def test_restarted_gateway_settles_a_batch_admitted_before(tmp_path: Path, who: str) -> None:
    """Gateway 1 admits a batch and stops; gateway 2 on the same ledger and upstream settles it
    at actual once it completes: through the pipeline's poll, or its watcher when nobody
    polls."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    sim = Simulator()
    log: list[str] = []
    with serve_in_thread(sim) as upstream:
        with gateway(ledger, upstream, log) as (url, _):
            job = admit_openai_batch(url)
        (run,) = runs_of(ledger)
        assert run.status == "open"
        assert run.meta["job"] == job
        sim.clock.advance(86_000)
        if who == "pipeline":
            with (
                gateway(ledger, upstream, log) as (url, _),
                OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0) as client,
            ):
                for _ in range(50):
                    if client.batches.retrieve(job).status == "completed":
                        break
                    sim.clock.advance(900)
                wait_for(lambda: runs_of(ledger)[0].status != "open")
        else:
            with gateway(ledger, upstream, log, poll_s=0.1) as (url, guard):
                assert guard.open_jobs() == [("openai", job)]
                time.sleep(0.3)
                assert runs_of(ledger)[0].status == "open"  # no key yet: it waits
                # any call (here an unpaid one) brings the key, held in memory only
                with OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0) as client:
                    client.files.list()
                wait_for(lambda: runs_of(ledger)[0].status != "open")
    (run,) = runs_of(ledger)
    assert run.status == "completed"
    assert run.meta["reconciled"] is True
    assert Decimal(0) < run.spent <= run.estimate
    assert OPENAI_KEY not in "\n".join(log) + json.dumps(run.meta)


def gemini_batch_input(count: int = 2) -> bytes:
    """A Gemini batch input file (JSONL of keyed requests)."""
    return b"".join(
        json.dumps(
            {
                "key": f"k{i}",
                "request": {
                    "contents": [{"parts": [{"text": f"an owl {i}"}]}],
                    "generationConfig": {"responseModalities": ["IMAGE"]},
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


@pytest.mark.slow
def test_gemini_file_batch_settles_unreconciled_after_the_grace_period(tmp_path: Path) -> None:
    """A Gemini file batch whose results never pass through: the watcher sees it terminal
    (with the key it holds in memory) and settles it unreconciled once the grace is over."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    sim = Simulator()
    log: list[str] = []
    source = tmp_path / "in.jsonl"
    source.write_bytes(gemini_batch_input())
    with (
        serve_in_thread(sim) as upstream,
        gateway(ledger, upstream, log, poll_s=0.1, grace_s=0.5) as (url, _),
    ):
        gemini = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=url))
        uploaded = gemini.files.upload(
            file=source, config=types.UploadFileConfig(mime_type="jsonl")
        )
        assert uploaded.name is not None
        gemini.batches.create(model="gemini-3.1-flash-image", src=uploaded.name)
        gemini.close()
        (run,) = runs_of(ledger)
        assert run.status == "open"
        assert run.meta["kind"] == "file"
        for _ in range(40):
            sim.clock.advance(900)
            time.sleep(0.05)
            if "terminal_at" in runs_of(ledger)[0].meta:
                break
        wait_for(lambda: runs_of(ledger)[0].status != "open")
    (run,) = runs_of(ledger)
    assert run.status == "unreconciled"
    assert run.meta["reconciled"] is False
    assert run.meta["terminal_status"] == "completed"
    assert Decimal(0) < run.spent <= run.estimate
    text = "\n".join(log) + json.dumps(run.meta) + run.owner
    assert GEMINI_KEY not in text


def test_guard_context_manager_needs_no_pytest(tmp_path: Path) -> None:
    """`costguard.guard()` on the base install: a fresh interpreter, no pytest imported."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    script = (
        "import sys, urllib.request, costguard\n"
        f"with costguard.guard(budget='team', ledger={str(ledger)!r}) as url:\n"
        "    import os\n"
        "    assert os.environ['OPENAI_BASE_URL'] == url + '/v1'\n"
        "assert 'pytest' not in sys.modules, 'pytest imported'\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_openai_batch_without_usage_settles_at_its_share_after_the_grace(tmp_path: Path) -> None:
    """Seen terminal without usage: held until the grace period is over (its results may still
    pass through), then settled at maximum x completed/total, unreconciled."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    log: list[str] = []
    with (
        serve_in_thread(Simulator()) as upstream,
        gateway(ledger, upstream, log, poll_s=600, grace_s=60) as (url, guard),
    ):
        job = admit_openai_batch(url)
        seen = {"status": "completed", "request_counts": {"total": 2, "completed": 1}}
        guard.seen_batch("openai", job, seen)
        (run,) = runs_of(ledger)
        assert run.status == "open"
        assert run.meta["terminal_status"] == "completed"
        now = guard.book.clock()
        guard.settle_overdue(now + dt.timedelta(seconds=30))
        assert runs_of(ledger)[0].status == "open"
        guard.settle_overdue(now + dt.timedelta(seconds=61))
    (run,) = runs_of(ledger)
    assert run.status == "unreconciled"
    assert run.meta["reconciled"] is False
    assert run.spent == run.estimate / 2


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--upstream", "foo=http://x"], 2, "--upstream 'foo=http://x'"),
        (["--upstream", "openai=ftp://x"], 2, "PROVIDER=URL"),
        (["--port", "70000"], 2, "--port 70000"),
        (["--max-usd", "abc"], 2, "--max-usd"),
        (["--budget", "taem"], 5, "budgets set: 'team'"),
    ],
)
def test_guard_cli_refuses_bad_options_before_listening(
    cli: Callable[..., Any], tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    """A bad `--upstream`, port or amount: exit 2; a budget not set: exit 5; nothing listens."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    result = cli("guard", "--budget", "team", "--ledger", ledger, "--port", "0", *args)
    assert result.code == code
    assert says in result.err
    assert "listening" not in result.out


@pytest.mark.slow
def test_gateway_killed_mid_batch_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """`costguard guard` killed -9 with a batch open; a new one on the same ledger settles it
    once: one run, its reservation neither lost nor counted twice."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger, usd="10")
    sim = Simulator()
    with serve_in_thread(sim) as upstream:
        first = guard_process(ledger, upstream, "--budget", "team")
        try:
            assert first.stdout is not None
            job = admit_openai_batch(json.loads(first.stdout.readline())["url"])
        finally:
            first.kill()
            first.communicate(timeout=30)
        (run,) = runs_of(ledger)
        assert run.status == "open"
        store = open_ledger(ledger)
        try:
            held = store.statuses(at=dt.datetime.now(dt.UTC))[0]
        finally:
            store.close()
        assert held.reserved == run.estimate
        second = guard_process(ledger, upstream, "--budget", "team")
        try:
            assert second.stdout is not None
            url = json.loads(second.stdout.readline())["url"]
            with OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0) as client:
                for _ in range(100):
                    if client.batches.retrieve(job).status == "completed":
                        break
                    sim.clock.advance(900)
            wait_for(lambda: runs_of(ledger)[0].status != "open")
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=30)
    (run,) = runs_of(ledger)
    assert run.status == "completed"
    store = open_ledger(ledger)
    try:
        after = store.statuses(at=dt.datetime.now(dt.UTC))[0]
    finally:
        store.close()
    assert after.reserved == 0
    assert after.spent == run.spent


def test_a_job_admitted_by_another_gateway_is_settled_here(tmp_path: Path) -> None:
    """Two gateways on one ledger, both running: a job admitted through the first after the
    second started (so not resumed by it) and polled through the second is found in the
    ledger by its job id and settled by the second."""
    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    log: list[str] = []
    with (
        serve_in_thread(Simulator()) as upstream,
        gateway(ledger, upstream, log, poll_s=600, grace_s=60) as (first, _),
        gateway(ledger, upstream, log, poll_s=600, grace_s=60) as (_, other),
    ):
        job = admit_openai_batch(first)
        assert ("openai", job) not in other.open_jobs()
        (run,) = runs_of(ledger)
        found = other.run_of("openai", job)
        assert found is not None
        assert found.run_id == run.run_id
        assert ("openai", job) in other.open_jobs()
        seen = {"status": "completed", "request_counts": {"total": 2, "completed": 1}}
        other.seen_batch("openai", job, seen)
        other.settle_overdue(other.book.clock() + dt.timedelta(seconds=61))
    (run,) = runs_of(ledger)
    assert (run.status, run.spent) == ("unreconciled", run.estimate / 2)


def test_a_batch_whose_job_id_was_never_recorded_gets_a_deadline(tmp_path: Path) -> None:
    """A batch run admitted but never given its job id (the gateway died after forwarding the
    create) is settled at its maximum, unreconciled, once 30 minutes and the grace are over."""
    from costguard.gateway.price import Priced

    ledger = tmp_path / "ledger.sqlite3"
    budget(ledger)
    log: list[str] = []
    with (
        serve_in_thread(Simulator()) as upstream,
        gateway(ledger, upstream, log, poll_s=600, grace_s=60) as (_, guard),
    ):
        priced = Priced(Decimal("0.5"), Decimal("0.2"), 2, 2, ("gpt-image-2",), "batch")
        admission = guard.book.admit(
            priced, owner="t", meta={"kind": "file", "provider": "openai", "route": "x"}
        )
        assert admission.admitted
        now = guard.book.clock()
        guard.settle_overdue(now + dt.timedelta(minutes=30))
        assert runs_of(ledger)[0].status == "open"
        guard.settle_overdue(now + dt.timedelta(minutes=31, seconds=1))
    (run,) = runs_of(ledger)
    assert (run.status, run.spent, run.meta["reconciled"]) == (
        "unreconciled",
        Decimal("0.5"),
        False,
    )
    assert "no job id recorded" in run.meta["settled_by"]
