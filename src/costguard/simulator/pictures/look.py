"""What a simulated image looks like: a stripe pattern per pixel size, recoloured and labelled
per seed.

The pattern is palette indices: diagonal stripes (indices `FIRST_STRIPE`..) with a sparse,
fixed grain (the odd indices), so it compresses like a photo would not but is still cheap to
draw once per size. Each seed gets its own palette (a hue from the seed's digest) and a banner
across the image, `Banner.top` to `Banner.bottom`, with the seed written on it in the palette's
ink on its paper. The banner's rows are multiples of 16, so JPEG can splice them in whole MCU
rows.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image, ImageFont

PAPER, INK, FIRST_STRIPE = 0, 1, 2
STRIPES = 12
"""Stripe shades; each has a plain and a grain index, so the palette holds 2 + 2 * 12 colours."""
MCU = 16
"""Banner rows start and end on multiples of this (JPEG 4:2:0 MCU height)."""
LABEL_MAX = 80
"""Longer seeds are cut to this many characters on the banner (sync seeds carry the prompt)."""
GRAIN_ONE_IN = 64
"""About one pixel in this many carries grain."""
_GRAIN_TABLE = bytes(int(b < 256 // GRAIN_ONE_IN) for b in range(256))


@dataclass(frozen=True, slots=True)
class Banner:
    """Where the seed's banner sits in a `width` x `height` image."""

    width: int
    height: int
    top: int
    bottom: int
    font_px: int


@cache
def banner_for(width: int, height: int) -> Banner:
    """The banner of an image of this size: about a sixteenth of the height, near the top."""
    rows = max(MCU, min(height // MCU * MCU, (min(width, height) // 16 + MCU - 1) // MCU * MCU))
    top = min(MCU * max(1, height // (4 * MCU)), (height - rows) // MCU * MCU)
    return Banner(width, height, top, top + rows, max(8, rows * 3 // 4))


@lru_cache(maxsize=4)
def pattern(width: int, height: int) -> bytes:
    """The image's palette indices, row after row (`width` * `height` bytes)."""
    band = max(8, min(width, height) // 24)
    diagonal = bytes(FIRST_STRIPE + 2 * ((k // band) % STRIPES) for k in range(width + height))
    stripes = b"".join(diagonal[y : y + width] for y in range(height))
    noise = random.Random(f"{width}x{height}").randbytes(width * height)  # noqa: S311 - texture
    grain = noise.translate(_GRAIN_TABLE)
    mixed = int.from_bytes(stripes, "little") | int.from_bytes(grain, "little")
    return mixed.to_bytes(width * height, "little")


def digest(seed: str) -> bytes:
    """The seed's SHA-256: what colours and tags derive from."""
    return hashlib.sha256(seed.encode("utf-8")).digest()


@lru_cache(maxsize=8)
def palette(seed: str | None) -> bytes:
    """RGB triplets for every index: the seed's hues, or a neutral grey one for None (cached:
    an image asks twice, for its banner and its `PLTE`)."""
    if seed is None:
        hue, saturation = 0.0, 0.0
    else:
        raw = digest(seed)
        hue, saturation = raw[0] / 256, 0.45 + raw[1] / 1024
    second = (hue + 0.5) % 1.0
    colours = [colorsys.hls_to_rgb(hue, 0.93, saturation), colorsys.hls_to_rgb(hue, 0.12, 0.5)]
    for shade in range(STRIPES):
        stripe_hue = hue if shade % 2 == 0 else second
        light = 0.3 + 0.45 * shade / STRIPES
        colours.append(colorsys.hls_to_rgb(stripe_hue, light, saturation))
        colours.append(colorsys.hls_to_rgb(stripe_hue, light + 0.12, saturation))
    return bytes(round(channel * 255) for rgb in colours for channel in rgb)


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=px)


def banner(seed: str, layout: Banner) -> Image.Image:
    """The banner rows of `seed`'s image: palette indices `PAPER` with the seed in `INK`."""
    from PIL import Image, ImageDraw

    label = seed if len(seed) <= LABEL_MAX else seed[: LABEL_MAX - 3] + "..."
    rows = layout.bottom - layout.top
    strip = Image.new("P", (layout.width, rows), PAPER)
    strip.putpalette(palette(seed))
    fits = int(layout.width / (0.6 * max(len(label), 1) + 2))
    px = max(6, min(layout.font_px, fits))
    ImageDraw.Draw(strip).text((px // 2, (rows - px) // 2), label, fill=INK, font=_font(px))
    return strip


def picture(seed: str, width: int, height: int) -> Image.Image:
    """The whole image of `seed` (for encoders that cannot splice): pattern, palette, banner."""
    from PIL import Image

    image = Image.frombytes("P", (width, height), pattern(width, height))
    image.putpalette(palette(seed))
    layout = banner_for(width, height)
    image.paste(banner(seed, layout), (0, layout.top))
    return image
