"""In-process face: a respx router that answers the SDKs' HTTP calls from a `Simulator`.

The current `openai` and `google-genai` SDKs send through `httpx2`, whose transport is
`httpcore2`; respx on its own patches only `httpcore`. This module is the one place that knows
it: it registers a respx mocker for `httpcore2` (the same patch points as pytest-httpx2's, which
cannot be used here because it imports pytest, and the base install has no pytest), and
`mock_transport(sim)` patches `httpcore2` for the duration of a `with` block, answers every
request to the providers' hosts (and to any extra origin given) through `Simulator.handle`, and
lets other hosts through. Downloaded file bodies stay streamed: they are iterated as the client
reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from urllib.parse import urlsplit

import httpx
import respx
from respx.mocks import HTTPCoreMocker

from costguard.simulator import PROVIDER_HOSTS, Simulator
from costguard.simulator.core import SimRequest, SimResponse

__all__ = ["mock_transport", "to_httpx_response", "to_sim_request"]


class HTTPCore2Mocker(HTTPCoreMocker):
    """respx's httpcore mocker aimed at `httpcore2`, the transport under httpx2 and the SDKs.

    Registered under its own name, so it lives beside pytest-httpx2's `httpcore2` mocker when a
    user's test environment has that plugin too.
    """

    name = "costguard-httpcore2"
    targets = [  # noqa: RUF012 - respx reads this class attribute as a list
        "httpcore2._sync.connection.HTTPConnection",
        "httpcore2._sync.connection_pool.ConnectionPool",
        "httpcore2._sync.http_proxy.HTTPProxy",
        "httpcore2._async.connection.AsyncHTTPConnection",
        "httpcore2._async.connection_pool.AsyncConnectionPool",
        "httpcore2._async.http_proxy.AsyncHTTPProxy",
    ]


class _ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A generated body, readable by sync and async clients alike, one chunk at a time."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""


def to_sim_request(request: httpx.Request) -> SimRequest:
    """The simulator's view of an intercepted request (its body is already read)."""
    url = request.url
    return SimRequest.build(
        request.method,
        url.path,
        query_string=url.query.decode("ascii", errors="replace"),
        headers=request.headers.multi_items(),
        body=request.content,
        base_url=f"{url.scheme}://{url.netloc.decode('ascii')}",
    )


def to_httpx_response(response: SimResponse) -> httpx.Response:
    """An httpx response carrying the simulator's answer; iterator bodies stay lazy."""
    headers = list(response.headers.items())
    if isinstance(response.body, bytes):
        return httpx.Response(response.status, headers=headers, content=response.body)
    return httpx.Response(response.status, headers=headers, stream=_ChunkStream(response.body))


def _origin(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.scheme or not parts.netloc:
        msg = f"costguard-sim: cannot intercept {url!r}: give a base URL like http://host:port"
        raise ValueError(msg)
    return f"{parts.scheme}://{parts.netloc}/"


@contextlib.contextmanager
def mock_transport(sim: Simulator, *, base_urls: Iterable[str] = ()) -> Iterator[respx.Router]:
    """Route the providers' hosts and `base_urls` to `sim` inside the block.

    Args:
        sim: The simulator that answers.
        base_urls: Extra origins to answer (any path under them), e.g. a gateway's URL.

    Yields:
        The respx router (its `calls` see the raw traffic too).
    """

    def answer(request: httpx.Request) -> httpx.Response:
        return to_httpx_response(sim.handle(to_sim_request(request)))

    origins = [f"https://{host}/" for host in PROVIDER_HOSTS]
    origins += [_origin(url) for url in base_urls]
    with respx.mock(using=HTTPCore2Mocker.name, assert_all_called=False) as router:
        for origin in dict.fromkeys(origins):
            router.route(url__startswith=origin).mock(side_effect=answer)
        router.route().pass_through()
        yield router
