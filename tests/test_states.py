"""One vocabulary of job and part states (`providers/states.py`, `run/progress.py` part_state)."""

from __future__ import annotations

import pytest

from costguard.execution.journal import Part
from costguard.execution.progress import PART_STATES, part_state
from costguard.providers.states import PROVIDER_STATES, TERMINAL, job_state


@pytest.mark.parametrize(
    ("provider", "raw", "expected"),
    [
        ("openai", "validating", "queued"),
        ("openai", "in_progress", "running"),
        ("openai", "finalizing", "finalizing"),
        ("openai", "cancelling", "cancelling"),
        ("openai", "completed", "succeeded"),
        ("openai", "failed", "failed"),
        ("openai", "expired", "expired"),
        ("openai", "cancelled", "cancelled"),
        ("gemini", "JOB_STATE_QUEUED", "queued"),
        ("gemini", "JOB_STATE_PENDING", "queued"),
        ("gemini", "JOB_STATE_RUNNING", "running"),
        ("gemini", "JOB_STATE_UPDATING", "running"),
        ("gemini", "JOB_STATE_PAUSED", "running"),
        ("gemini", "JOB_STATE_CANCELLING", "cancelling"),
        ("gemini", "JOB_STATE_SUCCEEDED", "succeeded"),
        ("gemini", "JOB_STATE_PARTIALLY_SUCCEEDED", "succeeded"),
        ("gemini", "JOB_STATE_FAILED", "failed"),
        ("gemini", "JOB_STATE_EXPIRED", "expired"),
        ("gemini", "JOB_STATE_CANCELLED", "cancelled"),
        ("gemini", "BATCH_STATE_PENDING", "queued"),
        ("gemini", "BATCH_STATE_RUNNING", "running"),
        ("gemini", "BATCH_STATE_SUCCEEDED", "succeeded"),
        ("gemini", "BATCH_STATE_CANCELLED", "cancelled"),
        ("gemini", "JOB_STATE_UNSPECIFIED", "unknown"),
        ("gemini", "in_progress", "unknown"),
        ("openai", "JOB_STATE_RUNNING", "unknown"),
        ("openai", "paused", "unknown"),
    ],
)
def test_each_provider_state_maps_to_one_word(provider: str, raw: str, expected: str) -> None:
    """Both providers' own names land in one vocabulary; a name it does not know is `unknown`."""
    assert job_state(provider, raw) == expected


def test_the_vocabulary_is_closed_and_only_final_states_are_terminal() -> None:
    """Every mapped state is a part state too; unknown and in-flight states are never final."""
    mapped = {state for table in PROVIDER_STATES.values() for state in table.values()}
    assert mapped | {"unknown"} <= set(PART_STATES)
    assert set(TERMINAL) == {"succeeded", "failed", "expired", "cancelled"}
    assert not {"queued", "running", "finalizing", "cancelling", "unknown"} & set(TERMINAL)


def part(**changes: object) -> Part:
    """A batch part of the OpenAI provider, changed as asked."""
    made = Part("gpt-image-2-1", "openai", "gpt-image-2", "generations", 5, tag="t")
    for name, value in changes.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize(
    ("changes", "collecting", "expected"),
    [
        ({}, False, "planned"),
        ({"state": "submitting"}, False, "submitting"),
        ({"state": "submitted", "job_state": None}, False, "queued"),
        ({"state": "submitted", "job_state": "validating"}, False, "queued"),
        ({"state": "submitted", "job_state": "in_progress"}, False, "running"),
        ({"state": "submitted", "job_state": "finalizing"}, False, "finalizing"),
        ({"state": "submitted", "job_state": "terminal:expired"}, False, "expired"),
        ({"state": "submitted", "job_state": "terminal:succeeded"}, True, "collecting"),
        ({"state": "collected", "job_state": "terminal:cancelled"}, False, "collected"),
        ({"provider": "gemini", "state": "submitted", "job_state": "JOB_STATE_RUNNING"}, False,
         "running"),
        ({"endpoint": "sync"}, True, "running"),
    ],
)  # fmt: skip
def test_a_parts_state_reads_its_journal_entry(
    changes: dict[str, object], collecting: bool, expected: str
) -> None:
    """A part's shown state comes from its journal entry: before, at and after the provider."""
    assert part_state(part(**changes), collecting=collecting) == expected
