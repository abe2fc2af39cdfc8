"""Batch jobs: the stored record, and the job's status timeline.

A job's state is computed from the simulated clock and the job's scenario each time it is
read; nothing runs in the background.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from costguard.simulator.gemini.wire import JSON
from costguard.simulator.scenario import Scenario

META_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"

PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})


@dataclass(slots=True)
class _Batch:
    id: str
    model: str
    """The id as the client named it, without `models/`."""
    display_name: str | None
    create_t: float
    scenario: Scenario
    count: int
    inline: list[JSON] | None
    """Inline items (`{"request": ..., "metadata": ...}`), or None for a file job."""
    input_file: str | None
    invalid_input: str | None
    """Why the input fails validation (the job then ends FAILED), or None."""
    error_positions: list[int]
    """Positions of requests answered with a per-request error (sorted)."""
    cancel_t: float | None = None
    deleted: bool = False
    output_deleted: bool = False
    output_digest: tuple[int, str] | None = None
    """(size, sha256 hex) of the result file once computed."""
    enqueued_tokens: int = 0
    """What the job counts against its model's enqueued-token quota while not terminal
    (`content.enqueued_tokens` summed over its valid requests)."""

    def to_state(self) -> JSON:
        return {
            "id": self.id,
            "model": self.model,
            "display_name": self.display_name,
            "create_t": self.create_t,
            "scenario": self.scenario.model_dump(mode="json"),
            "count": self.count,
            "inline": self.inline,
            "input_file": self.input_file,
            "invalid_input": self.invalid_input,
            "error_positions": self.error_positions,
            "cancel_t": self.cancel_t,
            "deleted": self.deleted,
            "output_deleted": self.output_deleted,
            "output_digest": list(self.output_digest) if self.output_digest else None,
            "enqueued_tokens": self.enqueued_tokens,
        }

    @classmethod
    def from_state(cls, state: JSON) -> _Batch:
        digest = state.get("output_digest")
        return cls(
            id=state["id"],
            model=state["model"],
            display_name=state["display_name"],
            create_t=state["create_t"],
            scenario=Scenario.model_validate(state["scenario"]),
            count=state["count"],
            inline=state["inline"],
            input_file=state["input_file"],
            invalid_input=state["invalid_input"],
            error_positions=list(state["error_positions"]),
            cancel_t=state["cancel_t"],
            deleted=state["deleted"],
            output_deleted=state["output_deleted"],
            output_digest=(int(digest[0]), str(digest[1])) if digest else None,
            enqueued_tokens=int(state.get("enqueued_tokens", 0)),
        )


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A job's state at one simulated instant."""

    state: str
    update_t: float
    end_t: float | None
    kept: int
    """How many requests (positions 0..kept-1) have results the client can read."""

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self.state in TERMINAL_STATES


def batch_status(batch: _Batch, now: float) -> BatchStatus:  # noqa: PLR0911 - the timeline
    """Where `batch` is at simulated time `now` (see `docs/simulator-gemini.md`)."""
    scenario = batch.scenario
    run_t = batch.create_t + scenario.pending_s
    end_t = run_t if batch.invalid_input is not None else run_t + scenario.running_s
    cancel_t = batch.cancel_t
    if cancel_t is not None and cancel_t < end_t:
        done = 0.0 if cancel_t < run_t else (cancel_t - run_t) / scenario.running_s
        return BatchStatus(CANCELLED, cancel_t, cancel_t, min(batch.count, int(batch.count * done)))
    if now < run_t:
        return BatchStatus(PENDING, batch.create_t, None, 0)
    if now < end_t:
        return BatchStatus(RUNNING, run_t, None, 0)
    if batch.invalid_input is not None:
        return BatchStatus(FAILED, end_t, end_t, 0)
    terminal = scenario.terminal
    if terminal == "succeeded":
        return BatchStatus(SUCCEEDED, end_t, end_t, batch.count)
    if terminal == "cancelled":
        kept = min(batch.count, int(batch.count * scenario.completed_fraction))
        return BatchStatus(CANCELLED, end_t, end_t, kept)
    state = EXPIRED if terminal == "expired" else FAILED
    return BatchStatus(state, end_t, end_t, 0)


def _result_order(batch: _Batch, kept: int) -> Iterator[int]:
    """Positions 0..kept-1 in the order results are written (the shared shuffle rule)."""
    return batch.scenario.order(kept)
