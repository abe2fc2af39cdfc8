"""Replay a recording as a stateful scenario: a job is a timeline, not a tape.

`Simulator(scenario=DIR)` (and `costguard simulate serve --scenario DIR`, `simulate(DIR)`,
the fixture marker) attaches a `Replay` when DIR holds a `recording.yaml`. The simulator keeps
its one route table and its faces: for every matched request `Simulator._dispatch` asks
`Replay.answer(route, request, match)` first; `None` lets the synthetic face answer as usual.

What the replay answers, and the rules (also in `docs/recording.md`):

* **Jobs.** A `batches.create` claims the next unclaimed recorded job of that provider, in order
  of recorded creation, preferring one with the same Gemini display name or OpenAI metadata,
  then (Gemini) the same kind, inline or file. The client sees the recorded ids. A job's
  timeline is its recorded states, consecutive repeats collapsed (`recording.yaml` `timeline`):
  create answers the first; every `get` / `retrieve` answers the state at the current step and
  then advances one step, staying on the last (terminal) one. So a client sees each recorded
  state once in its polls, one that polls more than the recording sees the final state again,
  and one that polls less (the recording polled the same state several times) reaches the end
  sooner. Asking for results (a download) at any step is answered from the recording and moves
  the job to its end. A recorded id the client never created in this replay (a resumed
  pipeline) is claimed by its first poll.
* **Results** come from the recorded downloads (OpenAI output/error files, Gemini result files)
  and the terminal body (Gemini inline): by key, in the recorded order.
* **Edits.** A job's `terminal` (when it differs from the recorded end) and `outcomes` rewrite
  its end state, counts and results: see `_settle` (`replay_edits.py`). A client `cancel` that
  the recording does not hold settles the job as `cancelled` after the states the client has
  seen.
* **Everything else** (uploads, uploaded files, jobs or sync calls beyond the recording, unknown
  ids) goes to the synthetic faces under the recording's `fallback` scenario. Jobs and sync calls
  beyond the recording are listed in `misses`.

Modules: `replay_jobs` (a job's timeline and result files), `replay_edits` (settling a job under
its edits), `replay_base` (claiming and finding jobs, JSON answers, listings), `replay_openai`
and `replay_gemini` (each provider's answers), and this one: `Replay`, which loads the
recording, routes each request to its answer, replays sync calls and saves where it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.simulator.core import Route, SimRequest, SimResponse
from costguard.simulator.recording.format import (
    EXCHANGES,
    Manifest,
    RecordedJob,
    RecordingError,
    body_json,
    body_lines,
    load_manifest,
    read_exchange,
)
from costguard.simulator.recording.replay_gemini import GeminiAnswers
from costguard.simulator.recording.replay_jobs import JSON, _Job, _Result
from costguard.simulator.recording.replay_openai import OpenAIAnswers

if TYPE_CHECKING:
    from costguard.simulator.host import Simulator

Handler = Callable[[SimRequest, re.Match[str], Route], SimResponse | None]


class Replay(OpenAIAnswers, GeminiAnswers):
    """A loaded recording answering the routes it covers (see the module docstring)."""

    def __init__(self, folder: Path, manifest: Manifest, sim: Simulator) -> None:
        self.folder = folder
        self.manifest = manifest
        self.sim = sim
        self.misses: list[str] = []
        """One line per job or sync call the recording had no answer for (the simulator's)."""
        self._exchanges = folder / EXCHANGES
        self.jobs: dict[tuple[str, str], _Job] = {}
        self._order: list[_Job] = []
        for spec in manifest.jobs:
            job = self._load_job(spec)
            self.jobs[(spec.provider, spec.id)] = job
            self._order.append(job)
        self._calls: dict[str, list[tuple[Any, JSON]]] = {}
        self._used: dict[str, list[int]] = {}
        for call in manifest.calls:
            record = read_exchange(folder, call.exchange)
            sent = body_json(self._exchanges, record["request"].get("body"))
            self._calls.setdefault(call.route, []).append((sent, record["response"]))
        self._uploads = {(u.provider, u.id) for u in manifest.uploads}
        self._handlers: dict[str, Handler] = {
            "openai.batches.create": self._openai_create,
            "openai.batches.retrieve": self._openai_retrieve,
            "openai.batches.cancel": self._openai_cancel,
            "openai.batches.list": self._openai_batches_list,
            "openai.files.retrieve": self._openai_file_retrieve,
            "openai.files.content": self._openai_file_content,
            "openai.files.delete": self._openai_file_delete,
            "openai.files.list": self._openai_files_list,
            "gemini.batches.create": self._gemini_create,
            "gemini.batches.get": self._gemini_get,
            "gemini.batches.cancel": self._gemini_cancel,
            "gemini.batches.delete": self._gemini_delete,
            "gemini.batches.list": self._gemini_batches_list,
            "gemini.files.get": self._gemini_file_get,
            "gemini.files.download": self._gemini_file_download,
            "gemini.files.delete": self._gemini_file_delete,
            "gemini.files.list": self._gemini_files_list,
            "openai.images.generate": self._sync,
            "openai.images.edit": self._sync,
            "gemini.models.generateContent": self._sync,
        }

    @classmethod
    def load(cls, path: str | Path, sim: Simulator) -> Replay:
        """The recording at `path` (folder or its `recording.yaml`), attached to `sim`."""
        folder, manifest = load_manifest(path)
        return cls(folder, manifest, sim)

    # -- the request path -------------------------------------------------------------------

    def answer(self, route: Route, request: SimRequest, match: re.Match[str]) -> SimResponse | None:
        """The recorded answer to this request, or None for the synthetic face to answer."""
        handler = self._handlers.get(route.name)
        return handler(request, match, route) if handler is not None else None

    # -- loading ----------------------------------------------------------------------------

    def _body(self, exchange: str) -> Any:
        record = read_exchange(self.folder, exchange)
        return body_json(self._exchanges, record["response"].get("body"))

    def _load_job(self, spec: RecordedJob) -> _Job:
        states = [self._body(step.exchange) for step in spec.timeline]
        for step, state in zip(spec.timeline, states, strict=True):
            if not isinstance(state, dict):
                msg = (
                    f"{self.folder / 'recording.yaml'}: job {spec.id}: timeline step "
                    f"{step.state!r} points at {step.exchange}, whose response is not a JSON object"
                )
                raise RecordingError(msg)
        results = []
        for result in spec.results:
            record = read_exchange(self.folder, result.exchange)
            lines = list(body_lines(self._exchanges, record["response"].get("body")))
            obj = self._body(result.object) if result.object else None
            results.append(_Result(result.kind, result.file_id, lines, obj))
        job = _Job(spec, states, results)
        self._settle(job, spec.terminal)
        return job

    # Sync calls -----------------------------------------------------------------------------

    def _sync(self, request: SimRequest, _m: re.Match[str], route: Route) -> SimResponse | None:
        recorded = self._calls.get(route.name, [])
        used = self._used.setdefault(route.name, [])
        free = [i for i in range(len(recorded)) if i not in used]
        if not free:
            self.misses.append(
                f"{route.name}: no recorded call left ({len(recorded)} recorded); the simulator "
                f"answered under {self.sim.scenario.name!r}"
            )
            return None
        try:
            sent = request.json()
        except ValueError:
            sent = None
        same = [i for i in free if sent is not None and recorded[i][0] == sent]
        index = (same or free)[0]
        used.append(index)
        response = recorded[index][1]
        payload = body_json(self._exchanges, response.get("body"))
        return self._json(request, payload, int(response.get("status", 200)))

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> JSON:
        """Where each job and call is (saved with the simulator's state)."""
        return {
            "folder": str(self.folder),
            "misses": list(self.misses),
            "calls": {name: list(used) for name, used in self._used.items()},
            "jobs": [
                {
                    "provider": job.provider,
                    "id": job.spec.id,
                    "shown": job.shown,
                    "step": job.step,
                    "deleted": job.deleted,
                    "cancelled_at_step": job.cancelled_at_step,
                    "deleted_files": sorted(r.file_id for r in job.results.values() if r.deleted),
                }
                for job in self._order
            ],
        }

    def from_state(self, state: JSON) -> None:
        """Continue from `to_state()` output."""
        self.misses = list(state.get("misses", []))
        self._used = {name: list(used) for name, used in state.get("calls", {}).items()}
        for saved in state.get("jobs", []):
            job = self.jobs.get((saved["provider"], saved["id"]))
            if job is None:
                continue
            if saved.get("cancelled_at_step") is not None:
                job.shown = int(saved["cancelled_at_step"])
                self._cancel(job)
            job.shown, job.step = int(saved["shown"]), int(saved["step"])
            job.deleted = bool(saved["deleted"])
            for file_id in saved.get("deleted_files", []):
                if file_id in job.results:
                    job.results[file_id].deleted = True
