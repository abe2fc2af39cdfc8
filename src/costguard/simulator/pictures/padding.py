"""Grow an encoded image to a byte size with data every decoder skips.

- PNG: private ancillary chunks `cgPd` right after `IHDR` (a decoder ignores unknown ancillary
  chunks); whole 64 KiB blocks (cached, so a block's CRC is computed once) and one chunk for
  the rest.
- JPEG: comment segments (`COM`, at most 65,533 bytes each) right after the start marker.
- WebP: an unknown `CGPD` chunk after the image, the file turned into the extended format
  (`VP8X`) first where it is not, since only that format allows unknown chunks.

PNG and JPEG come back in two parts (`split_png`, `split_jpeg`): a head (the file's opening
bytes, signature and `IHDR` or the start marker, then most of the padding) and a tail (a
little padding, then the rest of the image). The head depends only on those opening bytes,
`size` and how much room the tail needs, rounded up to `TAIL_GRID`, so images of the same
type, pixel size and target share one cached head; its length is a multiple of 3, so its
base64 can be cached too and the tail's appended (`images.py`).

The filler is a fixed pseudo-random block (not zeros, so nothing downstream can squeeze it
away). The result is exactly `size` bytes when the image is smaller than that by at least the
smallest chunk's overhead (12 bytes PNG, 4 JPEG, 8 WebP; WebP files are even, so an odd `size`
ends one byte short); a larger image is returned unchanged (as the tail, with an empty head).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from functools import lru_cache

from costguard.simulator.pictures.png import chunk

TAIL_GRID = 3 * 2048
"""The tail's length is the room it needs rounded up to this (plus `size % 3`), so a head
serves every image whose tail fits; a multiple of 3."""
_BLOCK = 64 * 1024
_PNG_KIND = b"cgPd"
_PNG_OPENING = 8 + 25  # signature + IHDR
_PNG_SMALLEST = 12
_COM_MAX = 65533
_JPEG_OPENING = 2  # SOI
_JPEG_SMALLEST = 4
_WEBP_KIND = b"CGPD"


@lru_cache(maxsize=4)
def filler(length: int) -> bytes:
    """`length` fixed pseudo-random bytes."""
    return random.Random(length).randbytes(length)  # noqa: S311 - padding, not a secret


@lru_cache(maxsize=8)
def _png_blocks(length: int) -> bytes:
    return chunk(_PNG_KIND, filler(length))


def png_filler(room: int) -> bytes:
    """`cgPd` chunks of exactly `room` bytes (0 or at least 12)."""
    if room <= 0:
        return b""
    parts = []
    if room >= _BLOCK + 24:
        blocks = (room - 24) // _BLOCK * _BLOCK
        parts.append(_png_blocks(blocks - 12))
        room -= blocks
    parts.append(chunk(_PNG_KIND, filler(_BLOCK + 24)[: room - 12]))
    return b"".join(parts)


def jpeg_filler(room: int) -> bytes:
    """`COM` segments of exactly `room` bytes (0 or at least 4)."""
    if room <= 0:
        return b""
    count = -(-room // (_COM_MAX + 4))
    payload = room - 4 * count
    block = filler(_COM_MAX)
    segments = []
    for index in range(count):
        length = payload // count + (1 if index < payload % count else 0)
        segments.append(b"\xff\xfe" + struct.pack(">H", length + 2) + block[:length])
    return b"".join(segments)


Filler = Callable[[int], bytes]


@lru_cache(maxsize=16)
def _head(opening: bytes, fill: Filler, room: int) -> bytes:
    return opening + fill(room)


def _split(
    data: bytes, size: int, opening: int, smallest: int, fill: Filler
) -> tuple[bytes, bytes]:
    room = size - len(data)
    if room < smallest:
        return b"", data
    rest = len(data) - opening
    tail = -(-(rest + smallest) // TAIL_GRID) * TAIL_GRID + size % 3
    head_room = size - tail - opening
    if head_room < smallest:  # too small to share a head
        return b"", data[:opening] + fill(room) + data[opening:]
    head = _head(data[:opening], fill, head_room)
    return head, fill(tail - rest) + data[opening:]


def split_png(data: bytes, size: int) -> tuple[bytes, bytes]:
    """`data` (a PNG) grown to `size` bytes, as (head, tail) (see the module's text)."""
    return _split(data, size, _PNG_OPENING, _PNG_SMALLEST, png_filler)


def split_jpeg(data: bytes, size: int) -> tuple[bytes, bytes]:
    """`data` (a JPEG) grown to `size` bytes, as (head, tail) (see the module's text)."""
    return _split(data, size, _JPEG_OPENING, _JPEG_SMALLEST, jpeg_filler)


def pad_png(data: bytes, size: int) -> bytes:
    """`data` (a PNG) grown to `size` bytes."""
    return b"".join(split_png(data, size))


def pad_jpeg(data: bytes, size: int) -> bytes:
    """`data` (a JPEG) grown to `size` bytes."""
    return b"".join(split_jpeg(data, size))


def pad_webp(data: bytes, size: int, width: int, height: int) -> bytes:
    """`data` (a WebP of `width` x `height`) grown to `size` bytes (even)."""
    body = data[12:]
    if body[:4] != b"VP8X":
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + canvas + body
    room = size - 12 - len(body) - 8
    if room < 0:
        return data
    room -= room % 2
    megabytes = -(-room // (1 << 20)) or 1
    body += _WEBP_KIND + struct.pack("<I", room) + filler(megabytes << 20)[:room]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
