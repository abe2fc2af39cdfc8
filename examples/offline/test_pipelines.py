"""Offline tests of the example pipelines with the costguard_sim fixture: no network, no bill.

Run them with `pytest examples/offline` (docs/testing-offline.md walks through each one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pipeline_gemini
import pipeline_openai
import pytest
import yaml
from google import genai
from openai import OpenAI

import costguard
from costguard.simulator import Simulator

PROMPTS = {
    "fox": "a red fox in the snow",
    "owl": "an owl at dusk",
    "odd": "a rude gesture [refuse]",
}
RECORDING = Path(__file__).parent / "recordings" / "nightly"


def openai_client() -> OpenAI:
    """The SDK's own default host: the fixture answers api.openai.com in-process."""
    return OpenAI(api_key="sk-test")


def gemini_client() -> genai.Client:
    """Any key works: the fixture answers generativelanguage.googleapis.com in-process."""
    return genai.Client(api_key="test-key")


# --- 1. The fixture: every SDK call in the test is answered by the simulator -----------------


def test_openai_pipeline(costguard_sim: Simulator) -> None:
    """Two images and one moderation refusal ('[refuse]' is refused under every scenario)."""
    rendered = pipeline_openai.render(openai_client(), PROMPTS, sleep=costguard_sim.advance)
    assert rendered.status == "completed"
    assert sorted(rendered.images) == ["fox", "owl"]
    assert rendered.images["fox"].startswith(b"\x89PNG")
    assert rendered.failures == {"odd": "moderation_blocked"}
    # What the simulator saw:
    assert costguard_sim.calls.count("openai.batches.create") == 1
    assert costguard_sim.calls.count("openai.files.content") == 2  # output and error files
    assert [(u.filename, u.purpose) for u in costguard_sim.uploads] == [("prompts.jsonl", "batch")]
    assert [(job.provider, job.requests) for job in costguard_sim.jobs] == [("openai", 3)]


def test_gemini_pipeline(costguard_sim: Simulator) -> None:
    """Two images; the refused prompt comes back as a response without an image."""
    rendered = pipeline_gemini.render(gemini_client(), PROMPTS, sleep=costguard_sim.advance)
    assert rendered.status == "JOB_STATE_SUCCEEDED"
    assert sorted(rendered.images) == ["fox", "owl"]
    assert rendered.failures == {"odd": "NO_IMAGE"}
    assert costguard_sim.calls.statuses("gemini.batches.create") == [200]


# --- 2. Scenarios: for the whole test, per test run, or per job ------------------------------


@pytest.mark.costguard_scenario("expired", time_scale=0)  # time moves only when the code sleeps
def test_openai_pipeline_keeps_what_finished_before_the_window_closed(
    costguard_sim: Simulator,
) -> None:
    """Under `expired`, the finished 60% (by position) is kept and the rest is batch_expired."""
    rendered = pipeline_openai.render(
        openai_client(), PROMPTS, poll_s=3600, sleep=costguard_sim.advance
    )
    assert rendered.status == "expired"
    assert sorted(rendered.images) == ["fox"]
    assert rendered.failures == {"owl": "batch_expired", "odd": "batch_expired"}


@pytest.mark.parametrize("costguard_sim", ["succeeded", "shuffled", "refusals"], indirect=True)
def test_gemini_results_are_matched_by_key(costguard_sim: Simulator) -> None:
    """Whatever order results come back in, each image lands under its own key."""
    rendered = pipeline_gemini.render(gemini_client(), PROMPTS, sleep=costguard_sim.advance)
    assert sorted(rendered.images) == ["fox", "owl"]
    assert list(rendered.failures) == ["odd"]


def test_one_scenario_per_job(costguard_sim: Simulator) -> None:
    """OpenAI metadata and Gemini display names pick a scenario for one job only."""
    client = openai_client()
    normal = pipeline_openai.render(client, PROMPTS, sleep=costguard_sim.advance)
    cancelled = pipeline_openai.render(
        client, PROMPTS, metadata={"cg_scenario": "cancelled"}, sleep=costguard_sim.advance
    )
    failed = pipeline_gemini.render(
        gemini_client(),
        PROMPTS,
        display_name="nightly cg_scenario=failed",
        sleep=costguard_sim.advance,
    )
    assert (normal.status, cancelled.status, failed.status) == (
        "completed",
        "cancelled",
        "JOB_STATE_FAILED",
    )
    assert cancelled.failures["odd"] == "batch_cancelled"
    assert failed.images == {}
    assert [job.scenario for job in costguard_sim.jobs] == ["succeeded", "cancelled", "failed"]


# --- 3. Replay a recorded run, as recorded or edited -----------------------------------------


@pytest.mark.costguard_scenario(str(RECORDING))
def test_replay_a_recorded_run(costguard_sim: Simulator) -> None:
    """The recorded run replays statefully: no sleeping needed, same results by key."""
    openai_run = pipeline_openai.render(openai_client(), PROMPTS, sleep=lambda _: None)
    gemini_run = pipeline_gemini.render(
        gemini_client(), PROMPTS, display_name="nightly", sleep=lambda _: None
    )
    assert (openai_run.status, gemini_run.status) == ("completed", "JOB_STATE_SUCCEEDED")
    assert openai_run.failures == {"odd": "moderation_blocked"}
    assert gemini_run.failures == {"odd": "NO_IMAGE"}
    assert costguard_sim.replay is not None
    assert costguard_sim.replay.misses == []  # nothing fell outside the recording


def test_replay_with_edited_outcomes(tmp_path: Path) -> None:
    """Edit a copy of the recording: one key refused, one job expired."""
    edited = tmp_path / "nightly"
    shutil.copytree(RECORDING, edited)
    manifest_path = edited / "recording.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    openai_job, gemini_job = manifest["jobs"]
    openai_job["outcomes"] = {"fox": "refused"}
    gemini_job["terminal"] = "expired"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))

    with costguard.simulate(edited) as sim:
        openai_run = pipeline_openai.render(openai_client(), PROMPTS, sleep=lambda _: None)
        gemini_run = pipeline_gemini.render(gemini_client(), PROMPTS, sleep=lambda _: None)
    assert sorted(openai_run.images) == ["owl"]
    assert openai_run.failures == {"fox": "moderation_blocked", "odd": "moderation_blocked"}
    assert (gemini_run.status, gemini_run.images) == ("JOB_STATE_EXPIRED", {})
    assert sim.calls.count("gemini.batches.get") == 3  # pending, running, expired
