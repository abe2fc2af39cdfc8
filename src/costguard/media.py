"""Input images: which types and sizes each provider takes, and the type a file really is.

A file's type comes from its first bytes (its signature), never from its name: a JPEG saved as
`photo.png`, or `/etc/passwd` named in a queue, is found out before anything is priced or sent.
Checks read at most a few dozen bytes of a file, so a 20 GB file named by mistake costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from costguard.models import Provider

MB = 1024 * 1024
INPUT_IMAGE_LIMITS: dict[Provider, int] = {"openai": 50 * MB, "gemini": 15 * MB}
"""The largest input image each provider takes, in bytes.

OpenAI's image edits take png, webp or jpg files under 50 MB each. Gemini takes images inline,
in requests of at most 20 MB, and base64 makes an image a third larger: about 15 MB of image per
request.
"""

ACCEPTED_TYPES: dict[Provider, tuple[str, ...]] = {
    "openai": ("image/png", "image/jpeg", "image/webp"),
    "gemini": ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"),
}
"""The image types each provider's image models take as input (its docs' lists)."""

HEAD_BYTES = 32
"""How much of a file `sniff` needs."""

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}
_ALIASES = {"image/jpg": "image/jpeg"}
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(head: bytes) -> str | None:
    """The image type whose signature `head` starts with, or None when it is no image type."""
    for signature, found in _SIGNATURES:
        if head.startswith(signature):
            return found
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        if brand in _HEIF_BRANDS:
            return "image/heif"
    return None


def sniff_file(path: Path) -> str | None:
    """The image type of the file at `path`, from its first bytes."""
    with path.open("rb") as handle:
        return sniff(handle.read(HEAD_BYTES))


def type_problem(found: str | None, provider: Provider) -> str | None:
    """Why an input of type `found` cannot go to `provider`, or None when it can."""
    accepted = ACCEPTED_TYPES[provider]
    found = _ALIASES.get(found or "", found)
    if found in accepted:
        return None
    image = found is not None and found.startswith("image/") and "/" not in found[6:]
    what = f"a {found[6:].upper()} image" if image and found else "not an image"
    names = ", ".join(t.removeprefix("image/").upper() for t in accepted)
    return f"is {what}; {provider} takes {names}"


def size_problem(size: int, provider: Provider) -> str | None:
    """Why an input image of `size` bytes cannot go to `provider`, or None when it can."""
    limit = INPUT_IMAGE_LIMITS[provider]
    if size <= limit:
        return None
    return f"is {size / MB:,.1f} MB; {provider} takes at most {limit // MB} MB per image"


def file_problem(path: Path, provider: Provider) -> str | None:
    """Why the local file at `path` cannot be sent to `provider` as an input image, or None.

    Reads only the file's first bytes: its size comes from the file system.
    """
    if path.is_dir():
        return f"input image {path} is a folder, not an image"
    if not path.is_file():
        return f"input image not found: {path}"
    try:
        size = path.stat().st_size
        found = sniff_file(path)
    except OSError as exc:
        return f"input image cannot be read: {path} ({exc.strerror or exc})"
    problem = size_problem(size, provider) or type_problem(found, provider)
    return f"input image {path} {problem}" if problem else None


def base64_problem(data: str, declared: str | None, provider: Provider) -> str | None:
    """Why base64 image `data` (declared as type `declared`) cannot go to `provider`, or None.

    Checks the alphabet over the whole string (at C speed) but decodes only its first bytes.
    """
    if not _BASE64.fullmatch(data):
        return "is not base64"
    size = len(data.rstrip("=")) * 3 // 4
    try:
        head = base64.b64decode(_padded(data[:64].replace("-", "+").replace("_", "/")))
    except (binascii.Error, ValueError):
        return "is not base64"
    found = sniff(head)
    problem = size_problem(size, provider) or type_problem(found, provider)
    if problem:
        return problem
    if declared is not None and _ALIASES.get(declared, declared) != found:
        return f"is declared {declared} but is {found}"
    return None


def _padded(text: str) -> str:
    text = text.rstrip("=")
    return text + "=" * (-len(text) % 4)
