"""What every replayed answer shares: claiming recorded jobs, finding them, JSON, listings."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costguard.simulator.core import Route, SimRequest, SimResponse
from costguard.simulator.recording.format import Manifest
from costguard.simulator.recording.replay_edits import ReplayEdits
from costguard.simulator.recording.replay_jobs import JSON, _Job, _Result

if TYPE_CHECKING:
    from costguard.simulator.host import Simulator


class ReplayBase(ReplayEdits):
    """The recording's jobs and the steps the OpenAI and Gemini answers share."""

    folder: Path
    manifest: Manifest
    sim: Simulator
    misses: list[str]
    jobs: dict[tuple[str, str], _Job]
    _order: list[_Job]
    _uploads: set[tuple[str, str]]

    @property
    def name(self) -> str:
        """The recording's scenario name."""
        return self.manifest.name

    # -- claiming jobs ----------------------------------------------------------------------

    def _claim(self, provider: str, request: SimRequest) -> _Job | None:
        free = [j for j in self._order if j.provider == provider and not j.claimed]
        if not free:
            recorded = sum(1 for j in self._order if j.provider == provider)
            self.misses.append(
                f"{provider}.batches.create: no recorded {provider} job left ({recorded} "
                f"recorded); the simulator answered under {self.sim.scenario.name!r}"
            )
            return None
        try:
            body = request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if provider == "openai":
            metadata = body.get("metadata")
            same = [j for j in free if metadata and j.spec.metadata == metadata]
            return (same or free)[0]
        raw = body.get("batch")
        batch: JSON = raw if isinstance(raw, dict) else {}
        display = batch.get("displayName", batch.get("display_name"))
        config = batch.get("inputConfig", batch.get("input_config")) or {}
        by_file = isinstance(config, dict) and bool(config.get("fileName", config.get("file_name")))
        kind = "file" if by_file else "inline"
        named = [j for j in free if display and j.spec.display_name == display]
        same_kind = [j for j in free if j.spec.kind == kind]
        return (named or same_kind or free)[0]

    def _start(self, job: _Job) -> JSON:
        job.shown, job.step = 0, 0  # create answers step 0; the first poll shows it again
        self.sim.record_job(job.provider, job.spec.id, self.name, job.spec.requests or 0)
        return job.states[0]

    def _job(self, provider: str, job_id: str) -> _Job | None:
        job = self.jobs.get((provider, job_id))
        if job is None or job.deleted:
            return None
        if not job.claimed:  # a recorded id polled without a create: a resumed client
            self._start(job)
        return job

    def _result(self, provider: str, file_id: str) -> tuple[_Job, _Result] | None:
        for job in self._order:
            if job.provider == provider and file_id in job.results:
                return job, job.results[file_id]
        return None

    # -- answers ----------------------------------------------------------------------------

    def _json(self, request: SimRequest, payload: Any, status: int = 200) -> SimResponse:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        origin = self.manifest.origin
        if origin and origin != request.base_url:
            text = text.replace(origin, request.base_url)
        headers = {"content-type": "application/json; charset=utf-8"}
        return SimResponse(status, headers, text.encode("utf-8"))

    def _cancel(self, job: _Job) -> None:
        """Settle `job` as cancelled after the states shown; the next poll shows the end."""
        job.cancelled_at_step = job.shown
        self._settle(job, "cancelled", seen=job.shown)
        job.shown = len(job.states) - 2
        job.step = len(job.states) - 1

    def _listing(
        self,
        request: SimRequest,
        match: re.Match[str],
        route: Route,
        items: list[JSON],
        *,
        data_key: str,
        cursor: str,
        ids: list[str],
        default_limit: int = 20,
    ) -> SimResponse | None:
        """Replayed `items` (newest first) ahead of the synthetic face's first page."""
        after = request.arg(cursor)
        if not items or (after and after not in ids):
            return None
        if after:
            items = items[ids.index(after) + 1 :]
        query = {k: v for k, v in request.query.items() if k != cursor}
        inner = route.handler(dataclasses.replace(request, query=query), match)
        page = json.loads(inner.read() or b"{}") if inner.status == 200 else {}
        if data_key == "data":
            try:
                limit = max(1, int(request.arg("limit") or default_limit))
            except ValueError:
                return None  # the simulator answers the API's 400
            merged = [*items, *page.get("data", [])]
            page = {
                "object": "list",
                "data": merged[:limit],
                "first_id": merged[0]["id"] if merged else None,
                "last_id": merged[:limit][-1]["id"] if merged else None,
                "has_more": len(merged) > limit or bool(page.get("has_more")),
            }
        else:
            page[data_key] = [*items, *page.get(data_key, [])]
        return self._json(request, page)
