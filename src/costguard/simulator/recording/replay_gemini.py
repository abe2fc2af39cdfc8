"""Replayed Gemini answers: batches create, get, cancel, delete and list; result files."""

from __future__ import annotations

import base64
import copy
import hashlib
import re

from costguard.simulator.core import Route, SimRequest, SimResponse
from costguard.simulator.gemini import error_body as gemini_error
from costguard.simulator.recording.format import gemini_state
from costguard.simulator.recording.replay_base import ReplayBase
from costguard.simulator.recording.replay_jobs import GEMINI_TERMINAL, JSON, _Job, _Result


class GeminiAnswers(ReplayBase):
    """The Gemini routes a recording answers (mixed into `Replay`)."""

    # Gemini ---------------------------------------------------------------------------------

    def _gemini_create(
        self, request: SimRequest, _m: re.Match[str], _r: Route
    ) -> SimResponse | None:
        try:
            body = request.json()
        except ValueError:
            return None
        batch = body.get("batch") if isinstance(body, dict) else None
        config = (
            batch.get("inputConfig", batch.get("input_config")) if isinstance(batch, dict) else None
        )
        if isinstance(config, dict):
            name = config.get("fileName", config.get("file_name"))
            if isinstance(name, str) and name:
                file_id = name.removeprefix("files/")
                face = self.sim.gemini
                if (
                    not (face is not None and face.has_file(file_id))
                    and ("gemini", file_id) not in self._uploads
                ):
                    return None  # the simulator answers the API's own 404
        job = self._claim("gemini", request)
        return self._json(request, self._start(job)) if job is not None else None

    def _gemini_missing(self, request: SimRequest, what: str) -> SimResponse:
        return self._json(request, gemini_error(404, f"{what} not found."), 404)

    def _gemini_get(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        return self._json(request, job.poll()) if job is not None else self._deleted(request, match)

    def _deleted(self, request: SimRequest, match: re.Match[str]) -> SimResponse | None:
        job = self.jobs.get(("gemini", match["id"]))
        if job is not None and job.deleted:
            return self._gemini_missing(request, f"Batch {match['id']}")
        return None

    def _gemini_cancel(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        if job is None:
            return self._deleted(request, match)
        if gemini_state(job.current()) not in GEMINI_TERMINAL:
            later = [
                i
                for i, s in enumerate(job.states)
                if i > job.shown and gemini_state(s) == "BATCH_STATE_CANCELLED"
            ]
            if later:
                job.step = later[0]  # the next poll shows the recorded cancellation
            else:
                self._cancel(job)
        return self._json(request, {})

    def _gemini_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        job = self._job("gemini", match["id"])
        if job is None:
            return self._deleted(request, match)
        job.deleted = True
        return self._json(request, {})

    def _gemini_batches_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        if request.arg("pageToken") or request.arg("page_token"):
            return None
        live = [j for j in self._order if j.provider == "gemini" and j.claimed and not j.deleted]
        live.sort(
            key=lambda j: str((j.current().get("metadata") or {}).get("createTime")), reverse=True
        )
        items = [_listed(j.current()) for j in live]
        return self._listing(
            request, match, route, items, data_key="operations", cursor="pageToken", ids=[]
        )

    def _gemini_object(
        self, request: SimRequest, match: re.Match[str], job: _Job, result: _Result
    ) -> JSON:
        if result.object is not None:
            return result.object
        meta = job.states[-1].get("metadata") or {}
        stamp = meta.get("endTime") or meta.get("updateTime") or meta.get("createTime")
        data = result.content()
        base = request.base_url + match["prefix"]
        ver = match["ver"]
        return {
            "name": f"files/{result.file_id}",
            "mimeType": "application/json",
            "sizeBytes": str(len(data)),
            "createTime": stamp,
            "updateTime": stamp,
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": f"{base}/{ver}/files/{result.file_id}",
            "downloadUri": f"{base}/download/{ver}/files/{result.file_id}:download?alt=media",
            "state": "ACTIVE",
            "source": "GENERATED",
        }

    def _gemini_file(
        self, request: SimRequest, match: re.Match[str]
    ) -> tuple[_Job, _Result] | SimResponse | None:
        found = self._result("gemini", match["id"])
        if found is None:
            return None
        if found[1].deleted:
            return self._gemini_missing(request, f"File files/{match['id']}")
        return found

    def _gemini_file_get(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        return self._json(request, self._gemini_object(request, match, *found))

    def _gemini_file_download(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        job, result = found
        job.finish()
        data = result.content()
        headers = {"content-type": "application/octet-stream", "content-length": str(len(data))}
        return SimResponse(200, headers, data)

    def _gemini_file_delete(
        self, request: SimRequest, match: re.Match[str], _r: Route
    ) -> SimResponse | None:
        found = self._gemini_file(request, match)
        if not isinstance(found, tuple):
            return found
        found[1].deleted = True
        return self._json(request, {})

    def _gemini_files_list(
        self, request: SimRequest, match: re.Match[str], route: Route
    ) -> SimResponse | None:
        if request.arg("pageToken") or request.arg("page_token"):
            return None
        items = [
            self._gemini_object(request, match, job, result)
            for job in self._order
            if job.provider == "gemini" and job.claimed and job.ended
            for result in job.results.values()
            if not result.deleted
        ]
        return self._listing(
            request, match, route, items, data_key="files", cursor="pageToken", ids=[]
        )


def _listed(operation: JSON) -> JSON:
    """A Gemini operation as `batches.list` shows it (no inline results)."""
    listed = copy.deepcopy(operation)
    for holder in (listed.get("metadata") or {}, listed):
        output = holder.get("output" if holder is not listed else "response")
        if isinstance(output, dict):
            output.pop("inlinedResponses", None)
    return listed
