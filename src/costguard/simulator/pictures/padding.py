"""Grow an encoded image to a byte size with data every decoder skips.

- PNG: private ancillary chunks `cgPd` before `IEND` (a decoder ignores unknown ancillary
  chunks); one of a whole number of 64 KiB blocks (cached, so its CRC is computed once per
  length) and one for the rest.
- JPEG: comment segments (`COM`, at most 65,533 bytes each) right after the start marker.
- WebP: an unknown `CGPD` chunk after the image, the file turned into the extended format
  (`VP8X`) first where it is not, since only that format allows unknown chunks.

The filler is a fixed pseudo-random block (not zeros, so nothing downstream can squeeze it
away). The result is exactly `size` bytes when the image is smaller than that by at least the
smallest chunk's overhead (12 bytes PNG, 4 JPEG, 8 WebP; WebP files are even, so an odd `size`
ends one byte short); a larger image is returned unchanged.
"""

from __future__ import annotations

import random
import struct
from functools import lru_cache

from costguard.simulator.pictures.png import chunk

_BLOCK = 64 * 1024
_PNG_KIND = b"cgPd"
_COM_MAX = 65533
_WEBP_KIND = b"CGPD"


@lru_cache(maxsize=4)
def filler(length: int) -> bytes:
    """`length` fixed pseudo-random bytes."""
    return random.Random(length).randbytes(length)  # noqa: S311 - padding, not a secret


@lru_cache(maxsize=8)
def _png_blocks(length: int) -> bytes:
    return chunk(_PNG_KIND, filler(length))


def pad_png(data: bytes, size: int) -> bytes:
    """`data` (a PNG) grown to `size` bytes."""
    room = size - len(data)
    if room < 12:
        return data
    parts = []
    if room >= _BLOCK + 24:
        blocks = (room - 24) // _BLOCK * _BLOCK
        parts.append(_png_blocks(blocks - 12))
        room -= blocks
    parts.append(chunk(_PNG_KIND, filler(_BLOCK + 24)[: room - 12]))
    return b"".join((data[:-12], *parts, data[-12:]))


def pad_jpeg(data: bytes, size: int) -> bytes:
    """`data` (a JPEG) grown to `size` bytes."""
    room = size - len(data)
    if room < 4:
        return data
    count = -(-room // (_COM_MAX + 4))
    payload = room - 4 * count
    block = filler(_COM_MAX)
    segments = []
    for index in range(count):
        length = payload // count + (1 if index < payload % count else 0)
        segments.append(b"\xff\xfe" + struct.pack(">H", length + 2) + block[:length])
    return b"".join((data[:2], *segments, data[2:]))


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
