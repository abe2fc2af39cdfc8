"""One vocabulary of job states for every provider, mapped from each provider's own names here.

Both providers report a job's state in their own words (OpenAI `validating`, `in_progress`;
Gemini `JOB_STATE_PENDING` as the SDK gives it, `BATCH_STATE_RUNNING` on the wire). costguard
shows and decides on its own words only:

| state | OpenAI | Gemini |
|---|---|---|
| queued | validating | JOB_STATE_QUEUED, JOB_STATE_PENDING |
| running | in_progress | JOB_STATE_RUNNING, JOB_STATE_UPDATING, JOB_STATE_PAUSED |
| finalizing | finalizing | |
| cancelling | cancelling | JOB_STATE_CANCELLING |
| succeeded | completed | JOB_STATE_SUCCEEDED, JOB_STATE_PARTIALLY_SUCCEEDED |
| failed | failed | JOB_STATE_FAILED |
| expired | expired | JOB_STATE_EXPIRED |
| cancelled | cancelled | JOB_STATE_CANCELLED |
| unknown | anything else | anything else (JOB_STATE_UNSPECIFIED, a name added later) |

(Gemini's wire names `BATCH_STATE_*` are mapped like the SDK's `JOB_STATE_*`.) An unknown
state is never final: the job is polled until it reports one costguard knows. The provider's
raw name is kept beside the state, for `--verbose` and JSON output.
"""

from __future__ import annotations

from typing import Literal

JobState = Literal[
    "queued",
    "running",
    "finalizing",
    "cancelling",
    "succeeded",
    "failed",
    "expired",
    "cancelled",
    "unknown",
]
"""A provider job's state, in costguard's words."""

TERMINAL: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled", "expired"})
"""The states a job never leaves."""

_GEMINI: dict[str, JobState] = {
    "QUEUED": "queued",
    "PENDING": "queued",
    "RUNNING": "running",
    "UPDATING": "running",
    "PAUSED": "running",
    "CANCELLING": "cancelling",
    "SUCCEEDED": "succeeded",
    "PARTIALLY_SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "EXPIRED": "expired",
    "CANCELLED": "cancelled",
}

PROVIDER_STATES: dict[str, dict[str, JobState]] = {
    "openai": {
        "validating": "queued",
        "in_progress": "running",
        "finalizing": "finalizing",
        "cancelling": "cancelling",
        "completed": "succeeded",
        "failed": "failed",
        "expired": "expired",
        "cancelled": "cancelled",
    },
    "gemini": {
        f"{prefix}{name}": state
        for prefix in ("JOB_STATE_", "BATCH_STATE_")
        for name, state in _GEMINI.items()
    },
}
"""Per provider, its raw state names in costguard's words."""


def job_state(provider: str, raw: str) -> JobState:
    """`raw`, a state as `provider` names it, in costguard's words (`unknown` if unheard of)."""
    return PROVIDER_STATES.get(provider, {}).get(raw, "unknown")
