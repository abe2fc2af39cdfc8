"""Simulator core: requests in, responses out, no I/O.

One route table serves both faces (the respx router in `mock.py` and the HTTP server in
`server.py`). Provider faces (`gemini/`, `openai/`) register their routes on a `Router`
and keep their state (files, batch jobs) in plain, JSON-serialisable structures so a
simulator can be saved beside a run's journal and loaded again.

Time is simulated: `SimClock.now()` runs `time_scale` times faster than the wall clock, so a
24 h batch window plays out in seconds, and tests can `advance()` it explicitly.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs

from costguard.simulator.splice import dump


@dataclass(frozen=True, slots=True)
class SimRequest:
    """An HTTP request as either face received it."""

    method: str
    path: str
    """The URL path, without query string (e.g. `/v1/batches/abc`)."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    base_url: str
    """`scheme://host[:port]` as the client addressed us, for absolute URLs we hand back."""
    spooled: IO[bytes] | None = None
    """The body when the HTTP server spooled it to a temporary file (large uploads, see
    `BodyLimit`); `body` is then empty. Handlers of such routes read `body_file()`."""

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        *,
        query_string: str = "",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        base_url: str = "http://127.0.0.1",
        spooled: IO[bytes] | None = None,
    ) -> SimRequest:
        """Build from raw parts, normalising header case and parsing the query string."""
        return cls(
            method=method.upper(),
            path=path,
            query=parse_qs(query_string, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers},
            body=body,
            base_url=base_url.rstrip("/"),
            spooled=spooled,
        )

    def body_file(self) -> IO[bytes]:
        """The body as a binary file at its start: the server's spool, else `body` in memory."""
        if self.spooled is None:
            return io.BytesIO(self.body)
        self.spooled.seek(0)
        return self.spooled

    def declared_length(self) -> int | None:
        """The `Content-Length` the client declared (None when absent or not a number)."""
        raw = self.headers.get("content-length", "").strip()
        return int(raw) if raw.isdigit() else None

    def json(self) -> Any:
        """The body parsed as JSON (an empty body is `{}`)."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter `name`."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(slots=True)
class SimResponse:
    """An HTTP response. `body` may be bytes or an iterator of chunks (streamed downloads)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterator[bytes] = b""

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> SimResponse:
        """A JSON response (compact; `splice.Base64` values are spliced in as strings)."""
        merged = {"content-type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, merged, dump(payload))

    def read(self) -> bytes:
        """The whole body (joins a streamed body)."""
        if isinstance(self.body, bytes):
            return self.body
        return b"".join(self.body)


Handler = Callable[[SimRequest, "re.Match[str]"], SimResponse]


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """How large a request body a route takes, asked before the body is read.

    The HTTP server refuses a declared `Content-Length` over `max_bytes` without reading the
    body, and stops reading (answering `refusal`) once more than `max_bytes` arrived; bodies
    are streamed into a temporary file that holds at most `SPOOL_MEMORY_BYTES` in memory.
    """

    max_bytes: int
    refusal: SimResponse
    """The provider's own error for a body over the limit."""
    spool: bool = False
    """Hand the handler the spooled file (`SimRequest.spooled`) instead of the bytes."""


SPOOL_MEMORY_BYTES = 1 << 20
"""A streamed request body moves from memory to a temporary file past this size."""


class NotSimulatedError(AssertionError):
    """A request matched no route: the simulator fails loudly rather than guessing."""


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the route table."""

    name: str
    """Stable endpoint name for call counts, e.g. `openai.batches.create`."""
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """The route table: method + full-match regex on the path -> handler."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, name: str, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` requests whose path fully matches `pattern`."""
        self.routes.append(Route(name, method.upper(), re.compile(pattern), handler))

    def match(self, request: SimRequest, *, prefix: str = "") -> tuple[Route, re.Match[str]] | None:
        """The first route matching the request, with its match object.

        `prefix` limits the search to routes whose name starts with it (`"openai."`): both
        providers serve `/v1/batches`, so the simulator picks the provider first.
        """
        for route in self.routes:
            if route.method != request.method or not route.name.startswith(prefix):
                continue
            found = route.pattern.fullmatch(request.path)
            if found:
                return route, found
        return None


class SimClock:
    """Simulated time in epoch seconds, `time_scale` times faster than the wall clock."""

    def __init__(self, *, time_scale: float = 3600.0, start: float | None = None) -> None:
        self.time_scale = time_scale
        self._wall0 = time.monotonic()
        self._sim0 = time.time() if start is None else start
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current simulated time."""
        with self._lock:
            elapsed = (time.monotonic() - self._wall0) * self.time_scale
            return self._sim0 + elapsed + self._offset

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (tests use this instead of sleeping)."""
        with self._lock:
            self._offset += seconds

    def state(self) -> dict[str, float]:
        """What `restore` needs to carry simulated time across processes."""
        return {"now": self.now(), "time_scale": self.time_scale}

    @classmethod
    def restore(cls, state: dict[str, float]) -> SimClock:
        """A clock that continues from a saved `state()`."""
        return cls(time_scale=state["time_scale"], start=state["now"])


class BlobStore:
    """Uploaded file contents, content-addressed (sha256 hex), shared by both faces.

    Faces keep blob keys in their state, never the bytes, so a saved simulator writes each
    upload once, to a sidecar folder beside its JSON state.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store `data`; return its key."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._blobs.setdefault(key, data)
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under `key` (KeyError when unknown)."""
        return self._blobs[key]

    def discard(self, key: str) -> None:
        """Forget `key` (a face calls this once nothing refers to it any more)."""
        with self._lock:
            self._blobs.pop(key, None)

    def keys(self) -> list[str]:
        """Every stored key."""
        with self._lock:
            return list(self._blobs)

    def __contains__(self, key: object) -> bool:
        return key in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)


@dataclass
class CallLog:
    """What a test wants to assert on: every request the simulator answered."""

    calls: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(endpoint name, method, path, status) in arrival order."""

    def record(self, name: str, request: SimRequest, status: int) -> None:
        """Note one answered request (no headers, no query, no body: nothing secret)."""
        self.calls.append((name, request.method, request.path, status))

    def statuses(self, name: str) -> list[int]:
        """The statuses answered on endpoint `name`, in order."""
        return [call[3] for call in self.calls if call[0] == name]

    def count(self, name: str | None = None) -> int:
        """How many requests hit endpoint `name` (all endpoints when None)."""
        if name is None:
            return len(self.calls)
        return sum(1 for call in self.calls if call[0] == name)

    def by_endpoint(self) -> Counter[str]:
        """Request counts per endpoint name."""
        return Counter(call[0] for call in self.calls)
