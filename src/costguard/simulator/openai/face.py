"""The OpenAI face: the `/v1` route table, auth, error responses and the state it saves.

The SDKs call `base_url` ending in `/v1` with `authorization: Bearer <key>` and read each
response's `x-request-id`. The route handlers come from the resource layers it is built on
(`BatchRoutes` and the classes beneath it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.simulator.core import BodyLimit, Handler, Router, SimRequest, SimResponse
from costguard.simulator.openai.batch_routes import BatchRoutes
from costguard.simulator.openai.batches import BatchJob
from costguard.simulator.openai.errors import ApiError, api_error, error_body
from costguard.simulator.openai.files import FileRecord

if TYPE_CHECKING:
    import re

    from costguard.simulator.scenario import Scenario


class OpenAIFace(BatchRoutes):
    """The OpenAI provider: routes, auth, error shapes and the files + batches it holds."""

    name = "openai"

    # -- face interface --------------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Add the `/v1` routes; a handler's `ApiError` is answered as the API's error body."""
        file_id = r"(?P<file_id>[^/]+)"
        batch_id = r"(?P<batch_id>[^/]+)"
        routes: list[tuple[str, str, str, Handler]] = [
            ("openai.files.create", "POST", r"/v1/files", self.files_create),
            ("openai.files.list", "GET", r"/v1/files", self.files_list),
            ("openai.files.content", "GET", rf"/v1/files/{file_id}/content", self.content),
            ("openai.files.retrieve", "GET", rf"/v1/files/{file_id}", self.files_retrieve),
            ("openai.files.delete", "DELETE", rf"/v1/files/{file_id}", self.files_delete),
            ("openai.batches.create", "POST", r"/v1/batches", self.batches_create),
            ("openai.batches.list", "GET", r"/v1/batches", self.batches_list),
            ("openai.batches.retrieve", "GET", rf"/v1/batches/{batch_id}", self.batches_retrieve),
            ("openai.batches.cancel", "POST", rf"/v1/batches/{batch_id}/cancel", self.cancel),
            ("openai.images.generate", "POST", r"/v1/images/generations", self.images_generate),
            ("openai.images.edit", "POST", r"/v1/images/edits", self.images_edit),
            ("openai.images.variation", "POST", r"/v1/images/variations", self.images_variation),
        ]
        for name, method, pattern, handler in routes:
            router.add(name, method, pattern, self._answering(handler))

    def _answering(self, handler: Handler) -> Handler:
        def answer(request: SimRequest, match: re.Match[str]) -> SimResponse:
            try:
                return handler(request, match)
            except ApiError as exc:
                return self._respond(exc)

        return answer

    def authenticate(self, request: SimRequest, route: str) -> SimResponse | None:  # noqa: ARG002 - every route needs a key
        """401 without a Bearer key, or with one `Simulator(api_keys=...)` does not accept."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return self._respond(ApiError(401, error_body("401_missing_key")))
        if not self.sim.key_allowed(key):
            masked = f"{key[:3]}***{key[-4:]}" if len(key) > 10 else "***"
            return self._respond(api_error(401, "401_invalid_api_key", masked_key=masked))
        return None

    def error(
        self, status: int, message: str | None = None, *, retry_after_s: float | None = None
    ) -> SimResponse:
        """The OpenAI error body for `status`, optionally with another message."""
        if status == 429:
            wait = retry_after_s if retry_after_s is not None else 1.0
            hint = f"{round(wait * 1000)}ms" if wait < 1 else f"{wait:.3g}s"
            body = error_body("429_rate_limit", retry_after=hint)
        elif status == 401:
            body = error_body("401_missing_key")
        elif status == 500:
            body = error_body("500_server_error")
        elif status == 503:
            body = error_body("503_overloaded")
        elif status == 404:
            body = error_body("404_route", message=message or "Not found")
        else:
            body = error_body("400_invalid_request", message=message or "Bad request")
        if message is not None:
            body["error"]["message"] = message
        return self._respond(ApiError(status, body))

    def body_limit(self, request: SimRequest, route: str) -> BodyLimit | None:  # noqa: ARG002 - by route
        """Uploads are the only bodies limited before reading (see `upload_limit`)."""
        return self.upload_limit() if route == "openai.files.create" else None

    def request_scenario(
        self, request: SimRequest, route: str, match: re.Match[str]
    ) -> Scenario | None:
        """The scenario of the job a call is about (flaky injection per job)."""
        job: BatchJob | None = None
        if route == "openai.batches.create":
            try:
                metadata = request.json().get("metadata") or {}
            except (ValueError, AttributeError):
                return None
            name = metadata.get("cg_scenario") if isinstance(metadata, dict) else None
            return self.sim.scenario_named(name) if isinstance(name, str) else None
        if "batch_id" in match.groupdict():
            job = self.batches.get(match["batch_id"])
        elif "file_id" in match.groupdict():
            record = self.files.get(match["file_id"])
            job = self.batches.get(record.result_of or "") if record else None
        return job.scenario if job else None

    def has_file(self, file_id: str) -> bool:
        """Whether a file with this id exists now (replay checks a batch's input file)."""
        return file_id in self.files

    def to_state(self) -> dict[str, Any]:
        """Files, batches and counters (no bytes: uploads live in `sim.blobs`)."""
        return {
            "seq": self._seq,
            "files": [record.to_json() for record in self.files.values()],
            "batches": [job.to_json() for job in self.batches.values()],
        }

    def from_state(self, state: dict[str, Any]) -> None:
        """Resume from `to_state()` output."""
        self._seq = int(state["seq"])
        self.files = {data["id"]: FileRecord(**data) for data in state["files"]}
        self.batches = {data["id"]: BatchJob.from_json(data) for data in state["batches"]}
        self._analyses.clear()
        self._unpublished = {job.id for job in self.batches.values() if not job.published}
