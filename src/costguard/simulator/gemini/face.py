"""`GeminiFace`: the Gemini routes on the simulator's router (composed from the route groups
by resource), auth, flaky-call scenarios, and saving and loading the face's state."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

from costguard.simulator.core import BodyLimit, Router, SimRequest, SimResponse
from costguard.simulator.gemini.base import GeminiHost
from costguard.simulator.gemini.batch_routes import BatchRoutes
from costguard.simulator.gemini.batches import _Batch
from costguard.simulator.gemini.content import MAX_INLINE_BYTES
from costguard.simulator.gemini.errors import ApiError, error_body, payload_too_large
from costguard.simulator.gemini.file_routes import FileRoutes
from costguard.simulator.gemini.files import MAX_FILE_BYTES, _File, _Upload
from costguard.simulator.gemini.model_routes import ModelRoutes
from costguard.simulator.gemini.usage import load_usage_table
from costguard.simulator.gemini.wire import JSON, _get
from costguard.simulator.scenario import Scenario

_PREFIX = r"(?P<prefix>(?:/[^/]+)*?)"
_VER = r"/(?P<ver>v1|v1beta|v1alpha)"
_ID = r"(?P<id>[^/:]+)"


class GeminiFace(ModelRoutes, BatchRoutes, FileRoutes):
    """Gemini Developer API routes on a simulator's router, with their state.

    The `Simulator` builds it as `GeminiFace(sim)`, calls `register(sim.router)`, runs
    `authenticate` and flaky-call injection (`request_scenario`, `error`) before each handler,
    and saves/restores it with `to_state` / `from_state`.
    """

    name = "gemini"

    def __init__(self, sim: GeminiHost) -> None:
        self._sim = sim
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._uploads: dict[str, _Upload] = {}
        self._batches: dict[str, _Batch] = {}
        self.table = load_usage_table()

    # ---- set-up, save, load -----------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Add every Gemini route to `router` (names `gemini.<resource>.<verb>`)."""
        files = _VER + r"/files"
        model = _VER + r"/models/(?P<model>[^/:]+)"
        batch = _VER + r"/batches/" + _ID
        add = self._add
        add(router, "files.upload", "POST", r"/upload" + files, self._upload)
        add(router, "files.download", "GET", "/download" + files + "/" + _ID + ":download",
            self._file_download)  # fmt: skip
        add(router, "models.generateContent", "POST", model + ":generateContent",
            self._generate_content)  # fmt: skip
        add(router, "batches.create", "POST", model + ":batchGenerateContent", self._batch_create)
        add(router, "batches.list", "GET", _VER + r"/batches", self._batch_list)
        add(router, "batches.get", "GET", batch, self._batch_get)
        add(router, "batches.cancel", "POST", batch + ":cancel", self._batch_cancel)
        add(router, "batches.delete", "DELETE", batch, self._batch_delete)
        add(router, "files.list", "GET", files, self._file_list)
        add(router, "files.download", "GET", files + "/" + _ID + ":download", self._file_download)
        add(router, "files.get", "GET", files + "/" + _ID, self._file_get)
        add(router, "files.delete", "DELETE", files + "/" + _ID, self._file_delete)

    def _add(
        self,
        router: Router,
        name: str,
        method: str,
        pattern: str,
        handler: Callable[[SimRequest, re.Match[str]], SimResponse],
    ) -> None:
        upload = name == "files.upload"

        def answer(request: SimRequest, match: re.Match[str]) -> SimResponse:
            try:
                with self._lock:
                    return handler(request, match)
            except ApiError as exc:
                response = self.error(exc.status, exc.message, reason=exc.reason)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                response = self.error(400, f"Invalid JSON payload received. {exc}")
            if upload:  # without it the Python SDK retries the chunk 3 times, sleeping
                response.headers["X-Goog-Upload-Status"] = "final"
            return response

        router.add(f"gemini.{name}", method, _PREFIX + pattern, answer)

    def to_state(self) -> JSON:
        """Files, uploads and jobs as plain JSON (uploaded bytes stay in `sim.blobs`)."""
        with self._lock:
            return {
                "format": 1,
                "files": [f.to_state() for f in self._files.values()],
                "uploads": [u.to_state() for u in self._uploads.values()],
                "batches": [b.to_state() for b in self._batches.values()],
            }

    def from_state(self, state: JSON) -> None:
        """Continue from `to_state()` output (the simulator has restored its blobs)."""
        if state.get("format") != 1:
            msg = f"unsupported Gemini simulator state format {state.get('format')!r}"
            raise ValueError(msg)
        with self._lock:
            self._files = {f["id"]: _File.from_state(f) for f in state["files"]}
            self._uploads = {u["id"]: _Upload.from_state(u) for u in state["uploads"]}
            self._batches = {b["id"]: _Batch.from_state(b) for b in state["batches"]}

    def has_file(self, file_id: str) -> bool:
        """Whether an uploaded file with this id exists (replay checks a batch's input file)."""
        with self._lock:
            stored = self._files.get(file_id.removeprefix("files/"))
            return stored is not None and not stored.deleted

    # ---- errors, auth, scenarios of calls ---------------------------------------------------

    def error(
        self,
        status: int,
        message: str | None = None,
        *,
        retry_after_s: float | None = None,
        reason: str | None = None,
    ) -> SimResponse:
        """A Gemini-shaped error response (bodies from `fixtures/gemini/errors/`).

        `retry_after_s` becomes the `RetryInfo.retryDelay` of a 429; `reason` picks a variant
        body (`API_KEY_INVALID`).
        """
        body = error_body(status, message, reason=reason, retry_delay_s=retry_after_s)
        return SimResponse.json(body, status=status)

    def authenticate(self, request: SimRequest, route: str) -> SimResponse | None:
        """None when the request may proceed, else the real API's auth error.

        The key is read from `x-goog-api-key` or `?key=`. No key: 403 PERMISSION_DENIED. A key
        the simulator does not allow (`sim.key_allowed`): 400 INVALID_ARGUMENT with reason
        API_KEY_INVALID. Upload chunks (`?upload_id=`) need no key: the Python SDK sends none,
        the upload URL itself is the credential.
        """
        if route == "gemini.files.upload" and request.arg("upload_id") is not None:
            return None
        key = request.headers.get("x-goog-api-key") or request.arg("key")
        if not key:
            return self.error(403)
        if not self._sim.key_allowed(key):
            return self.error(400, reason="API_KEY_INVALID")
        return None

    def body_limit(self, request: SimRequest, route: str) -> BodyLimit | None:
        """The body limits checked before reading: 20 MB for generateContent and batch creates,
        and for an upload chunk what is left of the 2 GB file limit."""
        if route in ("gemini.models.generateContent", "gemini.batches.create"):
            return BodyLimit(MAX_INLINE_BYTES, self.error(400, payload_too_large(MAX_INLINE_BYTES)))
        if route != "gemini.files.upload":
            return None
        with self._lock:
            upload = self._uploads.get(request.arg("upload_id") or "")
            if upload is None:
                return None
            left = MAX_FILE_BYTES - len(upload.buffer)
        refusal = self.error(400, payload_too_large(MAX_FILE_BYTES))
        refusal.headers["X-Goog-Upload-Status"] = "final"
        return BodyLimit(left, refusal)

    def request_scenario(
        self, request: SimRequest, route: str, match: re.Match[str]
    ) -> Scenario | None:
        """The scenario of the job a call is about (for flaky-call injection), else None."""
        if route == "gemini.batches.create":
            try:
                display = _get(_get(request.json(), "batch"), "displayName")
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            return self._sim.scenario_for(display if isinstance(display, str) else None)
        ids = match.groupdict()
        with self._lock:
            if route.startswith("gemini.batches.") and ids.get("id"):
                found = self._batches.get(ids["id"])
                return found.scenario if found is not None else None
            if route.startswith("gemini.files.") and ids.get("id"):
                found = self._batches.get(ids["id"].removeprefix("batch-"))
                if found is not None and ids["id"].startswith("batch-"):
                    return found.scenario
        return None
