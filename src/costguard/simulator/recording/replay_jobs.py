"""A replayed job: its timeline of recorded states, its result files, and where the client is.

Also the terminal states of both providers as replay names them (`succeeded`, `expired`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from costguard.simulator.recording.format import RecordedJob
from costguard.simulator.scenario import Terminal

JSON = dict[str, Any]

OPENAI_TERMINAL: dict[str, Terminal] = {
    "completed": "succeeded",
    "expired": "expired",
    "cancelled": "cancelled",
    "failed": "failed",
}
OPENAI_STATUS = {terminal: status for status, terminal in OPENAI_TERMINAL.items()}
GEMINI_TERMINAL: dict[str, Terminal] = {
    "BATCH_STATE_SUCCEEDED": "succeeded",
    "BATCH_STATE_EXPIRED": "expired",
    "BATCH_STATE_CANCELLED": "cancelled",
    "BATCH_STATE_FAILED": "failed",
}
GEMINI_STATE = {terminal: state for state, terminal in GEMINI_TERMINAL.items()}
_OPENAI_MOMENTS = (
    "completed_at",
    "expired_at",
    "cancelled_at",
    "failed_at",
    "finalizing_at",
    "cancelling_at",
    "in_progress_at",
    "created_at",
)


@dataclass
class _Result:
    """A result file of a replayed job."""

    kind: str
    file_id: str
    lines: list[bytes]
    object: JSON | None = None
    deleted: bool = False

    def content(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)


@dataclass
class _Job:
    """A recorded job as replay serves it."""

    spec: RecordedJob
    recorded_states: list[JSON]
    recorded_results: list[_Result]
    states: list[JSON] = field(default_factory=list)
    results: dict[str, _Result] = field(default_factory=dict)
    shown: int = -1
    """Index of the state last answered; -1 until the job is claimed."""
    step: int = 0
    """Index of the state the next poll answers (the current step)."""
    deleted: bool = False
    cancelled_at_step: int | None = None
    """Set when a client cancel the recording does not hold settled the job."""

    @property
    def provider(self) -> str:
        return self.spec.provider

    @property
    def claimed(self) -> bool:
        return self.shown >= 0

    @property
    def ended(self) -> bool:
        """Whether the client has been shown the end state."""
        return self.shown == len(self.states) - 1

    def current(self) -> JSON:
        """The state last shown (what a listing shows)."""
        return self.states[max(self.shown, 0)]

    def poll(self) -> JSON:
        """The answer to one poll: the state at the current step, then the step advances."""
        self.shown = min(self.step, len(self.states) - 1)
        self.step = min(self.shown + 1, len(self.states) - 1)
        return self.states[self.shown]

    def jump(self, index: int) -> JSON:
        """Show state `index` now; the next poll goes on from there."""
        self.shown = index
        self.step = min(index + 1, len(self.states) - 1)
        return self.states[index]

    def finish(self) -> None:
        """The client asked for results: the job is at its end state from now on."""
        self.jump(len(self.states) - 1)
