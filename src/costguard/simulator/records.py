"""What the simulator notes for tests (created jobs, uploaded files) and its saved state format."""

from __future__ import annotations

from dataclasses import dataclass

from costguard.errors import UsageError

STATE_FORMAT = "costguard-sim/1"
"""The `format` field of a saved state; `load` refuses anything else."""


class SimulatorStateError(UsageError):
    """A saved simulator state file is missing, unreadable or of another format."""

    kind = "simulator_state"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A batch job some client created (what tests assert on)."""

    provider: str
    id: str
    scenario: str
    requests: int


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A file some client uploaded (what tests assert on)."""

    provider: str
    id: str
    filename: str
    bytes: int
    purpose: str
