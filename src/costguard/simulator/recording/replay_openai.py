"""Replayed OpenAI answers: batches create, retrieve, cancel and list; output files."""

from __future__ import annotations

import re

from costguard.simulator.core import Route, SimRequest, SimResponse
from costguard.simulator.openai import error_body as openai_error
from costguard.simulator.recording.replay_base import ReplayBase
from costguard.simulator.recording.replay_jobs import (
    _OPENAI_MOMENTS,
    JSON,
    OPENAI_TERMINAL,
    _Job,
    _Result,
)


class OpenAIAnswers(ReplayBase):
    """The OpenAI routes a recording answers (mixed into `Replay`)."""

    # OpenAI ---------------------------------------------------------------------------------

    def _openai_create(
        self, request: SimRequest, _m: re.Match[str], _r: Route
    ) -> SimResponse | None:
        try:
            body = request.json()
        except ValueError:
            return None
        input_id = str(body.get("input_file_id") or "") if isinstance(body, dict) else ""
        face = self.sim.openai
        if not face.has_file(input_id) and ("openai", input_id) not in self._uploads:
            return None  # the simulator answers the API's own error
        job = self._claim("openai", request)
        return self._json(request, self._start(job)) if job is not None else None

    def _openai_retrieve(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("openai", match["batch_id"])
        return self._json(request, job.poll()) if job is not None else None

    def _openai_cancel(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("openai", match["batch_id"])
        if job is None:
            return None
        status = str(job.current().get("status"))
        if status in ("cancelling", "cancelled"):
            return self._json(request, job.current())
        if status in OPENAI_TERMINAL:
            return self._json(
                request, openai_error("400_batch_not_cancellable", status=status), 400
            )
        later = [
            i for i, s in enumerate(job.states) if i > job.shown and s.get("status") == "cancelling"
        ]
        if later:
            return self._json(request, job.jump(later[0]))
        self._cancel(job)
        return self._json(request, job.jump(len(job.states) - 2))  # cancelling

    def _openai_batches_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        live = [j for j in self._order if j.provider == "openai" and j.claimed and not j.deleted]
        live.sort(key=lambda j: int(j.current().get("created_at") or 0), reverse=True)
        items = [j.current() for j in live]
        ids = [j.spec.id for j in live]
        return self._listing(request, match, route, items, data_key="data", cursor="after", ids=ids)

    def _openai_file(self, file_id: str) -> tuple[_Job, _Result] | None:
        return self._result("openai", file_id)

    def _openai_object(self, job: _Job, result: _Result) -> JSON:
        if result.object is not None:
            return result.object
        end = job.states[-1]
        created = next((end[k] for k in _OPENAI_MOMENTS if end.get(k)), 0)
        return {
            "id": result.file_id,
            "object": "file",
            "bytes": len(result.content()),
            "created_at": created,
            "filename": f"{job.spec.id}_{result.kind}.jsonl",
            "purpose": "batch_output",
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _openai_gone(self, request: SimRequest, file_id: str) -> SimResponse:
        return self._json(request, openai_error("404_file", id=file_id), 404)

    def _openai_file_retrieve(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        job, result = found
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        return self._json(request, self._openai_object(job, result))

    def _openai_file_content(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        job, result = found
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        job.finish()
        data = result.content()
        headers = {"content-type": "application/octet-stream", "content-length": str(len(data))}
        return SimResponse(200, headers, data)

    def _openai_file_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._openai_file(match["file_id"])
        if found is None:
            return None
        result = found[1]
        if result.deleted:
            return self._openai_gone(request, result.file_id)
        result.deleted = True
        return self._json(request, {"id": result.file_id, "object": "file", "deleted": True})

    def _openai_files_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        purpose = request.arg("purpose")
        if purpose not in (None, "batch_output"):
            return None
        found = [
            (job, result)
            for job in self._order
            if job.provider == "openai" and job.claimed and job.ended
            for result in job.results.values()
            if not result.deleted
        ]
        items = [self._openai_object(job, result) for job, result in found]
        items.sort(
            key=lambda o: int(o.get("created_at") or 0), reverse=request.arg("order") != "asc"
        )
        ids = [str(o["id"]) for o in items]
        return self._listing(
            request,
            match,
            route,
            items,
            data_key="data",
            cursor="after",
            ids=ids,
            default_limit=10_000,
        )
