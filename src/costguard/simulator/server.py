"""HTTP face: a real server (starlette on uvicorn) in front of a `Simulator`.

Every request, whatever its path, becomes a `SimRequest` (its base URL taken from the `Host`
header, so absolute upload URLs point back here) and is answered by `Simulator.handle` in a
worker thread; streamed bodies (downloads) are sent as they are generated. A route with a
body limit (`Simulator.body_limit`: uploads, Gemini's 20 MB requests) is refused from its
`Content-Length` before its body is read, and otherwise its body is streamed into a spooled
temporary file with the limit enforced as it arrives. Served by `costguard.proxy.server`: it binds
127.0.0.1 by default; port 0 picks a free port. The access log is off, because a Gemini
client may put its key in the query string: `log=` gets one line per request without it.

    with serve_in_thread(sim) as base_url:      # tests: OpenAI(base_url=base_url + "/v1")
        ...
    serve(sim, port=8765, ready=print)          # `costguard simulate serve`: blocks
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from costguard.proxy.server import (
    Listening,
    app_in_thread,
    base_url_of,
    bind,
    listening_on,
    serve_app,
)
from costguard.simulator import Simulator
from costguard.simulator.core import SPOOL_MEMORY_BYTES, SimRequest

__all__ = [
    "Listening",
    "app_in_thread",
    "base_url_of",
    "bind",
    "create_app",
    "listening_on",
    "serve",
    "serve_app",
    "serve_in_thread",
]

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


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
    app = create_app(sim, log=log)
    with app_in_thread(app, host=host, port=port, name="costguard-sim") as base_url:
        yield base_url
