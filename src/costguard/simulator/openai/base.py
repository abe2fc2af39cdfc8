"""What every OpenAI route handler shares: the face's state, response plumbing and paging.

The handlers are layered, each class adding one resource on top of the one below:
`OpenAIBase` -> `ImageRoutes` -> `BatchResults` -> `FileRoutes` -> `BatchRoutes` ->
`OpenAIFace`, so a layer only calls methods of the layers beneath it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from costguard.simulator.core import SimRequest, SimResponse
from costguard.simulator.openai.batches import Analysis, BatchJob
from costguard.simulator.openai.errors import ApiError, api_error
from costguard.simulator.openai.files import FileRecord
from costguard.simulator.openai.limits import OpenAILimits
from costguard.simulator.openai.usage import UsageTable
from costguard.simulator.openai.wire import _digest

if TYPE_CHECKING:
    from costguard.simulator import Simulator

_Item = TypeVar("_Item", "FileRecord", "BatchJob")


class OpenAIBase:
    """The files and batches the face holds, and the helpers its route handlers answer with."""

    def __init__(self, sim: Simulator, *, limits: OpenAILimits | None = None) -> None:
        self.sim = sim
        self.limits = limits or OpenAILimits()
        self.usage = UsageTable.load()
        self.files: dict[str, FileRecord] = {}
        self.batches: dict[str, BatchJob] = {}
        self._analyses: dict[str, Analysis] = {}
        self._unpublished: set[str] = set()
        self._seq = 0

    # -- plumbing --------------------------------------------------------------------------

    def _request_id(self) -> str:
        number = self.sim.next_index("openai.request_id")
        return "req_" + _digest(self.sim.seed, "req", number)[:32]

    def _json(self, payload: Any, status: int = 200) -> SimResponse:
        return SimResponse.json(payload, status, {"x-request-id": self._request_id()})

    def _respond(self, error: ApiError) -> SimResponse:
        return self._json(error.body, error.status)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _now(self) -> int:
        return int(self.sim.now())

    # -- paging ----------------------------------------------------------------------------

    @staticmethod
    def _limit(request: SimRequest, *, default: int, maximum: int) -> int:
        raw = request.arg("limit")
        if raw is None:
            return default
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= maximum:
            raise api_error(
                400,
                "400_invalid_param",
                message=f"Invalid 'limit': expected an integer between 1 and {maximum}, "
                f"got {raw!r}.",
                param="limit",
                code="invalid_value",
            )
        return limit

    @staticmethod
    def _page(items: list[_Item], after: str | None, limit: int) -> tuple[list[_Item], bool]:
        start = 0
        if after:
            ids = [item.id for item in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        page = items[start : start + limit]
        return page, start + limit < len(items)

    @staticmethod
    def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
