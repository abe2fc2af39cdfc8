"""Deterministic, real, decodable images for simulated responses.

Two kinds, both the same bytes for the same seed, nothing stored with the simulator's state:

- **Sized** (`image_for(seed, mime, size=(w, h))`, what the faces answer by default): an image
  of exactly the pixel size the request asks for, drawn by `pictures/` (a pattern per size,
  recoloured and labelled with the seed), optionally padded to `pad_to` bytes
  (`pictures/padding.py`). PNG and JPEG are spliced from a per-size base (well under a
  millisecond per image at 1K); WebP is encoded whole. `image_base64` gives the base64 text
  in pieces for responses: a padded PNG's or JPEG's head (signature and most of the padding,
  the same for every image of that size) is encoded once.
- **Tiny** (no `size`): the 32x32 images recorded under `fixtures/images/` (made once with
  Pillow, see `fixtures/README.md`), one picked by a hash of the seed; PNG and JPEG also carry
  the seed's digest in a comment chunk (`tEXt` / `COM`), so two seeds give two files. Scenarios
  with `image_pixels: tiny` answer these; recordings shrink real images to them.

Pillow is imported only when a sized image is drawn.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from functools import cache, lru_cache
from pathlib import Path

from costguard.resources import data_dir
from costguard.simulator.splice import Base64

MIME_SUFFIXES: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/webp": (".webp",),
}
"""The image types the simulator can answer with, and their fixture file suffixes."""

MIN_SIDE, MAX_SIDE = 16, 16383
"""The pixel sizes a sized image may have (16383: WebP's largest side)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SEED_KEYWORD = b"costguard-seed"


def images_dir() -> Path:
    """The folder of the recorded images."""
    return data_dir("fixtures") / "images"


def _check_mime(mime: str) -> tuple[str, ...]:
    suffixes = MIME_SUFFIXES.get(mime)
    if suffixes is None:
        known = ", ".join(MIME_SUFFIXES)
        msg = f"costguard-sim: no images of type {mime!r}; known types: {known}"
        raise ValueError(msg)
    return suffixes


@cache
def _recorded(mime: str) -> tuple[bytes, ...]:
    suffixes = _check_mime(mime)
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


def _tiny(seed: str, mime: str) -> bytes:
    recorded = _recorded(mime)
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()
    data = recorded[int(digest[:8], 16) % len(recorded)]
    if mime == "image/png":
        return _tag_png(data, digest[:16])
    if mime == "image/jpeg":
        return _tag_jpeg(data, digest[:16])
    return data


def _sized(seed: str, mime: str, width: int, height: int) -> bytes:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        msg = f"costguard-sim: cannot draw a {width}x{height} image ({MIN_SIDE}..{MAX_SIDE} px)"
        raise ValueError(msg)
    if mime == "image/png":
        from costguard.simulator.pictures.png import png_image

        return png_image(seed, width, height)
    if mime == "image/jpeg":
        from costguard.simulator.pictures.jpeg import jpeg_image

        return jpeg_image(seed, width, height)
    from costguard.simulator.pictures.webp import webp_image

    return webp_image(seed, width, height)


def _padded(data: bytes, mime: str, size: tuple[int, int], pad_to: int) -> tuple[bytes, bytes]:
    """`data` padded to `pad_to` bytes as (head, tail): a PNG's or JPEG's head is cached and
    shared with other images (`pictures/padding.py`); a WebP is all tail."""
    from costguard.simulator.pictures import padding

    if mime == "image/png":
        return padding.split_png(data, pad_to)
    if mime == "image/jpeg":
        return padding.split_jpeg(data, pad_to)
    return b"", padding.pad_webp(data, pad_to, *size)


@lru_cache(maxsize=16)
def _head_b64(head: bytes) -> bytes:
    """The base64 of a cached head (the same object each time, so its hash is kept)."""
    return base64.b64encode(head)


def _parts(
    seed: str, mime: str, size: tuple[int, int] | None, pad_to: int | None
) -> tuple[bytes, bytes]:
    """The image as (head, tail), the head empty unless padding made a shareable one."""
    _check_mime(mime)
    data = _tiny(seed, mime) if size is None else _sized(seed, mime, *size)
    if pad_to is None:
        return b"", data
    return _padded(data, mime, size or (32, 32), pad_to)


def image_for(
    seed: str,
    mime: str = "image/png",
    *,
    size: tuple[int, int] | None = None,
    pad_to: int | None = None,
) -> bytes:
    """A real image of type `mime`, the same bytes for the same arguments.

    Args:
        seed: Anything that identifies the request (batch id, custom id, image index); it is
            written on a sized image and picks its colours.
        mime: `image/png`, `image/jpeg` or `image/webp`.
        size: (width, height) in pixels; None for a tiny recorded image.
        pad_to: Grow the file to about this many bytes (see `pictures/padding.py`).

    Returns:
        The encoded image.
    """
    return b"".join(_parts(seed, mime, size, pad_to))


def image_base64(
    seed: str,
    mime: str = "image/png",
    *,
    size: tuple[int, int] | None = None,
    pad_to: int | None = None,
) -> Base64:
    """`image_for(...)` base64-encoded, in pieces: a padded PNG's or JPEG's head is encoded
    once and cached (its length is a multiple of 3), only the tail per image."""
    head, tail = _parts(seed, mime, size, pad_to)
    if not head:
        return Base64.of(tail)
    return Base64((_head_b64(head), base64.b64encode(tail)))


class ImageSource:
    """What faces read as `sim.images`: images and their base64 text by seed."""

    def image_for(self, seed: str, mime: str = "image/png") -> bytes:
        """A tiny recorded image (see `costguard.simulator.images.image_for`)."""
        return image_for(seed, mime)

    def b64(self, seed: str, mime: str = "image/png") -> str:
        """The tiny image for `seed`, base64-encoded as both providers put it in JSON."""
        return base64.b64encode(self.image_for(seed, mime)).decode("ascii")

    def render(
        self, seed: str, mime: str, size: tuple[int, int] | None, pad_to: int | None = None
    ) -> bytes:
        """The image a request gets: `size` pixels (None: tiny, through `image_for`), padded
        to `pad_to` bytes when given."""
        if size is None and pad_to is None:
            return self.image_for(seed, mime)
        return image_for(seed, mime, size=size, pad_to=pad_to)

    def render_b64(
        self, seed: str, mime: str, size: tuple[int, int] | None, pad_to: int | None = None
    ) -> str:
        """`render(...)` base64-encoded."""
        return self.render_base64(seed, mime, size, pad_to).text()

    def render_base64(
        self, seed: str, mime: str, size: tuple[int, int] | None, pad_to: int | None = None
    ) -> Base64:
        """`render(...)` base64-encoded in pieces, for `splice.dump_pieces` (what responses
        carry: the text is never copied into a JSON string)."""
        if size is None and pad_to is None:
            return Base64.of(self.image_for(seed, mime))
        return image_base64(seed, mime, size=size, pad_to=pad_to)
