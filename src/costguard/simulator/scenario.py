"""Scenarios: what happens to a simulated batch job and to each request in it.

Built-in scenarios live in `fixtures/scenarios/<name>.yaml`; a user passes a file path or a
name. The scenario decides a job's timeline (in simulated seconds), its terminal state, and
each request's outcome, deterministically from the request's position and prompt.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from statistics import NormalDist
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costguard.errors import UsageError
from costguard.resources import data_dir

Terminal = Literal["succeeded", "expired", "cancelled", "failed"]

REFUSE_MARKER = "[refuse]"
"""A prompt containing this marker is refused under every scenario (documented for users)."""

SCENARIO_MARKER = re.compile(r"cg_scenario=([A-Za-z0-9_.\-]+)")
"""How free text (a Gemini display name) asks for a scenario: `cg_scenario=expired`."""


MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""The largest `image_bytes` a scenario may ask for."""


class UnknownScenarioError(UsageError, ValueError):
    """A scenario name or file that does not exist or does not validate."""

    kind = "unknown_scenario"


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


class TokenSpread(_Model):
    """Token counts that vary per request: a log-normal draw with this median, clipped to
    [0, max], the same for the same request key on every run."""

    median: int = Field(ge=0)
    """The median count (half the requests report more, half less)."""
    max: int = Field(ge=0)
    """No request reports more than this (draws above are clipped to it)."""
    sigma: float = Field(0.5, gt=0, le=3)
    """Spread of the log-normal: the standard deviation of ln(count). 0.5 puts about 90% of
    draws between 0.44x and 2.3x the median."""

    @model_validator(mode="after")
    def _median_within_max(self) -> TokenSpread:
        if self.median > self.max:
            msg = f"median ({self.median}) must not exceed max ({self.max})"
            raise ValueError(msg)
        return self

    def draw(self, key: str, what: str) -> int:
        """The count for the request `key` (`what` names the figure, so two figures of one
        request are independent draws). Deterministic: seeded from a digest of both."""
        digest = hashlib.sha256(f"costguard-sim:{what}:{key}".encode()).digest()
        uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64
        z = NormalDist().inv_cdf(uniform)
        return min(self.max, max(0, round(self.median * math.exp(self.sigma * z))))


class Quota(_Model):
    """The provider's batch quotas (organization- or project-wide limits on enqueued work).

    A job counts while it is not terminal (OpenAI: validating, in_progress, finalizing,
    cancelling; Gemini: pending, running); it frees its share once it succeeded, failed,
    expired or was cancelled. The limits are those of the scenario the new job runs under;
    every non-terminal job of the same provider counts against them, whatever its scenario.
    A job's enqueued tokens are counted by `costguard.simulator.openai.usage.enqueued_tokens`
    and `costguard.simulator.gemini.content.enqueued_tokens`.
    """

    enqueued_tokens: dict[str, Annotated[int, Field(ge=0)]] = {}
    """Per model name (as the batch names it, without `models/`): the most tokens that may be
    enqueued at once in that model's non-terminal batches. A model not listed has no limit.
    Over it, OpenAI creates the batch, which then fails validation with
    `token_limit_exceeded`; Gemini refuses the create with 429 RESOURCE_EXHAUSTED."""
    concurrent_jobs: int | None = Field(None, ge=1)
    """Gemini only: the most batch jobs not yet terminal at once (Gemini's concurrent batch
    limit); a create past it is refused with 429 RESOURCE_EXHAUSTED. None: no limit. OpenAI
    publishes no such limit (only enqueued tokens), so OpenAI ignores it."""

    def token_limit(self, model: str) -> int | None:
        """The enqueued-token limit of `model` (a `models/` prefix is ignored), or None."""
        return self.enqueued_tokens.get(model.removeprefix("models/"))


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
    latency_s: dict[str, float] = {}
    """Wall seconds to hold the answer of these endpoints (route names such as
    `openai.batches.create`), after the provider has acted and the state is saved: a slow API
    or network. Lets a test stop a client while a call it made is still unanswered."""
    image_pixels: Literal["tiny", "requested"] = "tiny"
    """`tiny` (default): the 32x32 recorded images, a few hundred bytes, so a 50,000-request
    batch streams in seconds; `requested`: every image has the pixel size its request asks for
    (Gemini: model, `imageSize`, `aspectRatio`; OpenAI: `size`), tens of KB at 1K unpadded and
    about a millisecond each to draw."""
    image_bytes: int | None = Field(None, gt=0, le=MAX_IMAGE_BYTES)
    """Pad each image to about this many bytes (data decoders skip: a PNG chunk, JPEG comments,
    a WebP chunk), so downloads weigh what real ones do (1-2 MB at 1K); None: no padding."""
    thinking_tokens: TokenSpread | None = None
    """Gemini: each request's `thoughtsTokenCount` drawn per request key (`TokenSpread`)
    instead of the model's fixed figure, for models that think; None: the fixed figure."""
    input_image_tokens: TokenSpread | None = None
    """OpenAI edits: the tokens of each input image drawn per request key and image
    (`TokenSpread`) instead of the fixed `edit_input_image_tokens`; None: the fixed figure."""

    quota: Quota = Quota()
    """The provider's batch quotas (`Quota`); default: no limits."""

    def image_size(self, requested: tuple[int, int]) -> tuple[int, int] | None:
        """The pixel size to draw for a request asking `requested` (None: a tiny image)."""
        return requested if self.image_pixels == "requested" else None

    def refuses(self, position: int | None, prompt: str) -> bool:
        """Whether the provider refuses this request on safety grounds.

        A prompt containing `REFUSE_MARKER` is refused under every scenario; otherwise the
        request at 0-based `position` is refused when `refusals.every` > 0 and
        `position % every == offset % every`. Synchronous calls pass their per-simulator
        call index as the position.
        """
        if REFUSE_MARKER in prompt:
            return True
        every = self.refusals.every
        if position is None or every <= 0:
            return False
        return position % every == self.refusals.offset % every

    def order(self, count: int) -> Iterator[int]:
        """The input positions in the order results are written (shuffled when `shuffle`).

        The shuffle is a fixed affine permutation `i -> (a*i + b) mod count`, so it is the same
        on every run and needs no memory, even for a 50,000-request batch.
        """
        if not self.shuffle or count < 3:
            yield from range(count)
            return
        step = max(2, round(count * 0.6180339887))
        while math.gcd(step, count) != 1:
            step += 1
        start = count // 3
        for i in range(count):
            yield (step * i + start) % count


def builtin_dir() -> Path:
    """The folder of the built-in scenario files."""
    return data_dir("fixtures") / "scenarios"


def builtin_names() -> list[str]:
    """Names of the built-in scenarios, sorted."""
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario by built-in name or by path to a YAML file."""
    given = Path(name_or_path)
    path = given if given.suffix else builtin_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        names = builtin_names()
        if path.parent == builtin_dir():  # a plain name that is not built in
            why = ""
        elif given.is_dir():
            why = ": a folder, but no recording (it has no recording.yaml)"
        else:
            why = ": not a file" if given.exists() else ": no such file"
        msg = f"unknown scenario {name_or_path!r}{why}; built-in scenarios: {', '.join(names)}"
        raise UnknownScenarioError(msg, details={"scenario": name_or_path, "known": names})
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = f"{path}: invalid scenario: {where}: {err['msg']}"
        raise UnknownScenarioError(msg) from exc
    except (OSError, yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: an impossible date (2026-13-40); RecursionError: nesting past Python's stack
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{path}: invalid scenario: {first}"
        raise UnknownScenarioError(msg) from exc
