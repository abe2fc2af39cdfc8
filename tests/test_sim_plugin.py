"""The pytest plugin: `costguard_sim` fixture and `costguard_scenario` marker, run with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CLIENT = """
import json
import openai
import pytest
from openai import OpenAI

LINE = {"custom_id": "a", "method": "POST", "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1", "prompt": "a fox"}}


def run_batch(sim):
    client = OpenAI(api_key="sk-plugin")
    data = (json.dumps(LINE) + "\\n").encode()
    file = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/images/generations",
                                  completion_window="24h")
    sim.advance(48 * 3600)
    return client.batches.retrieve(batch.id)
"""


def test_fixture_answers_the_sdk_under_the_default_scenario(pytester: pytest.Pytester) -> None:
    """Without a marker the fixture simulates `succeeded`, in-process, and counts calls."""
    pytester.makepyfile(
        CLIENT
        + """
def test_default(costguard_sim):
    assert costguard_sim.scenario.name == "succeeded"
    assert run_batch(costguard_sim).status == "completed"
    assert costguard_sim.calls.count("openai.batches.create") == 1
    assert len(costguard_sim.jobs) == 1
"""
    )
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=1)


def test_marker_picks_the_scenario_and_options(pytester: pytest.Pytester) -> None:
    """@pytest.mark.costguard_scenario("expired", api_keys=[...]) configures the fixture."""
    pytester.makepyfile(
        CLIENT
        + """
@pytest.mark.costguard_scenario("expired", api_keys=["sk-plugin"])
def test_expired(costguard_sim):
    assert run_batch(costguard_sim).status == "expired"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(api_key="sk-other").batches.list()
"""
    )
    pytester.runpytest_inprocess("-p", "no:randomly", "--strict-markers").assert_outcomes(passed=1)


def test_indirect_parametrization_runs_each_scenario(pytester: pytest.Pytester) -> None:
    """parametrize("costguard_sim", [...], indirect=True) runs the test once per scenario."""
    pytester.makepyfile(
        CLIENT
        + """
@pytest.mark.parametrize("costguard_sim", ["succeeded", "cancelled", "failed"], indirect=True)
def test_each(costguard_sim):
    expected = {"succeeded": "completed", "cancelled": "cancelled", "failed": "failed"}
    assert run_batch(costguard_sim).status == expected[costguard_sim.scenario.name]
"""
    )
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=3)


def test_unmatched_request_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    """A request to a path the simulator does not serve errors the test, naming the request."""
    pytester.makepyfile(
        """
import httpx2

def test_stray(costguard_sim):
    httpx2.get("https://api.openai.com/v1/models", headers={"authorization": "Bearer k"})
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*costguard-sim: GET /v1/models not simulated*"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    """`pytest --markers` documents costguard_scenario."""
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.costguard_scenario(name, *, api_keys=None*"])
