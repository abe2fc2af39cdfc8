"""`multipart/form-data` bodies read from a file without loading them: each part is a window
(offset, size) on the body, so an upload's size is known, and can be refused, before its bytes
are read.

    parts = parse_form(request.body_file(), request.headers["content-type"])
    upload = parts["file"][0]
    if upload.size > limit: ...          # nothing of it read yet
    data = upload.read()
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from typing import IO

SCAN_BYTES = 1 << 20
"""The body is scanned for boundaries in reads of this size."""
MAX_HEADER_BYTES = 16 * 1024
"""A part's headers longer than this make the body malformed."""


class MalformedFormError(ValueError):
    """The body is not the multipart/form-data its Content-Type says."""


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a form: its headers, and where its content lies in the body."""

    name: str
    filename: str | None
    content_type: str
    size: int
    """The content's length in bytes (known without reading it)."""
    _body: IO[bytes]
    _start: int

    def read(self) -> bytes:
        """The part's content."""
        self._body.seek(self._start)
        return self._body.read(self.size)

    def text(self) -> str:
        """The content as UTF-8 text (undecodable bytes replaced)."""
        return self.read().decode("utf-8", errors="replace")


def boundary_of(content_type: str) -> str | None:
    """The `boundary` parameter of a multipart Content-Type, when there is one."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    return boundary if isinstance(boundary, str) and boundary else None


def _delimiters(body: IO[bytes], delimiter: bytes) -> Iterator[int]:
    """The offset of each `--boundary` that starts the body or follows a CRLF."""
    marker = b"\r\n" + delimiter
    buffer = bytearray(b"\r\n")  # so a delimiter at offset 0 is found like the others
    base = -2  # body offset of buffer[0]
    start = 0
    while True:
        chunk = body.read(SCAN_BYTES)
        buffer += chunk
        while (found := buffer.find(marker, start)) != -1:
            yield base + found + 2
            start = found + len(marker)
        if not chunk:
            return
        cut = max(start, len(buffer) - len(marker) + 1)
        del buffer[:cut]
        base += cut
        start = 0


def _part(body: IO[bytes], start: int, end: int) -> FormPart | None:
    """The part between the end of a delimiter line at `start` and the CRLF before `end`."""
    body.seek(start)
    head = body.read(min(MAX_HEADER_BYTES, max(0, end - start)))
    split = head.find(b"\r\n\r\n")
    if split == -1:
        if head.startswith(b"\r\n"):  # no headers at all
            split = -2
        else:
            msg = "a form part's headers do not end"
            raise MalformedFormError(msg)
    headers = BytesHeaderParser(policy=HTTP).parsebytes(head[: max(split, 0)])
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        return None
    content = start + split + 4
    return FormPart(
        name=name,
        filename=headers.get_filename(),
        content_type=headers.get_content_type(),
        size=max(0, end - 2 - content),
        _body=body,
        _start=content,
    )


def parse_form(body: IO[bytes], content_type: str) -> dict[str, list[FormPart]]:
    """The parts of a multipart/form-data `body` by field name, in order (none read yet).

    Raises:
        MalformedFormError: when the Content-Type names no boundary or a part is cut short.
    """
    boundary = boundary_of(content_type)
    if boundary is None:
        msg = "the multipart Content-Type names no boundary"
        raise MalformedFormError(msg)
    delimiter = b"--" + boundary.encode("latin-1")
    offsets = list(_delimiters(body, delimiter))
    fields: dict[str, list[FormPart]] = {}
    for here, following in itertools.pairwise(offsets):
        body.seek(here + len(delimiter))
        if body.read(2) == b"--":  # the close delimiter
            break
        body.seek(here + len(delimiter))
        line_end = body.read(MAX_HEADER_BYTES).find(b"\r\n")
        if line_end == -1:
            msg = "a form delimiter line does not end"
            raise MalformedFormError(msg)
        part = _part(body, here + len(delimiter) + line_end + 2, following)
        if part is not None:
            fields.setdefault(part.name, []).append(part)
    return fields
