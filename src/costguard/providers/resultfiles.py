"""Provider result files read fast and in flat memory: one line at a time, while they download.

A result file of N images is N lines of a few MB each, nearly all of it one base64 string per
image. Three things keep collecting near disk speed:

- `download_lines` reads the lines while the file is still downloading (the download runs in a
  thread, which waits on the network without holding the GIL), from memory, so parsing and
  writing images overlap the transfer, and the raw file is not written to disk and read back
  (it was half the disk traffic of a collect) unless it is kept (`--keep-raw`);
- `loads` parses a line without a JSON pass over its payloads: each long base64 value of the
  named field is cut out by byte search (base64 needs no JSON escapes) and put back, still
  encoded, as `bytes`; `json` only sees the small rest of the line;
- `decode_base64` (in `base`) decodes it in one C call, standard or URL-safe alphabet.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

QUEUED = 16
"""Chunks a download may get ahead of the reader (the SDKs' chunks are 64 KB to 1 MB)."""
MIN_PAYLOAD = 1024
"""Values shorter than this are left to `json` (nothing to gain, and fewer cases to get right)."""
_WHITESPACE = b" \t\r\n"


def read_lines(path: Path) -> Iterator[bytes]:
    """The non-blank lines of a complete file, one at a time, without their newline."""
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield raw.removesuffix(b"\n")


class Sink(io.RawIOBase):
    """Where a download thread writes: a bounded queue of chunks, and the raw file if kept."""

    def __init__(self, keep: Path | None) -> None:
        super().__init__()
        self.chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUED)
        self.file = keep.open("wb") if keep is not None else None
        self.stopped = False
        """Set when the reader stops early: the download then ends at its next write."""

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> int:  # type: ignore[override]  # bytes, as the SDKs write
        if self.stopped:
            msg = "the reader of this download stopped"
            raise OSError(msg)
        if chunk:
            if self.file is not None:
                self.file.write(chunk)
            self.chunks.put(bytes(chunk))
        return len(chunk)

    def finish(self, failure: BaseException | None) -> None:
        """The download ended (with `failure`, or None when it completed)."""
        if self.file is not None:
            self.file.close()
        self.chunks.put(failure)


def download_lines(
    download: Callable[[Sink], None], target: Path, *, keep: bool = False
) -> Iterator[bytes]:
    """The non-blank lines of a result file (without their newline) while it downloads.

    `download(sink)` runs in a thread and writes the file's bytes to `sink` (the SDKs take a
    writable object); lines are yielded as they complete, from memory: at most `QUEUED` chunks
    wait. With `keep`, the bytes also go to `<target>.part`, renamed to `target` once the whole
    file is read, and a later call reads `target` instead of downloading again. Without it
    nothing touches the disk (the images are written once, by the caller). An error in the
    download is raised here after the lines that arrived before it.
    """
    if target.exists():
        yield from read_lines(target)
        return
    partial = target.with_name(target.name + ".part")
    sink = Sink(partial if keep else None)

    def fetch() -> None:
        failure: BaseException | None = None
        try:
            download(sink)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            failure = exc
        sink.finish(failure)

    worker = threading.Thread(target=fetch, name=f"download {target.name}", daemon=True)
    worker.start()
    pending: list[bytes] = []  # the start of a line, in the chunks it arrived in
    try:
        while (chunk := sink.chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:  # only new bytes are searched
                pending.append(chunk[start:end])
                raw = b"".join(pending)
                pending.clear()
                start = end + 1
                if raw.strip():
                    yield raw
            pending.append(chunk[start:])
    finally:
        if worker.is_alive():  # the reader stopped early: let the download end too
            sink.stopped = True
            while worker.is_alive():
                with contextlib.suppress(queue.Empty):
                    sink.chunks.get(timeout=0.05)
    worker.join()
    rest = b"".join(pending)
    if rest.strip():
        yield rest
    if keep:
        partial.replace(target)


def loads(raw: bytes, field: str) -> Any:
    """A JSON line whose long base64 values of `field` come back as `bytes`, still encoded.

    Equivalent to `json.loads(raw)` except for those values; a value holding a backslash (a
    JSON escape, which base64 never needs) is left to `json`.
    """
    token = f"costguard-payload-{secrets.token_hex(8)}:"
    small, payloads = _cut(raw, b'"' + field.encode() + b'"', token)
    obj = json.loads(small)
    return _restore(obj, payloads, token) if payloads else obj


def _cut(raw: bytes, name: bytes, token: str) -> tuple[bytes, list[bytes]]:
    """`raw` with each long string value of field `name` replaced by `token` and its index."""
    pieces: list[bytes] = []
    payloads: list[bytes] = []
    pos = 0
    search = 0
    while (found := raw.find(name, search)) >= 0:
        search = found + len(name)
        colon = _skip(raw, search)
        if colon >= len(raw) or raw[colon] != ord(":"):
            continue
        quote = _skip(raw, colon + 1)
        if quote >= len(raw) or raw[quote] != ord('"'):
            continue
        start = quote + 1
        end = raw.find(b'"', start)
        if end < 0:
            break
        search = end + 1
        if end - start < MIN_PAYLOAD or raw.find(b"\\", start, end) >= 0:
            continue
        pieces += [raw[pos:start], f"{token}{len(payloads)}".encode()]
        payloads.append(raw[start:end])
        pos = end
    if not payloads:
        return raw, payloads
    pieces.append(raw[pos:])
    return b"".join(pieces), payloads


def _skip(raw: bytes, pos: int) -> int:
    while pos < len(raw) and raw[pos] in _WHITESPACE:
        pos += 1
    return pos


def _restore(obj: Any, payloads: list[bytes], token: str) -> Any:
    """Put each cut-out payload back where its placeholder is."""
    stack: list[Any] = [obj]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for name, value in list(items):
            if isinstance(value, str) and value.startswith(token):
                node[name] = payloads[int(value[len(token) :])]
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return obj
