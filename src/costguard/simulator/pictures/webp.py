"""WebP: the whole image encoded per seed (VP8 cannot be spliced), at the encoder's fastest.

Lossy VP8 codes every macroblock against its neighbours with one arithmetic coder per
partition, so no part of a file can be replaced; each seed's image is drawn and encoded whole
(about 20-40 ms at 1K, against well under a millisecond for PNG and JPEG).
"""

from __future__ import annotations

import io

from costguard.simulator.pictures.look import picture

QUALITY = 60


def webp_image(seed: str, width: int, height: int) -> bytes:
    """The lossy WebP of `seed` at `width` x `height`."""
    buffer = io.BytesIO()
    picture(seed, width, height).convert("RGB").save(buffer, "WEBP", quality=QUALITY, method=0)
    return buffer.getvalue()
