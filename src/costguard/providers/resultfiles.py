"""Provider result files read fast and in flat memory: one line at a time, while they download.

A result file of N images is N lines of a few MB each, nearly all of it one base64 string per
image. Three things keep collecting near disk speed:

- `download_lines` reads the lines while the file is still downloading (the download runs in a
  thread, which waits on the network without holding the GIL), so parsing and writing images
  overlap the transfer instead of following it;
- `loads` parses a line without a JSON pass over its payloads: each long base64 value of the
  named field is cut out by byte search (base64 needs no JSON escapes) and put back, still
  encoded, as `bytes`; `json` only sees the small rest of the line;
- `decode_base64` (in `base`) decodes it in one C call, standard or URL-safe alphabet.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024
MIN_PAYLOAD = 1024
"""Values shorter than this are left to `json` (nothing to gain, and fewer cases to get right)."""
_WHITESPACE = b" \t\r\n"


def read_lines(path: Path) -> Iterator[bytes]:
    """The non-blank lines of a complete file, one at a time, without their newline."""
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield raw.removesuffix(b"\n")


def download_lines(download: Callable[[Path], None], target: Path) -> Iterator[bytes]:
    """The non-blank lines of a result file (without their newline) while `download(partial)`
    writes it.

    `download` runs in a thread and writes `<target>.part`; lines are yielded as they complete.
    Once the whole file is read it is renamed to `target`, and a later call reads `target` as
    it is (a resumed collect does not download again). An error in the download is raised here
    after the lines that arrived before it.
    """
    if target.exists():
        yield from read_lines(target)
        return
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    partial.touch()
    failure: list[BaseException] = []

    def fetch() -> None:
        try:
            download(partial)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            failure.append(exc)

    worker = threading.Thread(target=fetch, name=f"download {target.name}", daemon=True)
    worker.start()
    pending: list[bytes] = []  # the start of a line, in the chunks it arrived in
    with partial.open("rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                if worker.is_alive():
                    time.sleep(0.002)
                    continue
                chunk = handle.read()  # what arrived between the last read and the end
                if not chunk:
                    break
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:  # only new bytes are searched
                pending.append(chunk[start:end])
                raw = b"".join(pending)
                pending.clear()
                start = end + 1
                if raw.strip():
                    yield raw
            pending.append(chunk[start:])
    worker.join()
    if failure:
        raise failure[0]
    rest = b"".join(pending)
    if rest.strip():
        yield rest
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
