"""Forwarding proxy: pass an SDK's traffic through to a real provider, and show it to a sink.

A pipeline points its SDK at the app `create_proxy_app` builds; every request is forwarded to
the upstream base URL + the same path and query (with one upstream per provider, to the URL of
the provider the sink recognises in the request), with the same method, body and headers (minus
hop-by-hop ones, and with `accept-encoding: identity` so bodies arrive readable), and the answer
goes back to the client as it arrives, chunk by chunk, whatever its size. Gemini's JSON
answers have the absolute URLs that point at the upstream (a file's `uri` and `downloadUri`,
and the `X-Goog-Upload-URL` header) rewritten to the proxy on the way (`UrlRewriter`, in
constant memory), which keeps resumable uploads and downloads going through it; every other
answer passes unchanged, with its `Content-Length`. The exchange is committed before the
answer's last bytes are sent, unless the gate lets the answer go first (`Gate.answer_first`).

What happens to the traffic is the sink's business (`ExchangeSink`): it names each request,
picks its upstream, receives both bodies chunk by chunk (`BodySink`) and each finished exchange.
The recording proxy's `Recorder` (`costguard.simulator.recording.record`) is one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from costguard.proxy.scrub import Scrubber

__all__ = [
    "HOP_BY_HOP",
    "STREAMED_ROUTES",
    "BodySink",
    "BodyTooLargeError",
    "Exchange",
    "ExchangeSink",
    "Gate",
    "UrlRewriter",
    "create_proxy_app",
    "read_body",
]

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
_URL_HEADERS = ("x-goog-upload-url", "location", "content-location")


class BodySink(Protocol):
    """Where a request or response body goes as it passes through (a `LineSink` when recording)."""

    def write(self, chunk: bytes) -> None:
        """Add a chunk of the body."""

    def finish(self, content_type: str) -> dict[str, Any] | None:
        """Close the body; return its stored form."""

    def abort(self) -> None:
        """Drop a body that will not be finished (the upstream failed)."""


class BodyTooLargeError(Exception):
    """A request body passed the proxy's limit (answered 413, nothing more forwarded)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit:,} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int | None) -> bytes:
    """A request's whole body, or `BodyTooLargeError` once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class Gate(Protocol):
    """What may stop or change a request before it is forwarded (the budget gateway's hook).

    `before` runs once the exchange is named and before anything goes upstream: it returns a
    response to answer instead (nothing is forwarded), the whole request body it read (that
    body is forwarded), or None (the body streams through untouched). `failed` is told of an
    exchange whose upstream failed (no `commit` follows for it). `answer_first` lets a JSON
    answer go back before its exchange is committed (the commit still runs, even when the
    client has gone).
    """

    async def before(self, exchange: Exchange, request: Request) -> Response | bytes | None:
        """Answer instead, or let the request go (with the body read, if it was)."""

    def failed(self, exchange: Exchange) -> None:
        """The upstream failed for `exchange`: nothing was answered by it."""

    def answer_first(self, exchange: Exchange) -> bool:
        """Whether the exchange's `commit` may run once its answer has been sent (bookkeeping
        nobody waits for) rather than before it is answered."""


class ExchangeSink(Protocol):
    """What the proxy asks of whoever takes its traffic (the `Recorder` when recording)."""

    scrubber: Scrubber
    """Learns the credentials each request and answer carry, before any of it is stored."""
    upstream: str
    """The upstream(s) as messages show them."""

    def note_origin(self, origin: str) -> None:
        """Remember the proxy's base URL as the client used it."""

    def next_seq(self) -> int:
        """The number of the next exchange (in order of arrival)."""

    def upstream_for(self, provider: str) -> str | None:
        """The base URL a request for `provider` goes to (None: no upstream for it)."""

    def route_of(
        self, method: str, path: str, query_string: str, headers: dict[str, str]
    ) -> tuple[str, str, dict[str, str]]:
        """(route name, provider, ids from the path) of a request."""

    def sink(self, seq: int, route: str, part: str, *, prefer_file: bool = False) -> BodySink:
        """Where the request or response body of exchange `seq` goes."""

    def commit(self, record: dict[str, Any]) -> None:
        """Take one finished exchange (`Exchange.record`)."""


_URL_ENDS = frozenset(b"/\"'?#" + b" \t\r\n\f\v")
"""Bytes that may follow a base URL being rewritten (a longer host or port is not it)."""


class UrlRewriter:
    """Rewrites absolute URLs under `upstream` to `proxy` in a body that arrives in chunks.

    `feed` returns what is settled so far; a possible match cut by a chunk boundary waits in
    `carry` (at most `len(upstream)` bytes) for the next chunk; `flush` returns the rest. A
    body of any size streams through in constant memory, and a chunk without the upstream's
    bytes costs one `bytes.find`.
    """

    def __init__(self, upstream: str, proxy: str) -> None:
        self.old = upstream.encode()
        self.new = proxy.encode()
        self.carry = b""

    def _rewrite(self, data: bytes, settled: int) -> tuple[bytes, int]:
        """(`data` rewritten up to the end of the last match starting before `settled`, where
        that output ends in `data`)."""
        out: list[bytes] = []
        pos = 0
        found = data.find(self.old)
        while 0 <= found < settled:
            end = found + len(self.old)
            if end == len(data) or data[end] in _URL_ENDS:
                out.append(data[pos:found])
                out.append(self.new)
                pos = end
            found = data.find(self.old, end if pos == end else found + 1)
        done = max(settled, pos)
        out.append(data[pos:done])
        return b"".join(out), done

    def feed(self, chunk: bytes) -> bytes:
        """The next chunk in; what can be sent on out."""
        data = self.carry + chunk if self.carry else chunk
        settled = len(data) - len(self.old)  # a match starting here has its next byte
        if settled <= 0:
            self.carry = data
            return b""
        out, done = self._rewrite(data, settled)
        self.carry = data[done:]
        return out

    def flush(self) -> bytes:
        """The end of the body: the rest."""
        data, self.carry = self.carry, b""
        return self._rewrite(data, len(data))[0]


def _rewrite_urls(text: bytes, upstream: str, proxy: str) -> bytes:
    """Absolute URLs under `upstream` rewritten to `proxy` (not a longer host or port)."""
    rewriter = UrlRewriter(upstream, proxy)
    return rewriter.feed(text) + rewriter.flush()


@dataclass
class Exchange:
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
    note: str = ""
    """What the gate decided, appended to the exchange's log line (never a key)."""

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


class _AnswerThen(StreamingResponse):
    """A streamed answer with a step that runs once it has been sent, or failed to be (the
    client went away, the upstream broke off): the exchange is always committed."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status: int,
        headers: dict[str, str],
        then: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(content, status, headers=headers)
        self.then = then

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.then()


class _Proxy:
    """The forwarding logic behind `create_proxy_app`."""

    def __init__(
        self,
        recorder: ExchangeSink,
        log: Callable[[str], None] | None,
        timeout_s: float,
        on_stop: Callable[[], None] | None,
        *,
        gate: Gate | None = None,
        max_body: int | None = None,
        name: str = "costguard record",
    ) -> None:
        self.recorder = recorder
        self.gate = gate
        self.max_body = max_body
        self.name = name
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

    def _start(self, request: Request) -> Exchange | None:
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
        return Exchange(
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

    def _outgoing(
        self, request: Request, exchange: Exchange, sink: BodySink, read: bytes | None
    ) -> httpx.Request:
        assert self.client is not None
        limit = self.max_body

        async def body() -> AsyncIterator[bytes]:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLargeError(limit)
                sink.write(chunk)
                yield chunk

        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name not in HOP_BY_HOP
            and name not in ("host", "accept-encoding")
            and not name.startswith("x-costguard-")  # the gateway's own, never sent on
        ]
        headers.append(("accept-encoding", "identity"))
        raw_path = request.scope.get("raw_path") or exchange.path.encode()
        url = exchange.upstream + raw_path.decode("latin-1")
        if request.url.query:
            url += "?" + request.url.query
        has_body = "content-length" in exchange.headers or "transfer-encoding" in exchange.headers
        content: bytes | AsyncIterator[bytes] = body() if has_body else b""
        if read is not None:
            sink.write(read)
            content = read
        return self.client.build_request(exchange.method, url, headers=headers, content=content)

    def _reply_headers(self, upstream: httpx.Response, exchange: Exchange) -> dict[str, str]:
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

    def _done(self, exchange: Exchange, status: int) -> None:
        if self.log is not None:
            note = f" {exchange.note}" if exchange.note else ""
            self.log(f"{exchange.method} {exchange.path} -> {status} [{exchange.route}]{note}")

    def _too_large(self, exc: BodyTooLargeError) -> Response:
        message = f"{self.name}: {exc}; nothing more was forwarded"
        return JSONResponse({"error": {"message": message, "code": 413}}, status_code=413)

    async def forward(self, request: Request) -> Response:  # noqa: PLR0915 - one pass
        """Forward one request, stream the answer back, record both."""
        assert self.client is not None
        recorder = self.recorder
        exchange = self._start(request)
        if exchange is None:
            message = (
                f"{self.name}: no --upstream for this request ({request.method} "
                f"{request.url.path}); give one for every provider: {recorder.upstream}"
            )
            return JSONResponse({"error": {"message": message, "code": 502}}, status_code=502)
        read: bytes | None = None
        if self.gate is not None:
            try:
                decided = await self.gate.before(exchange, request)
            except BodyTooLargeError as exc:
                self._done(exchange, 413)
                return self._too_large(exc)
            if isinstance(decided, Response):
                self._done(exchange, decided.status_code)
                return decided
            read = decided
        request_sink = recorder.sink(exchange.seq, exchange.route, "request")
        try:
            upstream = await self.client.send(
                self._outgoing(request, exchange, request_sink, read), stream=True
            )
        except BodyTooLargeError as exc:
            request_sink.abort()
            if self.gate is not None:
                self.gate.failed(exchange)
            self._done(exchange, 413)
            return self._too_large(exc)
        except httpx.HTTPError as exc:
            request_sink.abort()
            if self.gate is not None:
                self.gate.failed(exchange)
            self._done(exchange, 502)
            message = f"{self.name}: upstream {exchange.upstream} failed: {exc!r}"
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
        committed = threading.Lock()  # held once the exchange is committed

        def commit(complete: bool) -> None:
            if not committed.acquire(blocking=False):
                return  # committed already (exactly once, whoever comes second)
            body = sink.finish(content_type)
            recorder.commit(exchange.record(status, dict(headers), body, complete=complete))
            self._done(exchange, status)

        rewriter = None
        reply = dict(headers)
        if (
            exchange.provider == "gemini"  # the only API whose answers carry its own URLs
            and exchange.route not in STREAMED_ROUTES
            and "json" in content_type.lower()
        ):
            rewriter = UrlRewriter(exchange.upstream, exchange.proxy_base)
        elif (length := upstream.headers.get("content-length")) is not None:
            reply["content-length"] = length  # unchanged: sent as is, not chunked
        answer_first = self.gate is not None and self.gate.answer_first(exchange)
        passed = False

        async def relay() -> AsyncIterator[bytes]:
            """The answer as it arrives, one chunk behind: unless the gate lets the answer go
            first, the exchange is committed before its last bytes reach the client."""
            nonlocal passed
            held = b""
            try:
                async for chunk in upstream.aiter_bytes():
                    out = rewriter.feed(chunk) if rewriter is not None else chunk
                    if out:
                        sink.write(out)
                        if held:
                            yield held
                        held = out
                if rewriter is not None and (rest := rewriter.flush()):
                    sink.write(rest)
                    held += rest
                passed = True
            finally:
                await upstream.aclose()
            if not answer_first:
                await run_in_threadpool(commit, True)  # noqa: FBT003 - complete
            if held:
                yield held

        async def after() -> None:  # runs however the answer ended
            await run_in_threadpool(commit, passed)

        return _AnswerThen(relay(), status, reply, after)


def create_proxy_app(
    recorder: ExchangeSink,
    *,
    log: Callable[[str], None] | None = None,
    timeout_s: float = 600.0,
    on_stop: Callable[[], None] | None = None,
    gate: Gate | None = None,
    max_body: int | None = None,
    name: str = "costguard record",
) -> Starlette:
    """The ASGI app that forwards every path to the recorder's upstream(s) and records it.

    Args:
        recorder: Where exchanges go.
        log: Called with `METHOD /path -> status [route]` per request (nothing secret).
        timeout_s: Read timeout towards the upstream (large downloads take a while).
        on_stop: Called once the server shuts down (the CLI prints its summary there).
        gate: Decides before forwarding (the budget gateway); None forwards everything.
        max_body: Largest request body forwarded, in bytes (413 beyond); None: no limit.
        name: How the proxy names itself in the errors it answers.
    """
    proxy = _Proxy(recorder, log, timeout_s, on_stop, gate=gate, max_body=max_body, name=name)
    return Starlette(
        routes=[Route("/{path:path}", proxy.forward, methods=METHODS)],
        lifespan=proxy.lifespan,
    )
