"""Recording proxy: forward an SDK's traffic to a real provider and store it, scrubbed.

`costguard simulate record --upstream URL --out DIR` serves this proxy on loopback. A pipeline
points its SDK at it (`OPENAI_BASE_URL=http://127.0.0.1:8766/v1`,
`GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8766`); every request is forwarded to `URL` + the
same path and query (with `--upstream openai=URL --upstream gemini=URL`, to the URL of the
provider the simulator's rules recognise in the request), with the same method, body and
headers (minus hop-by-hop ones, and with `accept-encoding: identity` so bodies are stored
readable), and the answer goes back to the client as it arrives. Result downloads
(`files.content`, `files.download`) and other non-JSON answers are streamed through; JSON
answers are read whole so that absolute URLs pointing at the upstream (Gemini's `uri`,
`downloadUri`, and the `X-Goog-Upload-URL` header) can be rewritten to the proxy, which keeps
resumable uploads going through it.

Each exchange is named with the simulator's own route table (`openai.batches.retrieve`,
`gemini.batches.get`, ...) and written as described in `recording.py`, after `Scrubber` has
removed keys, auth headers and upload ids: bodies are scrubbed line by line before they reach
the disk, so a large download never sits in memory. With `shrink_images`, base64 images in
stored JSON (OpenAI `b64_json`, Gemini `inlineData.data`) are replaced by small real images of
the same type; the client always gets the real bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from costguard.simulator import Simulator, provider_of
from costguard.simulator.core import SimRequest
from costguard.simulator.images import MIME_SUFFIXES, ImageSource
from costguard.simulator.recording.format import (
    EXCHANGES,
    MANIFEST,
    Indexer,
    LineSink,
    Manifest,
    RecordingError,
    Scrubber,
    exchange_file_name,
    facts_of,
    write_manifest,
)

__all__ = ["Recorder", "create_proxy_app", "record", "record_in_thread", "shrink_images"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)
STREAMED_ROUTES = frozenset({"openai.files.content", "gemini.files.download"})
"""Downloads: streamed through and stored as a sidecar file."""
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_PARAMS = ("id", "file_id", "batch_id", "model")
_URL_HEADERS = ("x-goog-upload-url", "location", "content-location")


# --------------------------------------------------------------------------------------------
# Shrinking images
# --------------------------------------------------------------------------------------------


def _sniff(b64: str) -> str | None:
    """The image type of base64 data, from its first bytes."""
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4))
    except (binascii.Error, ValueError):
        return None
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _small_image(b64: str, declared: str | None) -> str | None:
    """A small image of the same type for `b64`, or None to keep it (unknown type, tiny)."""
    mime = _sniff(b64) or (declared if declared in MIME_SUFFIXES else None)
    if mime is None:
        return None
    seed = "shrunk:" + hashlib.sha256(b64.encode("ascii", errors="replace")).hexdigest()
    small = ImageSource().b64(seed, mime)
    return small if len(small) < len(b64) else None


def shrink_images(value: Any) -> Any:
    """`value` (parsed JSON) with large base64 images replaced by small ones of the same type.

    Replaced: OpenAI `b64_json` strings and Gemini `inlineData` / `inline_data` parts whose
    `mimeType` is an image. Everything else is returned unchanged.
    """
    if isinstance(value, list):
        return [shrink_images(item) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == "b64_json" and isinstance(item, str):
            result[key] = _small_image(item, None) or item
        elif key in ("inlineData", "inline_data") and isinstance(item, dict):
            mime = item.get("mimeType", item.get("mime_type"))
            data = item.get("data")
            small = None
            if isinstance(data, str) and isinstance(mime, str) and mime.startswith("image/"):
                small = _small_image(data, mime)
            result[key] = {**item, "data": small} if small else shrink_images(item)
        else:
            result[key] = shrink_images(item)
    return result


def shrink_bytes(data: bytes) -> bytes:
    """One JSON document (a body or a JSONL line) with its images shrunk; other bytes as given."""
    if b"b64_json" not in data and b"inlineData" not in data and b"inline_data" not in data:
        return data
    try:
        parsed = json.loads(data)
    except ValueError:
        return data
    shrunk = shrink_images(parsed)
    if shrunk == parsed:
        return data
    return json.dumps(shrunk, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------
# The recorder: exchanges and manifest on disk
# --------------------------------------------------------------------------------------------


class Recorder:
    """Writes scrubbed exchanges and keeps `recording.yaml` current (thread-safe)."""

    def __init__(
        self,
        out: Path,
        *,
        upstream: str | Mapping[str, str],
        name: str | None = None,
        shrink: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        """Start a recording in `out` (created; it must not hold a recording already).

        Args:
            out: The recording folder.
            upstream: One base URL for every request, or one per provider
                (`{"openai": URL, "gemini": URL}`).
            name: The recording's scenario name (default: the folder's name).
            shrink: Store small images instead of the base64 images in bodies.
            secrets: Extra values to scrub (keys are learned from requests as well).

        Raises:
            RecordingError: `out` already holds a recording, or an upstream is not a base URL.
        """
        given = {"*": upstream} if isinstance(upstream, str) else dict(upstream)
        if not given or not set(given) <= {"*", "openai", "gemini"}:
            msg = f"--upstream: give one base URL, or openai=URL and/or gemini=URL, not {given}"
            raise RecordingError(msg)
        self.upstreams = {provider: _base_url(url) for provider, url in given.items()}
        self.upstream = " ".join(
            url if provider == "*" else f"{provider}={url}"
            for provider, url in self.upstreams.items()
        )
        """What the manifest and messages show: the URL, or `openai=URL gemini=URL`."""
        self.out = out
        self.folder = out / EXCHANGES
        if (out / MANIFEST).exists() or (self.folder.is_dir() and any(self.folder.iterdir())):
            msg = f"{out}: already holds a recording; record into a new folder"
            raise RecordingError(msg)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scrubber = Scrubber(secrets)
        self.shrink = shrink
        self._lock = threading.Lock()
        self._seq = 0
        self._started = time.monotonic()
        self._indexer = Indexer()
        self._routes = Simulator(time_scale=0)
        self.manifest = Manifest(
            name=name or out.resolve().name,
            description="",
            upstream=self.upstream,
            recorded_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        )
        write_manifest(out, self._indexer.manifest(self.manifest))

    @property
    def count(self) -> int:
        """Exchanges written so far."""
        return len(self._indexer.facts)

    def note_origin(self, origin: str) -> None:
        """Remember the proxy's base URL as the client used it (the first one seen)."""
        with self._lock:
            if self.manifest.origin is None:
                self.manifest = self.manifest.model_copy(update={"origin": origin})

    def next_seq(self) -> int:
        """The number of the next exchange (in order of arrival)."""
        with self._lock:
            self._seq += 1
            return self._seq

    def upstream_for(self, provider: str) -> str | None:
        """The base URL a request for `provider` goes to (None: no upstream given for it)."""
        return self.upstreams.get(provider) or self.upstreams.get("*")

    def route_of(
        self, method: str, path: str, query_string: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        """(route name, provider, ids from the path) by the simulator's route table."""
        request = SimRequest.build(
            method,
            path,
            query_string=query_string,
            headers=headers.items(),
            base_url=self.upstreams.get("*", "http://127.0.0.1"),  # by host when it says
        )
        provider = provider_of(request)
        found = self._routes.router.match(request, prefix=f"{provider}.")
        if found is None:
            return "unmatched", provider, {}
        route, match = found
        params = {k: v for k, v in match.groupdict().items() if v and k in _PARAMS}
        return route.name, provider, params

    def transform(self, data: bytes) -> bytes:
        """What is stored for a body (or one line of it): scrubbed, images shrunk if asked."""
        data = self.scrubber.data(data)
        return shrink_bytes(data) if self.shrink else data

    def sink(self, seq: int, route: str, part: str, *, prefer_file: bool = False) -> LineSink:
        """Where the request or response body of exchange `seq` is written."""
        stem = exchange_file_name(seq, route).removesuffix(".json") + f".{part}"
        return LineSink(self.folder, stem, self.transform, prefer_file=prefer_file)

    def commit(self, record: dict[str, Any]) -> None:
        """Write one exchange (scrubbing its URL and headers) and refresh the manifest."""
        scrub = self.scrubber
        request, response = record["request"], record["response"]
        request["path"] = scrub.text(request["path"])
        request["query"] = scrub.query(request["query"])
        request["headers"] = scrub.headers(request["headers"].items())
        response["headers"] = scrub.headers(response["headers"].items())
        record["at_s"] = round(time.monotonic() - self._started, 3)
        text = json.dumps(record, indent=2, ensure_ascii=False)
        name = exchange_file_name(int(record["seq"]), str(record["route"]))
        target = self.folder / name
        partial = target.with_name(name + ".part")
        partial.write_text(scrub.text(text) + "\n", encoding="utf-8")
        partial.replace(target)
        facts = facts_of(record, self.folder)
        with self._lock:
            self._indexer.add(int(record["seq"]), facts)
            write_manifest(self.out, self._indexer.manifest(self.manifest))

    def summary(self) -> str:
        """`12 exchanges, 3 jobs` for the closing message."""
        manifest = self._indexer.manifest(self.manifest)
        jobs = len(manifest.jobs)
        return f"{self.count} exchanges, {jobs} job{'s' if jobs != 1 else ''}"


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"--upstream {url!r}: give a base URL like https://api.openai.com"
        raise RecordingError(msg)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _rewrite_urls(text: bytes, upstream: str, proxy: str) -> bytes:
    """Absolute URLs under `upstream` rewritten to `proxy` (not a longer host or port)."""
    pattern = re.escape(upstream.encode()) + rb"(?=[/\"'?#\s]|$)"
    return re.sub(pattern, proxy.encode().replace(b"\\", b"\\\\"), text)


@dataclass
class _Exchange:
    """One request on its way through the proxy."""

    seq: int
    route: str
    provider: str
    params: dict[str, str]
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    proxy_base: str
    upstream: str
    request_body: dict[str, Any] | None = None

    def record(
        self, status: int, headers: dict[str, str], body: dict[str, Any] | None, *, complete: bool
    ) -> dict[str, Any]:
        """The exchange as `Recorder.commit` takes it (it scrubs before writing)."""
        return {
            "seq": self.seq,
            "route": self.route,
            "provider": self.provider,
            "params": self.params,
            "complete": complete,
            "request": {
                "method": self.method,
                "path": self.path,
                "query": self.query,
                "headers": self.headers,
                "body": self.request_body,
            },
            "response": {"status": status, "headers": headers, "body": body},
        }


class _Proxy:
    """The forwarding logic behind `create_proxy_app`."""

    def __init__(
        self,
        recorder: Recorder,
        log: Callable[[str], None] | None,
        timeout_s: float,
        on_stop: Callable[[], None] | None,
    ) -> None:
        self.recorder = recorder
        self.log = log
        self.timeout_s = timeout_s
        self.on_stop = on_stop
        self.client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """One upstream connection pool for the server's life."""
        timeout = httpx.Timeout(self.timeout_s, connect=30.0)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            self.client = client
            try:
                yield
            finally:
                self.client = None
                if self.on_stop is not None:  # before uvicorn re-raises a caught signal
                    self.on_stop()

    def _start(self, request: Request) -> _Exchange | None:
        recorder = self.recorder
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        proxy_base = f"{request.url.scheme}://{host}"
        recorder.note_origin(proxy_base)
        headers = dict(request.headers.items())
        query = parse_qs(request.url.query, keep_blank_values=True)
        recorder.scrubber.learn(headers, query)  # before any of its bytes are stored
        route, provider, params = recorder.route_of(
            request.method, request.url.path, request.url.query, headers
        )
        upstream = recorder.upstream_for(provider)
        if upstream is None:
            return None
        return _Exchange(
            recorder.next_seq(),
            route,
            provider,
            params,
            request.method,
            request.url.path,
            query,
            headers,
            proxy_base,
            upstream,
        )

    def _outgoing(self, request: Request, exchange: _Exchange, sink: LineSink) -> httpx.Request:
        assert self.client is not None

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                sink.write(chunk)
                yield chunk

        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name not in HOP_BY_HOP and name not in ("host", "accept-encoding")
        ]
        headers.append(("accept-encoding", "identity"))
        raw_path = request.scope.get("raw_path") or exchange.path.encode()
        url = exchange.upstream + raw_path.decode("latin-1")
        if request.url.query:
            url += "?" + request.url.query
        has_body = "content-length" in exchange.headers or "transfer-encoding" in exchange.headers
        content = body() if has_body else b""
        return self.client.build_request(exchange.method, url, headers=headers, content=content)

    def _reply_headers(self, upstream: httpx.Response, exchange: _Exchange) -> dict[str, str]:
        self.recorder.scrubber.learn_reply(upstream.headers.multi_items())
        headers: dict[str, str] = {}
        for name, value in upstream.headers.multi_items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in ("content-length", "content-encoding"):
                continue
            text = value
            if lower in _URL_HEADERS:  # the upload goes on through the proxy
                text = _rewrite_urls(
                    value.encode(), exchange.upstream, exchange.proxy_base
                ).decode()
            headers[lower] = text
        return headers

    def _done(self, exchange: _Exchange, status: int) -> None:
        if self.log is not None:
            self.log(f"{exchange.method} {exchange.path} -> {status} [{exchange.route}]")

    async def forward(self, request: Request) -> Response:
        """Forward one request, stream the answer back, record both."""
        assert self.client is not None
        recorder = self.recorder
        exchange = self._start(request)
        if exchange is None:
            message = (
                f"costguard record: no --upstream for this request ({request.method} "
                f"{request.url.path}); give one for every provider: {recorder.upstream}"
            )
            return JSONResponse({"error": {"message": message, "code": 502}}, status_code=502)
        request_sink = recorder.sink(exchange.seq, exchange.route, "request")
        try:
            upstream = await self.client.send(
                self._outgoing(request, exchange, request_sink), stream=True
            )
        except httpx.HTTPError as exc:
            request_sink.abort()
            self._done(exchange, 502)
            message = f"costguard record: upstream {exchange.upstream} failed: {exc!r}"
            return JSONResponse({"error": {"message": message, "code": 502}}, status_code=502)
        exchange.request_body = request_sink.finish(exchange.headers.get("content-type", ""))
        headers = self._reply_headers(upstream, exchange)
        content_type = upstream.headers.get("content-type", "")
        sink = recorder.sink(
            exchange.seq,
            exchange.route,
            "response",
            prefer_file=exchange.route in STREAMED_ROUTES,
        )
        status = upstream.status_code

        def commit(complete: bool) -> None:
            body = sink.finish(content_type)
            recorder.commit(exchange.record(status, dict(headers), body, complete=complete))
            self._done(exchange, status)

        if exchange.route not in STREAMED_ROUTES and "json" in content_type.lower():
            try:
                data = await upstream.aread()
            finally:
                await upstream.aclose()
            data = _rewrite_urls(data, exchange.upstream, exchange.proxy_base)
            sink.write(data)
            await run_in_threadpool(commit, True)  # noqa: FBT003 - complete
            return Response(data, status, headers=headers)

        async def relay() -> AsyncIterator[bytes]:
            complete = False
            try:
                async for chunk in upstream.aiter_bytes():
                    sink.write(chunk)
                    yield chunk
                complete = True
            finally:
                await upstream.aclose()
                commit(complete)

        return StreamingResponse(relay(), status, headers=headers)


def create_proxy_app(
    recorder: Recorder,
    *,
    log: Callable[[str], None] | None = None,
    timeout_s: float = 600.0,
    on_stop: Callable[[], None] | None = None,
) -> Starlette:
    """The ASGI app that forwards every path to the recorder's upstream(s) and records it.

    Args:
        recorder: Where exchanges go.
        log: Called with `METHOD /path -> status [route]` per request (nothing secret).
        timeout_s: Read timeout towards the upstream (large downloads take a while).
        on_stop: Called once the server shuts down (the CLI prints its summary there).
    """
    proxy = _Proxy(recorder, log, timeout_s, on_stop)
    return Starlette(
        routes=[Route("/{path:path}", proxy.forward, methods=METHODS)],
        lifespan=proxy.lifespan,
    )


def record(
    recorder: Recorder,
    *,
    host: str = "127.0.0.1",
    port: int = 8766,
    ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve the recording proxy until interrupted; `ready(base_url)` once listening."""
    from costguard.simulator.server import serve_app

    app = create_proxy_app(recorder, log=log, on_stop=on_stop)
    serve_app(app, host=host, port=port, ready=ready, lifespan="on")


@contextlib.contextmanager
def record_in_thread(
    upstream: str | Mapping[str, str],
    out: Path,
    *,
    shrink: bool = False,
    secrets: Iterable[str] = (),
    name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, Recorder]]:
    """Run a recording proxy in a background thread for the block (tests, scripts).

    Yields:
        The proxy's base URL and its `Recorder`.
    """
    from costguard.simulator.server import app_in_thread

    recorder = Recorder(out, upstream=upstream, name=name, shrink=shrink, secrets=secrets)
    app = create_proxy_app(recorder, log=log)
    with app_in_thread(app, lifespan="on") as base_url:
        yield base_url, recorder
