"""Recording proxy: forward an SDK's traffic to a real provider and store it, scrubbed.

`costguard simulate record --upstream URL --out DIR` serves the forwarding proxy
(`costguard.proxy.forward`) on loopback with a `Recorder` behind it. A pipeline points its SDK
at it (`OPENAI_BASE_URL=http://127.0.0.1:8766/v1`,
`GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8766`); every request is forwarded to `URL` + the same
path and query (with `--upstream openai=URL --upstream gemini=URL`, to the URL of the provider
the simulator's rules recognise in the request), and the answer goes back to the client as it
arrives.

Each exchange is named with the simulator's own route table (`openai.batches.retrieve`,
`gemini.batches.get`, ...) and written as described in `format.py`, after `Scrubber` has
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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from costguard.proxy.forward import create_proxy_app
from costguard.proxy.scrub import Scrubber
from costguard.simulator import Simulator, provider_of
from costguard.simulator.core import SimRequest
from costguard.simulator.images import MIME_SUFFIXES, ImageSource
from costguard.simulator.recording.format import (
    EXCHANGES,
    MANIFEST,
    LineSink,
    Manifest,
    RecordingError,
    exchange_file_name,
    write_manifest,
)
from costguard.simulator.recording.index import Indexer, facts_of

if TYPE_CHECKING:
    from costguard.simulator.server import Listening

__all__ = ["Recorder", "record", "record_in_thread", "shrink_images"]

_PARAMS = ("id", "file_id", "batch_id", "model")


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


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"--upstream {url!r}: give a base URL like https://api.openai.com"
        raise RecordingError(msg)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def record(
    recorder: Recorder,
    *,
    host: str = "127.0.0.1",
    port: int = 8766,
    ready: Callable[[Listening], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve the recording proxy until interrupted; `ready(listening)` once listening."""
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
