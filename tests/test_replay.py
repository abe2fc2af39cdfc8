"""Replaying a recording as a stateful scenario: any poll count, same results by key, edits."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google import genai
from google.genai import types
from openai import OpenAI

from costguard.simulator import Simulator, simulate
from costguard.simulator.recording.format import RecordingError, load_manifest, read_exchange
from costguard.simulator.server import serve_in_thread
from reckit import (
    GEMINI_KEY,
    MODEL,
    OPENAI_KEY,
    Cycle,
    Seen,
    file_lines,
    inline_src,
    openai_input,
    record_cycle,
    run_cycle,
)
from sim_cli import simulate_process

FACES = ["server", "mock"]
GATEWAY = "http://replay.test"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Seen]:
    """One recording of the full cycle, and what the client saw while recording it."""
    out = tmp_path_factory.mktemp("replay") / "nightly"
    return out, record_cycle(out)


@contextlib.contextmanager
def replaying(path: Path, face: str) -> Iterator[tuple[Simulator, str]]:
    """A simulator replaying `path` behind a threaded server or in-process; its base URL."""
    if face == "server":
        sim = Simulator(path)
        with serve_in_thread(sim) as base_url:
            yield sim, base_url
    else:
        with simulate(path, base_urls=[GATEWAY]) as sim:
            yield sim, GATEWAY


def distinct(states: list[str]) -> list[str]:
    """`states` with consecutive repeats collapsed."""
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def edited(recorded: tuple[Path, Seen], tmp_path: Path, change: Callable[[Any], None]) -> Path:
    """A copy of the recording whose `recording.yaml` went through `change`."""
    copy = tmp_path / "edited"
    shutil.copytree(recorded[0], copy)
    manifest = copy / "recording.yaml"
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    change({(job["provider"], job["kind"]): job for job in data["jobs"]})
    manifest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return copy


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("extra_polls", [0, 10], ids=["fewer-polls", "more-polls"])
def test_replay_gives_the_recorded_results_whatever_the_poll_count(
    recorded: tuple[Path, Seen], tmp_path: Path, face: str, extra_polls: int
) -> None:
    """Fewer or more polls than recorded: same states in order, same results by key."""
    out, seen = recorded
    with replaying(out, face) as (sim, base_url):
        again = run_cycle(base_url, tmp_path, extra_polls=extra_polls)
    assert again.results == seen.results
    assert again.ids == seen.ids
    for label, recorded_polls in seen.polls.items():
        assert distinct(again.states[label]) == distinct(seen.states[label])
        if extra_polls:
            assert again.polls[label] > recorded_polls
        else:
            assert again.polls[label] < recorded_polls
    assert sim.replay is not None
    assert sim.replay.misses == []
    assert [(job.provider, job.scenario) for job in sim.jobs] == [
        ("openai", "nightly"),
        ("gemini", "nightly"),
        ("gemini", "nightly"),
    ]
    assert [upload.provider for upload in sim.uploads] == ["openai", "gemini"]
    assert sim.unmatched == []
    assert sim.failures == []


def test_results_are_served_when_asked_for_without_polling(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """A client that never polls still downloads the recorded results; the job is then done."""
    out, seen = recorded
    with (
        replaying(out, "mock") as (_, base_url),
        genai.Client(
            api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=base_url)
        ) as client,
    ):
        source = tmp_path / "in.jsonl"
        source.write_text(file_lines(), encoding="utf-8")
        uploaded = client.files.upload(file=str(source), config={"mime_type": "jsonl"})
        job = client.batches.create(model=MODEL, src=uploaded.name or "")
        assert job.state == types.JobState.JOB_STATE_PENDING
        result_file = f"files/batch-{(job.name or '').removeprefix('batches/')}"
        data = client.files.download(file=result_file)
        assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_SUCCEEDED
        listed = [f.name for f in client.files.list()]
    keys = [json.loads(line)["key"] for line in data.splitlines()]
    assert keys == list(seen.results["file"])
    assert result_file in listed


def test_edited_outcomes_and_terminal_states_are_honoured(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """Per-key `outcomes` and a job's `terminal` rewrite the end state, counts and results."""
    out, seen = recorded

    def change(jobs: dict[tuple[str, str], Any]) -> None:
        jobs["openai", "file"]["outcomes"] = {"c0": "refused", "c1": "failed"}
        jobs["gemini", "inline"]["terminal"] = "expired"
        jobs["gemini", "file"]["outcomes"] = {"f1": "refused", "f2": "expired"}

    with (
        replaying(edited((out, seen), tmp_path, change), "server") as (_, base_url),
        Cycle(base_url, tmp_path) as cycle,
    ):
        again = cycle.run()
        batch = cycle.openai.batches.retrieve(seen.ids["openai"])
    assert again.results["openai"] == {
        "c0": (400, "moderation_blocked"),
        "c1": (500, None),
        "c2": (400, "moderation_blocked"),
        "c3": seen.results["openai"]["c3"],
    }
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    manifest = load_manifest(out)[1]
    recorded_end = read_exchange(out, manifest.jobs[0].timeline[-1].exchange)
    recorded_usage = recorded_end["response"]["body"]["json"]["usage"]
    assert batch.usage is not None
    assert batch.usage.output_tokens == recorded_usage["output_tokens"] // 3  # 1 of 3 images
    assert again.states["inline"][-1] == "JOB_STATE_EXPIRED"
    assert again.results["inline"] == {}
    assert again.results["file"] == {
        "f0": seen.results["file"]["f0"],
        "f1": ("IMAGE_SAFETY", None),
    }


def test_a_changed_terminal_drops_unlisted_keys_and_keeps_ok_ones(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """`terminal: expired` / `cancelled` keep only the keys marked `ok`; `failed` keeps none."""
    out, seen = recorded

    def change(jobs: dict[tuple[str, str], Any]) -> None:
        jobs["openai", "file"].update(terminal="expired", outcomes={"c0": "ok"})
        jobs["gemini", "file"].update(terminal="cancelled", outcomes={"f0": "ok"})
        jobs["gemini", "inline"]["terminal"] = "failed"

    with (
        replaying(edited((out, seen), tmp_path, change), "mock") as (_, base_url),
        Cycle(base_url, tmp_path) as cycle,
    ):
        again = cycle.run()
        batch = cycle.openai.batches.retrieve(seen.ids["openai"])
    assert again.states["openai"] == ["validating", "in_progress", "expired"]
    assert batch.expired_at is not None
    assert batch.completed_at is None
    assert again.results["openai"] == {
        "c0": seen.results["openai"]["c0"],
        "c1": ("unfinished", "batch_expired"),
        "c3": ("unfinished", "batch_expired"),
        "c2": ("unfinished", "batch_expired"),
    }
    assert again.states["file"][-1] == "JOB_STATE_CANCELLED"
    assert again.results["file"] == {"f0": seen.results["file"]["f0"]}
    assert distinct(again.states["inline"]) == [
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_FAILED",
    ]
    assert again.results["inline"] == {}


def test_a_cancel_the_recording_never_made_settles_the_job_cancelled(
    recorded: tuple[Path, Seen],
) -> None:
    """Cancelling mid-run: `cancelling`, then `cancelled` with every request batch_cancelled."""
    out, _ = recorded
    with (
        replaying(out, "mock") as (_, base_url),
        OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY) as client,
        genai.Client(
            api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=base_url)
        ) as gemini,
    ):
        upload = client.files.create(file=("in.jsonl", openai_input()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        assert client.batches.retrieve(batch.id).status == "validating"
        assert client.batches.cancel(batch.id).status == "cancelling"
        done = client.batches.retrieve(batch.id)
        assert client.batches.retrieve(batch.id).status == "cancelled"
        lines = client.files.content(done.error_file_id or "").text.splitlines()
        job = gemini.batches.create(model=MODEL, src=inline_src())
        gemini.batches.cancel(name=job.name or "")
        cancelled = gemini.batches.get(name=job.name or "")
    assert done.status == "cancelled"
    assert done.output_file_id is None
    assert done.request_counts is not None
    assert done.request_counts.failed == 4
    assert sorted(json.loads(line)["error"]["code"] for line in lines) == ["batch_cancelled"] * 4
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.dest is None


def test_jobs_beyond_the_recording_fall_back_to_the_simulator_and_are_listed(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """A job the recording does not have is simulated under `fallback` and noted as a miss."""
    out, seen = recorded
    with (
        replaying(out, "mock") as (sim, base_url),
        Cycle(base_url, tmp_path, tick=lambda: sim.advance(900)) as cycle,
    ):
        cycle.run_openai()
        cycle.run_openai()
        listed = [b.id for b in cycle.openai.batches.list()]
    assert sim.replay is not None
    assert sim.replay.misses == [
        (
            "openai.batches.create: no recorded openai job left (1 recorded); the simulator "
            "answered under 'succeeded'"
        )
    ]
    assert [(job.id == seen.ids["openai"], job.scenario) for job in sim.jobs] == [
        (True, "nightly"),
        (False, "succeeded"),
    ]
    assert listed[0] == seen.ids["openai"]
    assert len(listed) == 2


def test_fallback_scenario_file_beside_the_recording_applies_to_replayed_calls(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """`fallback: mine.yaml` (in the folder) is the default scenario: its flaky calls apply too."""
    path = edited(recorded, tmp_path, lambda jobs: None)
    flaky = {
        "name": "mine",
        "description": "every 3rd call fails",
        "flaky": {"every": 3, "retry_after_s": 0.01},
    }
    (path / "mine.yaml").write_text(yaml.safe_dump(flaky))
    manifest = yaml.safe_load((path / "recording.yaml").read_text())
    manifest["fallback"] = "mine.yaml"
    (path / "recording.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    sim = Simulator(path)
    assert sim.scenario.name == "mine"
    with (
        serve_in_thread(sim) as base_url,
        OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY, max_retries=3) as client,
    ):
        upload = client.files.create(file=("in.jsonl", openai_input()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        states = [client.batches.retrieve(batch.id).status for _ in range(4)]
    assert states == ["validating", "in_progress", "completed", "completed"]
    assert 429 in sim.calls.statuses("openai.batches.retrieve") + sim.calls.statuses(
        "openai.batches.create"
    )


def test_replay_state_is_saved_and_resumed(recorded: tuple[Path, Seen], tmp_path: Path) -> None:
    """A saved replaying simulator resumes each job at the step it had reached."""
    out, seen = recorded
    sim = Simulator(out)
    with (
        serve_in_thread(sim) as base_url,
        OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY) as client,
    ):
        upload = client.files.create(file=("in.jsonl", openai_input()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        client.batches.retrieve(batch.id)
        assert client.batches.retrieve(batch.id).status == "in_progress"
    state = sim.save(tmp_path / "sim.json")
    resumed = Simulator.load(state)
    assert resumed.replay is not None
    with (
        serve_in_thread(resumed) as base_url,
        OpenAI(base_url=base_url + "/v1", api_key=OPENAI_KEY) as client,
    ):
        assert client.batches.retrieve(batch.id).status == "completed"
    assert batch.id == seen.ids["openai"]


def test_serve_command_replays_a_recording_under_the_real_sdks(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """`costguard simulate serve --scenario DIR` replays with fewer polls and the same results."""
    out, seen = recorded
    with simulate_process("serve", "--scenario", str(out)) as (base_url, _, lines):
        again = run_cycle(base_url, tmp_path)
    assert again.results == seen.results
    assert any(f"Replaying recording 'nightly' (3 jobs) from {out}" in line for line in lines)


def test_scenarios_lists_builtins_and_recordings(
    recorded: tuple[Path, Seen], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """`scenarios --dir` and COSTGUARD_HOME/recordings list each recording with its summary."""
    out, _ = recorded
    home_copy = tmp_path / "costguard-home" / "recordings" / "weekly"
    shutil.copytree(out, home_copy)
    data = yaml.safe_load((home_copy / "recording.yaml").read_text())
    data["name"] = "weekly"
    (home_copy / "recording.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    broken = tmp_path / "more" / "broken"
    broken.mkdir(parents=True)
    (broken / "recording.yaml").write_text("format: costguard-recording/1\nname: [\n")
    listed = cli("simulate", "scenarios", "--dir", out.parent, "--dir", tmp_path / "more")
    assert listed.code == 0
    rows = listed.out.splitlines()
    assert rows[0].startswith("cancelled ")
    description = "openai: 1 job (file; completed); gemini: 2 jobs (inline, file; succeeded, "
    assert any(r.startswith("nightly ") and description in r and str(out) in r for r in rows)
    assert any(r.startswith("weekly ") and str(home_copy) in r for r in rows)
    assert any(r.startswith("broken ") and "unreadable recording" in r for r in rows)


def test_a_recording_name_under_the_home_resolves_for_serve(
    recorded: tuple[Path, Seen], tmp_path: Path
) -> None:
    """`serve --scenario NAME` finds COSTGUARD_HOME/recordings/NAME; built-ins still win."""
    from costguard.cli.simulate import _resolve_scenario

    shutil.copytree(recorded[0], tmp_path / "costguard-home" / "recordings" / "nightly")
    assert _resolve_scenario("nightly") == str(tmp_path / "costguard-home/recordings/nightly")
    assert _resolve_scenario("expired") == "expired"
    assert _resolve_scenario("nope") == "nope"


def test_an_invalid_manifest_is_a_usage_error_naming_the_field(
    recorded: tuple[Path, Seen], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A manifest edited into something invalid names the field, and serve exits 2."""

    def change(jobs: dict[tuple[str, str], Any]) -> None:
        jobs["openai", "file"]["outcomes"] = {"c0": "refuse"}

    path = edited(recorded, tmp_path, change)
    with pytest.raises(RecordingError, match=r"invalid recording: jobs\.0\.outcomes\.c0"):
        Simulator(path)
    upload = sorted((recorded[0] / "exchanges").glob("*-gemini.files.upload.json"))[0].name

    def misdirect(jobs: dict[tuple[str, str], Any]) -> None:
        jobs["openai", "file"]["timeline"][0]["exchange"] = upload

    with pytest.raises(RecordingError, match="whose response is not a JSON object"):
        Simulator(edited(recorded, tmp_path / "second", misdirect))
    served = cli("simulate", "serve", "--port", "0", "--scenario", path)
    assert served.code == 2
    assert "jobs.0.outcomes.c0" in served.err
