"""Thumbnails for the report's contact sheet: one small JPEG (WebP where transparent) per image.

A run's images are large (1-20 MB, 1024 to 4096 pixels a side) and there may be 10,000 of
them, so the page shows thumbnails instead: `make_thumbnails` streams through the names one
image at a time (memory stays that of one image per process, whatever the count), in a pool
of processes when there is enough work, and writes `<folder>/<name>.jpg` (`a.png` ->
`a.png.jpg`, so `a.png` and `a.jpg` never clash; `.webp` for an image with transparent pixels,
when Pillow has WebP, so the page shows them as such), each at most `THUMB_SIDE` pixels a side
and `MAX_BYTES` bytes, written to a temp name and renamed (a crash never leaves a torn one).

Fast: a JPEG is decoded already scaled down by its decoder (`Image.draft`, 1/2 to 1/8), other
images are shrunk by box-averaging by a whole factor (`reducing_gap`) before the one resample
(256 pixels divides the 1024, 2048 and 4096 pixel squares providers return, so for them that
is all it takes); JPEG encodes in about half WebP's time. Decoding the source dominates: a 1.5 MB
photo-like PNG takes ~20 ms to inflate, which no option changes; processes are the only lever.

Cheap to redo: `<folder>/index.json` records, per image, its file size and mtime and those of
its thumbnail (or why it could not be read); an entry whose files are unchanged is reused
without opening either. The index is a cache: a damaged one, or one for other settings, is
ignored and rewritten; it is rewritten atomically at the end of each call.

Pillow is imported only inside functions (`import costguard` stays cheap). The pool uses
`spawn`, so it works the same from the console script, `python -m costguard`, pytest or a
threaded program (no fork of a process holding threads and locks); a script of one's own that
makes a pool must start with `if __name__ == "__main__":`, as `spawn` imports it again.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import itertools
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from PIL import Image

THUMB_SIDE = 256
"""Longest side of a thumbnail in pixels: the page's 168 CSS-pixel tiles at 1.5x, and a whole
factor of the 1024-4096 pixel squares providers return (an exact, fast reduction)."""
MAX_BYTES = 30_000
"""A thumbnail's largest size in bytes; an image that encodes larger is encoded again lower."""
MAX_PIXELS = 16384 * 16384
"""The largest image decoded (width x height); larger is refused as a decompression bomb."""
QUALITIES = (80, 60, 40, 25, 10)
"""Encoder qualities tried in turn until a thumbnail fits `MAX_BYTES` (the first, nearly always)."""
INDEX = "index.json"
"""The reuse index's file name in the thumbnails folder (thumbnails end in .jpg or .webp)."""
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
"""The image types opened (what providers return); anything else is `not an image`."""
CHUNK = 8
"""Images per task sent to a worker process (a few hundred milliseconds of work)."""
POOL_MIN = 32
"""Fewer images than this to make are made in-process: starting processes costs more."""
MAX_WORKERS = 8
"""Processes used by default at most: more gain little (reading files) and each holds an image
and Pillow (tens of MB); a container may see far more CPUs than it may use."""
_INDEX_VERSION = 3
"""Bump when thumbnails are made differently (qualities, filter): older indexes are then ignored."""


class Thumb(NamedTuple):
    """A thumbnail made (or reused) for one image."""

    path: str
    """Relative to the output folder, POSIX (`thumbs/sku-1.png.jpg`)."""
    width: int
    height: int
    source_width: int
    """The full image's pixel size (as displayed: EXIF rotation applied)."""
    source_height: int


class _Spec(NamedTuple):
    """What a thumbnail is made as; an index made for another spec is not reused."""

    webp: bool  # images with transparent pixels as WebP (else flattened into a JPEG)
    side: int


SUFFIXES = {"JPEG": ".jpg", "WEBP": ".webp"}
"""A thumbnail's file suffix by its format."""

_Entry = list[Any]
"""An index entry: `[w, h, sw, sh, size, mtime_ns, thumb_size, thumb_mtime_ns, suffix]` for a
thumbnail,
`[reason, size, mtime_ns]` for an image that could not be read (its file's size and mtime)."""
_Done = tuple[str, "Thumb | str", "_Entry | None"]
"""What making one image's thumbnail answers: name, `Thumb` (or reason), index entry if any."""


def make_thumbnails(
    out: Path,
    names: Iterable[str],
    folder: Path,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Thumb | str]:
    """Make (or reuse) a thumbnail in `folder` for each image `out/<name>`.

    Args:
        out: The run's output folder; `Thumb.path` is relative to it.
        names: Image file names relative to `out`, read lazily (any count; repeats ignored).
        folder: Where thumbnails go (created if missing); nothing is written elsewhere.
        workers: Processes (None: the CPUs this process may use, at most `MAX_WORKERS`; 1:
            in-process, no pool).
            Fewer than `POOL_MIN` images to make are made in-process whatever it says.
        progress: Called with the number of images done so far, now and then and at the end.

    Returns:
        name -> its `Thumb`, or a one-line reason when the image cannot be read (missing,
        damaged, not an image, too large), in the order the names came.

    Raises:
        OSError: A thumbnail or the index could not be written (disk full, no permission).
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = _spec()
    prefix = Path(os.path.relpath(folder.absolute(), out.absolute())).as_posix() + "/"
    prefix = "" if prefix == "./" else prefix
    index = _load_index(folder, spec)
    results: dict[str, Thumb | str] = {}
    done = 0
    changed = False

    def record(item: _Done) -> None:
        nonlocal done, changed
        name, result, entry = item
        results[name] = result
        if index.get(name) != entry:
            changed = True
            if entry is None:
                del index[name]
            else:
                index[name] = entry
        done += 1
        if progress is not None and done % 100 == 0:
            progress(done)

    def to_make() -> Iterator[str]:
        """The names whose thumbnail must be made; reused ones are recorded on the way."""
        for name in names:
            if name in started:
                continue
            started.add(name)
            order.append(name)
            reused = _reuse(out, name, folder, prefix, index.get(name))
            if reused is None:
                yield name
            else:
                record((name, reused, index[name]))

    started: set[str] = set()
    order: list[str] = []
    try:
        todo = to_make()
        first = list(itertools.islice(todo, POOL_MIN))
        count = _workers(workers)
        if count <= 1 or len(first) < POOL_MIN:
            for name in itertools.chain(first, todo):
                record(_one(str(out), name, str(folder), prefix, spec))
        else:
            for item in _pooled(itertools.chain(first, todo), out, folder, prefix, spec, count):
                record(item)
    finally:
        if changed:
            _save_index(folder, spec, index)
    if progress is not None:
        progress(done)
    return {name: results[name] for name in order}


def _workers(workers: int | None) -> int:
    """`workers`, or the CPUs this process may use, at most `MAX_WORKERS`."""
    if workers is not None:
        return max(1, workers)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_WORKERS)


def _pooled(
    names: Iterator[str], out: Path, folder: Path, prefix: str, spec: _Spec, count: int
) -> Iterator[_Done]:
    """`_one` for each name, `CHUNK` names per task, at most a few tasks per process queued."""
    context = multiprocessing.get_context("spawn")
    chunks = iter(lambda: list(itertools.islice(names, CHUNK)), [])
    with cf.ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        running: set[cf.Future[list[_Done]]] = set()
        try:
            for chunk in chunks:
                running.add(pool.submit(_many, str(out), chunk, str(folder), prefix, spec))
                if len(running) >= 3 * count:
                    finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for future in finished:
                        yield from future.result()
            for future in cf.as_completed(running):
                yield from future.result()
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _many(out: str, names: list[str], folder: str, prefix: str, spec: _Spec) -> list[_Done]:
    """`_one` for each of `names` (what a worker process runs)."""
    return [_one(out, name, folder, prefix, spec) for name in names]


def _one(out: str, name: str, folder: str, prefix: str, spec: _Spec) -> _Done:
    """Make the thumbnail of `out/name` in `folder`: (name, Thumb or reason, index entry).

    A thumbnail that cannot be written raises (OSError); an image that cannot be read is a
    reason. The entry records the image's size and mtime as they were before it was read, so a
    change while it was read is caught next time.
    """
    if not _inside(name):
        return name, f"not a file name inside the output folder: {name!r}", None
    source = Path(out, name)
    try:
        stat = source.stat()
    except FileNotFoundError:
        return name, "missing: the image file is not there", None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        return name, _reason("unreadable", exc), None
    if not S_ISREG(stat.st_mode):
        return name, "not a file", None
    made = _thumbnail(source, spec)
    if isinstance(made, str):
        return name, made, [made, stat.st_size, stat.st_mtime_ns]
    data, suffix, (width, height), (source_width, source_height) = made
    target = Path(folder, name + suffix)
    _write(target, data)
    written = target.stat()
    thumb = Thumb(f"{prefix}{name}{suffix}", width, height, source_width, source_height)
    entry: _Entry = [
        *thumb[1:],
        stat.st_size,
        stat.st_mtime_ns,
        written.st_size,
        written.st_mtime_ns,
        suffix,
    ]
    return name, thumb, entry


def _inside(name: str) -> bool:
    """Whether `name` is a relative path that stays inside a folder, in POSIX and native terms."""
    for path in (PurePosixPath(name), Path(name)):
        if not path.parts or path.anchor or ".." in path.parts:
            return False
    return True


def _reason(what: str, exc: BaseException) -> str:
    """A one-line reason: `what: message`, the message on one line and not too long."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{what}: {message}"


def _thumbnail(
    source: Path, spec: _Spec
) -> tuple[bytes, str, tuple[int, int], tuple[int, int]] | str:
    """The encoded thumbnail of `source`, its suffix, its size and the source's size; or why it
    cannot be made."""
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # checked below against MAX_PIXELS, before anything is decoded
    try:
        with Image.open(source, formats=FORMATS) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return f"too large: {width}x{height} pixels (at most {MAX_PIXELS:,} decoded)"
            size = _fit(width, height, spec.side)
            image.draft("RGB", size)  # JPEG: decode at 1/2..1/8 scale, still at least `size`
            image.load()
            small = _shrink(image, size)
            orientation = image.getexif().get(0x0112, 1)
            icc = image.info.get("icc_profile")
    except UnidentifiedImageError:
        return "not an image (not a PNG, JPEG, WebP or GIF file)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _reason("too large", exc)
    except Exception as exc:  # noqa: BLE001 - a damaged file may fail anywhere in a decoder
        return _reason("damaged", exc)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    small = _orient(small, orientation)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    data, suffix = _encode(small, spec, icc if isinstance(icc, bytes) else None)
    return data, suffix, small.size, (width, height)


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    """`width` x `height` scaled to fit a `side` square, aspect kept (never enlarged)."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` as RGB or RGBA (alpha kept only where some pixel is not opaque), at `size`."""
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit grey: scale, don't clip
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    wanted = "RGBA" if has_alpha else "RGB"
    if image.mode != wanted:
        image = image.convert(wanted)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    if wanted == "RGBA" and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")
    return image


def _orient(image: Image.Image, orientation: Any) -> Image.Image:
    """`image` turned as its EXIF orientation tag says (what browsers show)."""
    from PIL import Image

    turns = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
    turn = turns.get(orientation) if isinstance(orientation, int) else None
    return image if turn is None else image.transpose(turn)


def _encode(image: Image.Image, spec: _Spec, icc: bytes | None) -> tuple[bytes, str]:
    """`image` encoded (JPEG; WebP when it has transparent pixels and Pillow has WebP) at the
    highest of `QUALITIES` that fits `MAX_BYTES`, halved in size when even the lowest does not
    (noise); and the file suffix of its format."""
    from PIL import Image

    kind = "WEBP" if image.mode == "RGBA" and spec.webp else "JPEG"
    if kind == "JPEG" and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    # JPEG at 4:4:4: fine colour detail (thin stripes, text) keeps its colour at this size
    extra: dict[str, Any] = {"method": 0} if kind == "WEBP" else {"subsampling": 0}
    if icc is not None and len(icc) <= 4096:
        extra["icc_profile"] = icc
    while True:
        for quality in QUALITIES:
            buffer = io.BytesIO()
            image.save(buffer, kind, quality=quality, **extra)
            if buffer.tell() <= MAX_BYTES:
                return buffer.getvalue(), SUFFIXES[kind]
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)))


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp name and a rename (no fsync: a cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".thumbs-{os.getpid()}-{threading.get_ident()}.part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _spec() -> _Spec:
    from PIL import features

    return _Spec(bool(features.check("webp")), THUMB_SIDE)


def _reuse(
    out: Path, name: str, folder: Path, prefix: str, entry: _Entry | None
) -> Thumb | str | None:
    """The recorded result for `name` when its image (and thumbnail) are unchanged, else None."""
    if entry is None:
        return None
    try:
        stat = Path(out, name).stat()
        if len(entry) == 3:
            reason, size, mtime = entry
            return str(reason) if (stat.st_size, stat.st_mtime_ns) == (size, mtime) else None
        width, height, source_width, source_height, size, mtime, thumb_size, thumb_mtime, suffix = (
            entry
        )
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
            return None
        written = Path(folder, name + suffix).stat()
    except (OSError, ValueError):
        return None
    if (written.st_size, written.st_mtime_ns) != (thumb_size, thumb_mtime):
        return None
    path = f"{prefix}{name}{suffix}"
    return Thumb(path, width, height, source_width, source_height)


def _load_index(folder: Path, spec: _Spec) -> dict[str, _Entry]:
    """The index's well-formed entries; none when it is missing, damaged or for another spec."""
    try:
        data = json.loads(Path(folder, INDEX).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("spec") != [_INDEX_VERSION, *spec]:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {name: entry for name, entry in entries.items() if _well_formed(entry)}


def _well_formed(entry: Any) -> bool:
    if not isinstance(entry, list):
        return False
    if len(entry) == 3:
        return isinstance(entry[0], str) and all(_is_int(value) for value in entry[1:])
    return (
        len(entry) == 9
        and all(_is_int(value) for value in entry[:8])
        and entry[8] in SUFFIXES.values()
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _save_index(folder: Path, spec: _Spec, entries: dict[str, _Entry]) -> None:
    """Write the index through a temp name and a rename."""
    data = {"spec": [_INDEX_VERSION, *spec], "entries": entries}
    _write(Path(folder, INDEX), json.dumps(data, separators=(",", ":")).encode())
