"""A run's journal: everything a run needs to continue after a crash, and its state machine.

The journal changes only through named transitions. Each checks that it is allowed from the
current state (a journal that says otherwise is damaged or was driven by something else) and
saves the journal before returning, so the runner's stages read straight through and a kill -9
between any two lines leaves a journal that tells the next process what may have happened.

The run:      planned -> admitted -> submitted -> collected
              (planned until the ledger admits it; a run refused there is forgotten, not kept;
              admitted -> planned: `release`, when the provider accepted nothing)
A batch part: planned -> submitting -> submitted -> collected
              (`submitting` is written before the provider is asked to create the job, so a
              restart looks for the job by its tag before creating it again)
              (submitting | submitted -> planned: `quota_refused`, when the provider refused
              the job for its quota, at create or at validation: the part waits and is
              submitted again under a new tag, `<tag>#<attempt>`)
              (planned -> collected: a part `withdraw`n by `costguard cancel` before it was
              ever submitted; its requests are recorded cancelled)
              (collected -> submitted: `reopen`, when the manifest lost some of its lines)
The sync part (the whole queue in sync mode): planned -> collected

Where a journal is saved (a run folder's `journal.json`, or a shared ledger's journal rows) is
`RunDir`'s business: it binds every journal it loads or saves to itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from costguard.errors import CostguardError
from costguard.money import plain

if TYPE_CHECKING:
    from costguard.providers.base import JobStatus

FORMAT = 1

TERMINAL_JOB_STATES = frozenset(
    f"terminal:{s}" for s in ("succeeded", "failed", "cancelled", "expired")
)
"""`Part.job_state` once the provider reported a final state (`terminal:<state>`)."""

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"admitted"}),
    "admitted": frozenset({"planned"}),
    "submitted": frozenset({"admitted", "submitted"}),
    "collected": frozenset({"admitted", "submitted"}),
}
"""Per run status, the statuses it may be reached from."""

PART_TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"submitting", "submitted"}),
    "submitting": frozenset({"planned", "submitting"}),
    "submitted": frozenset({"submitting", "collected"}),
    "collected": frozenset({"submitted", "planned"}),
}
"""Per part state, the states it may be reached from (`planned -> collected`: the sync part)."""


class JournalError(CostguardError):
    """A journal that cannot be read, does not match the command, or breaks its state machine."""

    exit_code = 2
    kind = "journal"


@dataclass
class Part:
    """One provider job (batch mode) or the whole queue (sync mode)."""

    id: str
    provider: str
    model: str
    endpoint: str
    requests: int
    tag: str
    state: str = "planned"
    """planned -> submitting -> submitted -> collected (sync: planned -> collected)."""
    job_id: str | None = None
    input_file_id: str | None = None
    job_state: str | None = None
    """The provider's last reported state (raw name), `terminal:<state>` once final."""
    provider_state: str | None = None
    """The provider's own name for the job's state as last seen (also once final)."""
    job_counts: dict[str, int | None] | None = None
    """The job's requests as the provider last counted them: `total`, `done` (succeeded) and
    `failed`, each None when the provider did not say."""
    job_error: str | None = None
    cost_usd: str | None = None
    """Actual cost recorded in the ledger when the part was collected."""
    tokens: int | None = None
    """The most tokens the part's job enqueues at the provider (what quotas count), as planned;
    None in journals written before quotas were scheduled."""
    attempt: int = 1
    """How many times the part's job has been asked for (quota refusals send it again)."""
    quota_waits: int = 0
    """How many times the part began to wait for quota (held back because its model's quota
    was full, or refused by the provider for quota)."""
    quota_wait_s: float = 0.0
    """Seconds the part spent waiting for quota, over its finished waits."""
    waiting_since: str | None = None
    """When the current wait for quota began (ISO time); None when not waiting."""

    @property
    def job_finished(self) -> bool:
        """The provider reported a final state for this part's job."""
        return self.job_state in TERMINAL_JOB_STATES

    @property
    def waiting_for_quota(self) -> bool:
        """Held back or refused for quota, and not yet submitted (nor withdrawn)."""
        return self.state == "planned" and self.waiting_since is not None and not self.withdrawn

    @property
    def withdrawn(self) -> bool:
        """Cancelled before its job was ever created (`Journal.withdraw`): never sent."""
        return self.state == "planned" and self.job_finished

    @property
    def awaiting_job(self) -> bool:
        """Submitted and still running at the provider."""
        return self.state == "submitted" and not self.job_finished


@dataclass
class Journal:
    """Everything a run needs to continue after a crash."""

    run_id: str
    created: str
    queue: str
    queue_sha256: str
    queue_format: str
    mode: str
    as_of: str
    out: str
    options: dict[str, Any]
    estimate: dict[str, Any]
    rate_cards: list[str]
    simulate: str | None = None
    """The scenario when run against the simulator."""
    status: str = "planned"
    """planned -> admitted -> submitted -> collected (see the module docstring)."""
    groups: dict[str, list[int]] = field(default_factory=dict)
    """Per (provider|model|endpoint) group, the request count of each of its parts in order."""
    parts: list[Part] = field(default_factory=list)
    admission: str | None = None
    """The ledger's reason for admitting the run (which budget, what it had left)."""
    ledger: str | None = None
    """The identity of the ledger that admitted the run: its spend is recorded there only."""
    quota_limits: dict[str, int] = field(default_factory=dict)
    """Enqueued-token limits per model learned from the provider's refusals during the run."""
    quota_caps: dict[str, int] = field(default_factory=dict)
    """Per `provider|model`, how many parts to keep in flight, lowered when the provider
    refused a job for quota without naming a limit (Gemini), raised as submissions succeed."""
    format: int = FORMAT

    def __post_init__(self) -> None:
        self._sink: Callable[[Journal], None] | None = None

    def bind(self, sink: Callable[[Journal], None]) -> Journal:
        """Save every later transition with `sink` (`RunDir.save`); returns the journal."""
        self._sink = sink
        return self

    def part(self, part_id: str) -> Part:
        for part in self.parts:
            if part.id == part_id:
                return part
        msg = f"run {self.run_id} has no part {part_id!r}"
        raise JournalError(msg)

    @property
    def unsent(self) -> list[Part]:
        """Batch parts whose job is still to be created (waiting for quota, or not yet tried),
        withdrawn ones aside."""
        return [p for p in self.parts if p.state == "planned" and not p.withdrawn]

    @property
    def collected_all(self) -> bool:
        """Every part's results are in the output folder and its cost in the ledger."""
        return all(p.state == "collected" for p in self.parts)

    # the plan (before the journal is first saved, or while the run is still `planned`) -------

    def plan(self, parts: list[Part], groups: dict[str, list[int]]) -> None:
        """Set the run's parts; saved with the admission that follows."""
        self._require_run("planned", "plan")
        self.parts, self.groups = parts, groups

    # the run --------------------------------------------------------------------------------

    def admit(self, reason: str, ledger: str | None = None) -> None:
        """The ledger `ledger` (its identity) reserved the run's maximum, for `reason`."""
        self._check_run("admitted")
        self.admission, self.ledger = reason, ledger
        self._move_run("admitted")

    def release(self) -> None:
        """The provider accepted nothing and the ledger released the reservation: back to
        `planned`, so running the same command again is admitted and submits afresh."""
        if any(p.job_id or p.state not in ("planned", "submitting") for p in self.parts):
            msg = f"run {self.run_id}: a provider accepted some of it; it cannot be released"
            raise JournalError(msg)
        self._check_run("planned")
        for part in self.parts:
            if part.state == "submitting":
                self._move_part(part, "planned", save=False)
        self.admission = None
        self._move_run("planned")

    def relocate(self, *, queue: str | None = None, out: str | None = None) -> None:
        """The queue or the output folder is elsewhere on this machine (`collect --queue/--out`)."""
        moved = {k: v for k, v in (("queue", queue), ("out", out)) if v is not None}
        if all(getattr(self, k) == v for k, v in moved.items()):
            return
        for key, value in moved.items():
            setattr(self, key, value)
        self._save()

    def complete(self) -> None:
        """Every part collected and the ledger settled."""
        if not self.collected_all:
            msg = f"run {self.run_id}: cannot complete while parts are not collected"
            raise JournalError(msg)
        self._move_run("collected")

    # the parts ------------------------------------------------------------------------------

    def submitting(self, part: Part) -> None:
        """About to ask the provider to create `part`'s job (it may exist after a crash)."""
        self._move_part(part, "submitting")

    def submitted(
        self, part: Part, job_id: str, input_file_id: str | None, *, at: datetime | None = None
    ) -> None:
        """The provider created `part`'s job (at `at`: a wait for quota ends then)."""
        self._check_part(part, "submitted")
        self._check_run("submitted")
        part.job_id, part.input_file_id = job_id, input_file_id
        if part.waiting_since is not None and at is not None:
            waited = (at - datetime.fromisoformat(part.waiting_since)).total_seconds()
            part.quota_wait_s += max(waited, 0.0)
        part.waiting_since = None
        self._move_part(part, "submitted", save=False)
        self._move_run("submitted")

    def quota_refused(
        self, part: Part, at: datetime, *, cap: tuple[str, int] | None = None
    ) -> None:
        """The provider refused to create `part`'s job for its quota (e.g. Gemini's 429
        RESOURCE_EXHAUSTED): the part goes back to `planned` and waits; `cap` (key, parts) is
        how many parts of that provider and model to keep in flight from now on."""
        if part.state != "submitting":
            msg = f"run {self.run_id}: part {part.id} is {part.state}, not being submitted"
            raise JournalError(msg)
        if cap is not None:
            self.quota_caps[cap[0]] = cap[1]
        self._requeue(part, at, {})
        self._save()

    def withdraw(self, part: Part, at: datetime) -> None:
        """`costguard cancel` while `part` waits to be submitted (or was being submitted and
        the provider has no job for its tag): it never will be. It stays
        `planned` with a final `cancelled` job state and no job; collecting it records its
        requests as cancelled, at no cost."""
        if part.state not in ("planned", "submitting") or part.endpoint == "sync":
            msg = f"run {self.run_id}: part {part.id} ({part.state}) cannot be withdrawn"
            raise JournalError(msg)
        part.state = "planned"  # `submitting`: the caller found no job at the provider
        if part.waiting_since is not None:
            waited = (at - datetime.fromisoformat(part.waiting_since)).total_seconds()
            part.quota_wait_s += max(waited, 0.0)
            part.waiting_since = None
        part.job_state, part.provider_state = "terminal:cancelled", None
        part.job_error = "cancelled before it was submitted (costguard cancel)"
        self._save()

    def hold(self, part: Part, at: datetime) -> None:
        """`part` is held back: its model's quota is full (saved once per wait)."""
        if part.state != "planned" or part.waiting_since is not None:
            return
        self._begin_wait(part, at)
        self._save()

    def _begin_wait(self, part: Part, at: datetime) -> None:
        if part.waiting_since is None:
            part.waiting_since = at.isoformat()
            part.quota_waits += 1

    def raise_cap(self, key: str, parts: int) -> None:
        """Keep up to `parts` in flight for `key` again (submissions succeed at the cap)."""
        self.quota_caps[key] = parts
        self._save()

    def _requeue(self, part: Part, at: datetime, limits: Mapping[str, int]) -> None:
        """`part` back to `planned` under a new tag (`<tag>#<attempt>`), waiting for quota;
        the job it had, if any, ran nothing and is forgotten. Not saved."""
        self._check_part(part, "planned")
        base = part.tag.split("#", 1)[0]
        part.attempt += 1
        part.tag = f"{base}#{part.attempt}"
        part.job_id = part.input_file_id = part.job_state = part.provider_state = None
        part.job_counts, part.job_error = None, None
        self._begin_wait(part, at)
        for model, limit in limits.items():
            known = self.quota_limits.get(model)
            self.quota_limits[model] = limit if known is None else min(known, limit)
        part.state = "planned"

    def found(self, part: Part, job_id: str) -> None:
        """A job created before a crash was found at the provider by `part`'s tag."""
        if part.state != "submitting":
            msg = f"run {self.run_id}: part {part.id} is {part.state}, not being submitted"
            raise JournalError(msg)
        self._check_part(part, "submitted")
        part.job_id = job_id
        self._move_part(part, "submitted")

    def reopen(self, part: Part) -> None:
        """A collected part must be collected again: the manifest lost some of its results.

        Only a batch part whose job finished can be: its results are fetched again from the
        provider (images already on disk are recognised, not rewritten) and its cost, summed
        again from the manifest, is the one the ledger already holds.
        """
        if part.state != "collected" or not part.job_finished or part.endpoint == "sync":
            msg = f"run {self.run_id}: part {part.id} ({part.state}) cannot be collected again"
            raise JournalError(msg)
        self._move_part(part, "submitted")

    def observe(self, statuses: Mapping[str, JobStatus], at: datetime | None = None) -> None:
        """The provider's states of submitted parts' jobs (by part id), with their request
        counts; saved when any changed. A job the provider failed for its quota sends its part
        back to wait (`quota_refused`, in the same save)."""
        changed = False
        for part_id, status in statuses.items():
            part = self.part(part_id)
            if part.state != "submitted" or part.job_finished:
                continue
            if status.terminal and status.quota:
                part.job_state = "terminal:" + status.state
                limits = {part.model: status.quota_limit} if status.quota_limit else {}
                self._requeue(part, at or datetime.now().astimezone(), limits)
                changed = True
                continue
            if status.terminal:
                part.job_state, part.job_error = "terminal:" + status.state, status.error
                changed = True
            elif part.job_state != status.raw_state:
                part.job_state = status.raw_state
                changed = True
            counts = {"total": status.total, "done": status.completed, "failed": status.failed}
            if (part.provider_state, part.job_counts) != (status.raw_state, counts):
                part.provider_state, part.job_counts = status.raw_state, counts
                changed = True
        if changed:
            self._save()

    def collected(self, part: Part, cost: Decimal) -> None:
        """`part`'s results are recorded and its actual cost is in the ledger."""
        early = part.state == "submitted" and not part.job_finished
        if early or (part.state == "planned" and part.endpoint != "sync" and not part.withdrawn):
            msg = f"run {self.run_id}: part {part.id} cannot be collected while {part.state}"
            raise JournalError(msg)
        if part.state == "collected" and part.endpoint == "sync":
            part.cost_usd = plain(cost)
            self._save()  # a sync run run again: nothing was left to call, the cost is re-summed
            return
        self._check_part(part, "collected")
        part.cost_usd = plain(cost)
        self._move_part(part, "collected")

    # mechanics ------------------------------------------------------------------------------

    def _require_run(self, status: str, action: str) -> None:
        if self.status != status:
            msg = f"run {self.run_id}: cannot {action} a run that is {self.status}"
            raise JournalError(msg)

    def _check_run(self, status: str) -> None:
        if self.status not in RUN_TRANSITIONS[status]:
            msg = f"run {self.run_id}: cannot go from {self.status} to {status}"
            raise JournalError(msg)

    def _move_run(self, status: str) -> None:
        self._check_run(status)
        self.status = status
        self._save()

    def _check_part(self, part: Part, state: str) -> None:
        if part.state not in PART_TRANSITIONS[state]:
            msg = f"run {self.run_id}: part {part.id} cannot go from {part.state} to {state}"
            raise JournalError(msg)

    def _move_part(self, part: Part, state: str, *, save: bool = True) -> None:
        self._check_part(part, state)
        part.state = state
        if save:
            self._save()

    def _save(self) -> None:
        if self._sink is None:
            msg = f"run {self.run_id}: the journal is not bound to a run folder"
            raise JournalError(msg)
        self._sink(self)


def journal_from(raw: dict[str, Any]) -> Journal:
    """A journal from its JSON form (as `RunDir.save` writes it)."""
    fields = dict(raw)
    parts = [Part(**p) for p in fields.pop("parts", [])]
    return Journal(**fields, parts=parts)
