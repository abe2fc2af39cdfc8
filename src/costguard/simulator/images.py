"""Deterministic, real, decodable images for simulated responses.

The simulator never draws pixels: it replays the tiny images recorded under
`fixtures/images/` (made once with Pillow, see `fixtures/README.md`), picking one by a hash of
the seed. PNG and JPEG images also carry the seed's digest in a comment chunk (`tEXt` /
`COM`), so two seeds give two different files that both still decode; WebP files are
replayed as recorded. Nothing here is stored with the simulator's state: the same seed
always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from functools import cache
from pathlib import Path

from costguard.resources import data_dir

MIME_SUFFIXES: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/webp": (".webp",),
}
"""The image types the simulator can answer with, and their fixture file suffixes."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SEED_KEYWORD = b"costguard-seed"


def images_dir() -> Path:
    """The folder of the recorded images."""
    return data_dir("fixtures") / "images"


@cache
def _recorded(mime: str) -> tuple[bytes, ...]:
    suffixes = MIME_SUFFIXES.get(mime)
    if suffixes is None:
        known = ", ".join(MIME_SUFFIXES)
        msg = f"costguard-sim: no recorded images of type {mime!r}; known types: {known}"
        raise ValueError(msg)
    paths = sorted(p for p in images_dir().iterdir() if p.suffix.lower() in suffixes)
    if not paths:
        msg = f"costguard-sim: {images_dir()} holds no {mime} images"
        raise FileNotFoundError(msg)
    return tuple(p.read_bytes() for p in paths)


def _tag_png(data: bytes, digest: str) -> bytes:
    """Insert a `tEXt` chunk right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    payload = _SEED_KEYWORD + b"\x00" + digest.encode("ascii")
    chunk_type = b"tEXt"
    crc = zlib.crc32(chunk_type + payload) & 0xFFFFFFFF
    chunk = struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)
    head = len(_PNG_SIGNATURE) + 25
    return data[:head] + chunk + data[head:]


def _tag_jpeg(data: bytes, digest: str) -> bytes:
    """Insert a COM segment right after the SOI marker."""
    payload = _SEED_KEYWORD + b" " + digest.encode("ascii")
    segment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def image_for(seed: str, mime: str = "image/png") -> bytes:
    """A small real image of type `mime`, the same bytes for the same seed.

    Args:
        seed: Anything that identifies the request (batch id, custom id, image index).
        mime: `image/png`, `image/jpeg` or `image/webp`.

    Returns:
        The encoded image.
    """
    recorded = _recorded(mime)
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()
    data = recorded[int(digest[:8], 16) % len(recorded)]
    if mime == "image/png":
        return _tag_png(data, digest[:16])
    if mime == "image/jpeg":
        return _tag_jpeg(data, digest[:16])
    return data


class ImageSource:
    """What faces read as `sim.images`: images and their base64 text by seed."""

    def image_for(self, seed: str, mime: str = "image/png") -> bytes:
        """See `costguard.simulator.images.image_for`."""
        return image_for(seed, mime)

    def b64(self, seed: str, mime: str = "image/png") -> str:
        """The image for `seed`, base64-encoded as both providers put it in JSON."""
        return base64.b64encode(image_for(seed, mime)).decode("ascii")
