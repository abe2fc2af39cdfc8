"""HTTP face: a real server (starlette on uvicorn) in front of a `Simulator`.

Every request, whatever its path, becomes a `SimRequest` (its base URL taken from the `Host`
header, so absolute upload URLs point back here) and is answered by `Simulator.handle` in a
worker thread; streamed bodies (downloads) are sent as they are generated. A route with a
body limit (`Simulator.body_limit`: uploads, Gemini's 20 MB requests) is refused from its
`Content-Length` before its body is read, and otherwise its body is streamed into a spooled
temporary file with the limit enforced as it arrives. The server binds
127.0.0.1 by default; port 0 picks a free port. The access log is off, because a Gemini
client may put its key in the query string: `log=` gets one line per request without it.

    with serve_in_thread(sim) as base_url:      # tests: OpenAI(base_url=base_url + "/v1")
        ...
    serve(sim, port=8765, ready=print)          # `costguard simulate serve`: blocks
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from costguard.simulator import Simulator
from costguard.simulator.core import SPOOL_MEMORY_BYTES, SimRequest

__all__ = [
    "Listening",
    "app_in_thread",
    "bind",
    "create_app",
    "listening_on",
    "serve",
    "serve_app",
    "serve_in_thread",
]

MAX_PORT = 65535
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
Lifespan = Literal["auto", "on", "off"]


def create_app(sim: Simulator, *, log: Callable[[str], None] | None = None) -> Starlette:
    """The ASGI app answering every path from `sim`.

    Args:
        sim: The simulator.
        log: Called with `METHOD /path -> status` per request (no query, no headers).
    """

    async def answer(request: Request) -> Response:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        head = SimRequest.build(
            request.method,
            request.url.path,
            query_string=request.url.query,
            headers=request.headers.items(),
            base_url=f"{request.url.scheme}://{host}",
        )
        limit = sim.body_limit(head)
        if limit is None:
            sim_request = replace(head, body=await request.body())
            response = await run_in_threadpool(sim.handle, sim_request)
        else:
            spool = await _spooled_body(request, head, limit.max_bytes)
            if spool is None:
                response = sim.refuse_body(head, limit)
            else:
                with spool:
                    if limit.spool:
                        sim_request = replace(head, spooled=spool)
                    else:
                        spool.seek(0)
                        sim_request = replace(head, body=spool.read())
                    response = await run_in_threadpool(sim.handle, sim_request)
        if log is not None:
            log(f"{request.method} {request.url.path} -> {response.status}")
        if isinstance(response.body, bytes):
            return Response(response.body, status_code=response.status, headers=response.headers)
        return StreamingResponse(response.body, response.status, headers=response.headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=METHODS)])


async def _spooled_body(
    request: Request, head: SimRequest, max_bytes: int
) -> tempfile.SpooledTemporaryFile[bytes] | None:
    """The body streamed into a temporary file, or None once it is known to exceed `max_bytes`
    (from `Content-Length` before reading anything, else as soon as that much arrived).

    What the client still sends after a refusal is read and dropped by the server, so the
    client gets the answer once it has sent its body.
    """
    declared = head.declared_length()
    if declared is not None and declared > max_bytes:
        return None
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned open, closed by the caller
        max_size=SPOOL_MEMORY_BYTES, prefix="costguard-sim-"
    )
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            spool.close()
            return None
        spool.write(chunk)
    return spool


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on `host:port` (0 = a free port).

    Raises:
        OSError: when the address is taken or cannot be bound.
        ValueError: when `port` is outside 0..65535.
    """
    if not 0 <= port <= MAX_PORT:
        msg = f"port {port} is outside 0..{MAX_PORT}"
        raise ValueError(msg)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def base_url_of(sock: socket.socket) -> str:
    """`http://host:port` for a bound socket (a wildcard address shows as loopback)."""
    return listening_on(sock).base_url


@dataclass(frozen=True, slots=True)
class Listening:
    """Where a server listens: the address actually bound, and the URL a local client uses."""

    host: str
    """The bound address (`0.0.0.0` and `::` mean every interface)."""
    port: int
    base_url: str
    """`http://host:port` a client on this machine can reach (loopback for a wildcard bind)."""

    @property
    def all_interfaces(self) -> bool:
        """Whether the wildcard address was bound (every interface)."""
        return self.host in _WILDCARDS

    @property
    def loopback_only(self) -> bool:
        """Whether only this machine can connect (a loopback address was bound)."""
        return not self.all_interfaces and ipaddress.ip_address(self.host).is_loopback

    @property
    def bound(self) -> str:
        """`host:port` as bound (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        """The base URL, or for a wildcard bind what was bound and the URL for local clients."""
        if self.all_interfaces:
            return f"all interfaces ({self.bound}), local clients use {self.base_url}"
        return self.base_url


_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - read from the bound socket


def listening_on(sock: socket.socket) -> Listening:
    """What a bound socket listens on (see `Listening`)."""
    host, port = sock.getsockname()[:2]
    local = _WILDCARDS.get(host, host)
    shown = f"[{local}]" if ":" in local else local
    return Listening(host, port, f"http://{shown}:{port}")


def _server(app: ASGIApp, *, lifespan: Lifespan = "off") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def serve(
    sim: Simulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[Listening], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Serve `sim` until interrupted (Ctrl-C / SIGTERM); `ready(listening)` once listening."""
    serve_app(create_app(sim, log=log), host=host, port=port, ready=ready)


def serve_app(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[Listening], None] | None = None,
    lifespan: Lifespan = "off",
) -> None:
    """Serve any ASGI app (the simulator, the recording proxy) until interrupted."""
    sock = bind(host, port)
    try:
        if ready is not None:
            ready(listening_on(sock))
        _server(app, lifespan=lifespan).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def serve_in_thread(
    sim: Simulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Serve `sim` from a background thread for the duration of the block.

    Yields:
        The base URL, e.g. `http://127.0.0.1:54321` (OpenAI clients add `/v1`).
    """
    with app_in_thread(create_app(sim, log=log), host=host, port=port) as base_url:
        yield base_url


@contextlib.contextmanager
def app_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, lifespan: Lifespan = "off"
) -> Iterator[str]:
    """Serve any ASGI app from a background thread for the block; yields its base URL."""
    sock = bind(host, port)
    server = _server(app, lifespan=lifespan)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="costguard-sim", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            msg = "costguard-sim: the simulator server did not start"
            raise RuntimeError(msg)
        time.sleep(0.005)
    try:
        yield base_url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
