"""`UrlRewriter`: URLs under the upstream rewritten to the proxy in a body that streams in
chunks, the same wherever the chunks are cut."""

from __future__ import annotations

import random
import re

import pytest

from costguard.proxy.forward import UrlRewriter

UPSTREAM = "http://127.0.0.1:8001"
PROXY = "http://127.0.0.1:9"


def whole(text: bytes) -> bytes:
    """The rewrite of a whole body, by a regular expression (the reference)."""
    pattern = re.escape(UPSTREAM.encode()) + rb"(?=[/\"'?#\s]|$)"
    return re.sub(pattern, PROXY.encode(), text)


def streamed(text: bytes, cuts: list[int]) -> bytes:
    rewriter = UrlRewriter(UPSTREAM, PROXY)
    out = []
    start = 0
    for cut in [*sorted(cuts), len(text)]:
        out.append(rewriter.feed(text[start:cut]))
        start = cut
    out.append(rewriter.flush())
    return b"".join(out)


BODIES = [
    b'{"uri": "http://127.0.0.1:8001/v1beta/files/abc", "downloadUri": "http://127.0.0.1:8001/download?x=1"}',
    b'{"other": "http://127.0.0.1:80010/longer-port", "host": "http://127.0.0.1:8001"}',
    b"http://127.0.0.1:8001",
    b"http://127.0.0.1:800",
    b'"http://127.0.0.1:8001http://127.0.0.1:8001/"',
    b"",
    b"no url at all " * 50,
]


@pytest.mark.parametrize("body", BODIES)
def test_every_single_cut_gives_the_whole_body_rewrite(body: bytes) -> None:
    expected = whole(body)
    for cut in range(len(body) + 1):
        assert streamed(body, [cut]) == expected, cut


def test_random_bodies_and_cuts_match_the_whole_body_rewrite() -> None:
    rng = random.Random(7)
    pieces = [UPSTREAM.encode(), b"/", b'"', b"0", b"x", b" ", UPSTREAM[:-1].encode(), b"\n"]
    for _ in range(500):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        cuts = [rng.randrange(0, len(body) + 1) for _ in range(rng.randrange(0, 6))]
        assert streamed(body, cuts) == whole(body), (body, cuts)


def test_a_long_body_is_kept_back_no_more_than_the_upstream_length() -> None:
    rewriter = UrlRewriter(UPSTREAM, PROXY)
    out = rewriter.feed(b"a" * 100_000)
    assert len(out) == 100_000 - len(UPSTREAM)
    assert len(rewriter.carry) == len(UPSTREAM)
