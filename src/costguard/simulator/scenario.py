"""Scenarios: what happens to a simulated batch job and to each request in it.

Built-in scenarios live in `fixtures/scenarios/<name>.yaml`; a user passes a file path or a
name. The scenario decides a job's timeline (in simulated seconds), its terminal state, and
each request's outcome, deterministically from the request's position and prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costguard.resources import data_dir

Terminal = Literal["succeeded", "expired", "cancelled", "failed"]

REFUSE_MARKER = "[refuse]"
"""A prompt containing this marker is refused under every scenario (documented for users)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Refusals(_Model):
    """Which requests the provider refuses on safety grounds."""

    every: int = Field(0, ge=0)
    """Refuse the request at 0-based position i when `every` > 0 and i % every == offset."""
    offset: int = Field(0, ge=0)


class Flaky(_Model):
    """Transient errors on API calls (not on batch requests)."""

    every: int = Field(0, ge=0)
    """Answer every `every`-th call (1-based count per simulator) with an error; 0 = never."""
    statuses: list[int] = [429, 503]
    """Statuses to cycle through."""
    retry_after_s: float = 1.0
    """Value of the Retry-After hint (wall seconds)."""


class Scenario(_Model):
    """One scenario file."""

    name: str
    description: str
    """One line, shown by `costguard simulate scenarios`."""
    time_scale: float = Field(7200.0, gt=0)
    """Simulated seconds per wall-clock second."""
    pending_s: float = Field(600.0, ge=0)
    """Simulated seconds a job stays pending/validating."""
    running_s: float = Field(3600.0, ge=0)
    """Simulated seconds a job runs before its terminal state."""
    finalizing_s: float = Field(300.0, ge=0)
    """Simulated seconds in OpenAI's `finalizing` before `completed`."""
    terminal: Terminal = "succeeded"
    completed_fraction: float = Field(1.0, ge=0, le=1)
    """For expired/cancelled jobs: share of requests (by position) finished before the end."""
    refusals: Refusals = Refusals()
    flaky: Flaky = Flaky()
    shuffle: bool = False
    """Write result files out of input order."""


def builtin_dir() -> Path:
    """The folder of the built-in scenario files."""
    return data_dir("fixtures") / "scenarios"


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario by built-in name or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = builtin_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in builtin_dir().glob("*.yaml")))
            msg = f"unknown scenario {name_or_path!r}; built-in scenarios: {known}"
            raise ValueError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{path}: invalid scenario: {first}"
        raise ValueError(msg) from exc
