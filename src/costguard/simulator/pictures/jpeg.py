"""JPEG: the pattern encoded once per size with a restart marker after every MCU row, and each
seed's banner encoded alone and spliced in, row for row.

A restart marker resets the entropy coder (DC predictions, bit buffer), so the scan data
between two markers is one MCU row that decodes on its own. Encoded with the same quality,
subsampling (4:2:0, MCU rows of 16 pixels) and standard Huffman tables, the banner's rows
replace the base's at the banner's place; the markers between rows keep their numbers
(RST0..RST7 in turn). The base uses a neutral palette; the banner carries the seed's colours.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from costguard.simulator.pictures.look import MCU, banner, banner_for, palette, pattern

if TYPE_CHECKING:
    from PIL import Image

QUALITY = 75
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
_SOS = b"\xff\xda"
_EOI = b"\xff\xd9"


def _encode(image: Image.Image) -> tuple[bytes, list[bytes]]:
    """The JPEG's bytes up to its scan data, and the scan's MCU rows."""
    buffer = io.BytesIO()
    image.convert("RGB").save(
        buffer, "JPEG", quality=QUALITY, subsampling=2, optimize=False, restart_marker_rows=1
    )
    data = buffer.getvalue()
    sos = data.index(_SOS)
    scan_start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    if not data.endswith(_EOI):
        msg = "costguard-sim: the JPEG encoder wrote no end-of-image marker"
        raise ValueError(msg)
    return data[:scan_start], _RESTART.split(data[scan_start:-2])


@dataclass(frozen=True, slots=True)
class _Base:
    head: bytes
    rows: list[bytes]


@lru_cache(maxsize=32)
def _base(width: int, height: int) -> _Base:
    from PIL import Image

    image = Image.frombytes("P", (width, height), pattern(width, height))
    image.putpalette(palette(None))
    head, rows = _encode(image)
    if len(rows) != -(-height // MCU):
        msg = f"costguard-sim: expected one restart interval per MCU row, got {len(rows)}"
        raise ValueError(msg)
    return _Base(head, rows)


def jpeg_image(seed: str, width: int, height: int) -> bytes:
    """The JPEG of `seed` at `width` x `height` (baseline, 4:2:0)."""
    base = _base(width, height)
    layout = banner_for(width, height)
    _, stamped = _encode(banner(seed, layout))
    first = layout.top // MCU
    rows = [*base.rows[:first], *stamped, *base.rows[first + len(stamped) :]]
    parts = [base.head]
    for number, row in enumerate(rows):
        if number:
            parts.append(bytes((0xFF, 0xD0 + (number - 1) % 8)))
        parts.append(row)
    parts.append(_EOI)
    return b"".join(parts)
