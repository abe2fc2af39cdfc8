"""Serving an ASGI app with uvicorn: in the foreground until interrupted, or in a thread for
a block. Shared by the simulator, the recording proxy and the budget gateway.

The server binds 127.0.0.1 by default; port 0 picks a free port. The access log is off (a
Gemini client may put its key in the query string): callers log their own lines.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = [
    "Lifespan",
    "Listening",
    "app_in_thread",
    "base_url_of",
    "bind",
    "listening_on",
    "serve_app",
]

MAX_PORT = 65535
Lifespan = Literal["auto", "on", "off"]


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
def app_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Lifespan = "off",
    name: str = "costguard-server",
) -> Iterator[str]:
    """Serve any ASGI app from a background thread for the block; yields its base URL."""
    sock = bind(host, port)
    server = _server(app, lifespan=lifespan)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            msg = f"{name}: the server did not start"
            raise RuntimeError(msg)
        time.sleep(0.005)
    try:
        yield base_url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
