"""What every group of Gemini route handlers shares: the host the face runs in (the
infrastructure's `Simulator`), the face's state, and helpers (clock, ids, models, paging)."""

from __future__ import annotations

import base64
import binascii
import re
import string
from typing import Protocol

from costguard.simulator.core import BlobStore, SimClock, SimRequest
from costguard.simulator.gemini.batches import _Batch
from costguard.simulator.gemini.content import ImageFn
from costguard.simulator.gemini.errors import ApiError
from costguard.simulator.gemini.files import _File, _Upload
from costguard.simulator.gemini.usage import UsageTable
from costguard.simulator.images import ImageSource
from costguard.simulator.scenario import Scenario
from costguard.simulator.splice import Base64

_ID_ALPHABET = string.ascii_lowercase + string.digits


class GeminiHost(Protocol):
    """What the face needs from the `Simulator` that owns it."""

    @property
    def clock(self) -> SimClock:
        """Simulated time."""
        ...

    @property
    def images(self) -> ImageSource:
        """Real images by seed, tiny or at a pixel size."""
        ...

    @property
    def blobs(self) -> BlobStore:
        """Uploaded bytes, saved beside the simulator's state."""
        ...

    def scenario_for(self, text_or_name: str | None) -> Scenario:
        """The scenario a display name asks for (`cg_scenario=NAME`), else the default."""
        ...

    def key_allowed(self, key: str | None) -> bool:
        """Whether an API key may call."""
        ...

    def new_id(self, length: int = 24, alphabet: str = ...) -> str:
        """A fresh deterministic id."""
        ...

    def next_index(self, counter: str) -> int:
        """The next value of a per-simulator counter."""
        ...

    def record_job(self, provider: str, job_id: str, scenario: str, requests: int) -> None:
        """Note a created batch job."""
        ...

    def record_upload(
        self, provider: str, file_id: str, filename: str, nbytes: int, purpose: str
    ) -> None:
        """Note an uploaded file."""
        ...


class FaceBase:
    """The state and helpers of `GeminiFace` that its route groups use (it fills the state)."""

    name: str
    table: UsageTable
    _sim: GeminiHost
    _files: dict[str, _File]
    _uploads: dict[str, _Upload]
    _batches: dict[str, _Batch]

    def _now(self) -> float:
        return self._sim.clock.now()

    def _images(self, scenario: Scenario) -> ImageFn:
        """How the images of a job under `scenario` are drawn (pixel mode, padding)."""
        images = self._sim.images

        def draw(seed: str, mime: str, pixels: tuple[int, int]) -> Base64:
            size = scenario.image_size(pixels)
            return images.render_base64(seed, mime, size, scenario.image_bytes)

        return draw

    def _new_id(self, length: int) -> str:
        return self._sim.new_id(length, _ID_ALPHABET)

    def _content(self, stored: _File) -> bytes:
        return self._sim.blobs.get(stored.blob)

    def _model_or_404(self, match: re.Match[str], method: str) -> str:
        model = match["model"]
        if self.table.lookup(model) is None:
            message = (
                f"models/{model} is not found for API version {match['ver']}, or is not "
                f"supported for {method}. Call ListModels to see the list of available "
                "models and their supported methods."
            )
            raise ApiError(404, message)
        return model

    @staticmethod
    def _origin(request: SimRequest, match: re.Match[str]) -> str:
        return request.base_url + match["prefix"]

    @staticmethod
    def _page(request: SimRequest, default: int, maximum: int) -> tuple[int, str | None]:
        raw = request.arg("pageSize") or request.arg("page_size")
        size = default
        if raw:
            try:
                size = int(raw)
            except ValueError:
                raise ApiError(400, f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}") from None
            if size < 0:
                raise ApiError(400, "page_size must not be negative.")
            size = min(size or default, maximum)
        token = request.arg("pageToken") or request.arg("page_token") or None
        return size, token

    @staticmethod
    def _paginate(keys: list[tuple[float, str]], size: int, token: str | None) -> tuple[int, int]:
        """(start, end) of the page after `token` in `keys` (sorted newest first)."""
        start = 0
        if token:
            try:
                create_t, name = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
                after = (float(create_t), name)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise ApiError(400, "Invalid page token.") from None
            start = next(
                (i for i, k in enumerate(keys) if (-k[0], k[1]) > (-after[0], after[1])),
                len(keys),
            )
        return start, min(start + size, len(keys))

    @staticmethod
    def _token(key: tuple[float, str]) -> str:
        return base64.urlsafe_b64encode(f"{key[0]!r}|{key[1]}".encode()).decode()
