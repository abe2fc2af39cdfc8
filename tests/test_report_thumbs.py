"""Thumbnails for the report's contact sheet: sized, small, decodable, reused, and a reason for
every image that cannot be read; the same in-process and in a pool; bounded memory."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, features

from costguard.report import thumbs
from costguard.report.thumbs import MAX_BYTES, THUMB_SIDE, Thumb, make_thumbnails
from costguard.simulator.images import image_for

PADDED = 1_572_864
"""The simulator's padded size (1.5 MiB), as real 1-20 MB images."""
WEBP = features.check("webp")
SUFFIX = ".webp" if WEBP else ".jpg"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A run's output folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth colour fields and some grain (PNG ~1.5 bytes a pixel)."""
    rnd = random.Random(seed)
    base = Image.frombytes("RGB", (16, 16), rnd.randbytes(16 * 16 * 3))
    base = base.resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(base, grain, 0.12)


def save(out: Path, name: str, image: Image.Image, fmt: str, **params: object) -> str:
    """Save `image` as `out/name` in `fmt`; return `name`."""
    image.save(out / name, fmt, **params)
    return name


def opened(out: Path, thumb: Thumb | str) -> Image.Image:
    """The thumbnail file `thumb` names, decoded (fails the test on a reason)."""
    assert isinstance(thumb, Thumb), thumb
    image = Image.open(out / thumb.path)
    image.load()
    return image


def pixel(out: Path, thumb: Thumb | str, xy: tuple[int, int], mode: str = "RGB") -> tuple[int, ...]:
    """The thumbnail's pixel at `xy` as a tuple of `mode` bands."""
    value = opened(out, thumb).convert(mode).getpixel(xy)
    assert isinstance(value, tuple)
    return value


def grey(out: Path, thumb: Thumb | str, xy: tuple[int, int]) -> int:
    """The thumbnail's grey level at `xy`."""
    value = opened(out, thumb).convert("L").getpixel(xy)
    assert isinstance(value, int)
    return value


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` (8-bit RGB) but carries one empty IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_sizes_fit_the_side_and_keep_the_aspect(out: Path) -> None:
    """A thumbnail's longest side is THUMB_SIDE (a smaller image is not enlarged), its aspect
    that of its image, its file decodes to the size recorded, and the source size is the image's."""
    names = [
        save(out, "square.png", photo(1024, 1024), "PNG"),
        save(out, "wide.jpg", photo(2048, 1152), "JPEG", quality=90),
        save(out, "tall.webp", photo(600, 900), "WEBP"),
        save(out, "small.png", photo(100, 50), "PNG"),
    ]
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    assert list(results) == names
    expected = {
        "square.png": (THUMB_SIDE, THUMB_SIDE),
        "wide.jpg": (THUMB_SIDE, round(THUMB_SIDE * 1152 / 2048)),
        "tall.webp": (round(THUMB_SIDE * 600 / 900), THUMB_SIDE),
        "small.png": (100, 50),
    }
    for name, size in expected.items():
        thumb = results[name]
        assert isinstance(thumb, Thumb)
        assert thumb.path == f"thumbs/{name}{SUFFIX}"
        assert (thumb.width, thumb.height) == size
        assert opened(out, thumb).size == size
        with Image.open(out / name) as image:
            assert (thumb.source_width, thumb.source_height) == image.size


def test_thumbnails_stay_under_the_byte_limit(out: Path) -> None:
    """Every thumbnail is at most MAX_BYTES (30 KB), photos and pure noise alike."""
    noise = Image.frombytes("RGB", (1024, 1024), random.Random(1).randbytes(1024 * 1024 * 3))
    names = [
        save(out, "photo.png", photo(1024, 1024), "PNG"),
        save(out, "noise.png", noise, "PNG"),
        save(out, "noise.jpg", noise, "JPEG", quality=95),
    ]
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    for name in names:
        thumb = results[name]
        assert isinstance(thumb, Thumb)
        assert (out / thumb.path).stat().st_size <= MAX_BYTES
        assert max(opened(out, thumb).size) <= THUMB_SIDE
    assert MAX_BYTES <= 30_000


def test_simulator_padded_images(out: Path) -> None:
    """The simulator's padded 1024x1024 PNG and JPEG (1.5 MiB, padding before the pixels) and
    its WebP make full-size thumbnails under the byte limit."""
    names = []
    for mime, ext in (("image/png", "png"), ("image/jpeg", "jpg"), ("image/webp", "webp")):
        pad = None if ext == "webp" else PADDED
        data = image_for(f"seed-{ext}", mime, size=(1024, 1024), pad_to=pad)
        assert pad is None or len(data) == PADDED
        (out / f"sim.{ext}").write_bytes(data)
        names.append(f"sim.{ext}")
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    for name in names:
        thumb = results[name]
        assert isinstance(thumb, Thumb), thumb
        assert (thumb.width, thumb.height, thumb.source_width) == (THUMB_SIDE, THUMB_SIDE, 1024)
        assert (out / thumb.path).stat().st_size <= MAX_BYTES
        assert opened(out, thumb).size == (THUMB_SIDE, THUMB_SIDE)


def test_alpha_is_kept_only_where_some_pixel_is_transparent(out: Path) -> None:
    """An RGBA image with transparent pixels keeps them (WebP); a fully opaque one, a palette
    PNG and a transparent-palette PNG become RGB, RGB and RGBA thumbnails."""
    if not WEBP:
        pytest.skip("Pillow has no WebP here: thumbnails are JPEG (see the JPEG test)")
    half = Image.new("RGBA", (400, 400), (200, 30, 30, 255))
    half.paste((0, 0, 0, 0), (0, 0, 200, 400))
    palette = photo(400, 300).quantize(64)
    see_through = palette.copy()
    see_through.info["transparency"] = 0
    names = [
        save(out, "half.png", half, "PNG"),
        save(out, "opaque.png", Image.new("RGBA", (400, 400), (10, 200, 10, 255)), "PNG"),
        save(out, "palette.png", palette, "PNG"),
        save(out, "see-through.png", see_through, "PNG", transparency=0),
    ]
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    assert opened(out, results["half.png"]).mode == "RGBA"
    assert pixel(out, results["half.png"], (10, 10), "RGBA")[3] == 0
    assert pixel(out, results["half.png"], (300, 10), "RGBA")[3] == 255
    assert opened(out, results["opaque.png"]).mode == "RGB"
    assert opened(out, results["palette.png"]).mode == "RGB"
    assert opened(out, results["see-through.png"]).mode == "RGBA"


def test_sixteen_bit_grey_cmyk_and_grey_jpeg_become_rgb(out: Path) -> None:
    """A 16-bit grey PNG is scaled to 8 bits (mid-grey stays mid-grey, not clipped to white);
    CMYK and greyscale JPEGs make RGB thumbnails of the right colour."""
    grey16 = Image.new("I;16", (500, 400), 32768)
    names = [
        save(out, "grey16.png", grey16, "PNG"),
        save(out, "cmyk.jpg", Image.new("CMYK", (500, 400), (0, 255, 255, 0)), "JPEG"),
        save(out, "grey.jpg", Image.new("L", (500, 400), 64), "JPEG"),
    ]
    with Image.open(out / "grey16.png") as image:
        assert image.mode.startswith("I")
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    assert all(120 <= value <= 136 for value in pixel(out, results["grey16.png"], (50, 50)))
    red, green, blue = pixel(out, results["cmyk.jpg"], (50, 50))
    assert red > 200
    assert max(green, blue) < 60
    assert all(56 <= value <= 72 for value in pixel(out, results["grey.jpg"], (50, 50)))


def test_exif_orientation_is_applied(out: Path) -> None:
    """A JPEG tagged "rotate 90" (EXIF orientation 6) gets an upright thumbnail and its
    displayed size, as a browser shows the image."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.new("RGB", (800, 400), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 400, 400))  # left half black: on top once turned
    name = save(out, "turned.jpg", image, "JPEG", exif=exif)
    thumb = make_thumbnails(out, [name], out / "thumbs", workers=1)[name]
    assert isinstance(thumb, Thumb)
    assert (thumb.source_width, thumb.source_height) == (400, 800)
    assert (thumb.width, thumb.height) == (THUMB_SIDE // 2, THUMB_SIDE)
    assert grey(out, thumb, (80, 20)) < 30
    assert grey(out, thumb, (80, THUMB_SIDE - 20)) > 225


def test_unreadable_images_get_a_one_line_reason(out: Path) -> None:
    """Missing, truncated, not-an-image, a folder and a name leaving the output folder each
    give a one-line reason (no thumbnail, no exception); the readable image still gets one."""
    data = io.BytesIO()
    photo(512, 512).save(data, "PNG")
    (out / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (out / "cut.jpg").write_bytes(image_for("cut", "image/jpeg", size=(512, 512))[:5000])
    (out / "text.png").write_text("not a picture\n")
    (out / "folder.png").mkdir()
    (out.parent / "outside.png").write_bytes(data.getvalue())
    names = [
        "missing.png",
        "cut.png",
        "cut.jpg",
        "text.png",
        "folder.png",
        "../outside.png",
        "/etc/passwd",
        "nul\0.png",
        save(out, "fine.png", photo(64, 64), "PNG"),
    ]
    results = make_thumbnails(out, names, out / "thumbs", workers=1)
    assert isinstance(results.pop("fine.png"), Thumb)
    reasons = {name: str(reason) for name, reason in results.items()}
    assert reasons["missing.png"].startswith("missing")
    assert reasons["cut.png"].startswith("damaged: ")
    assert reasons["cut.jpg"].startswith("damaged: ")
    assert reasons["text.png"].startswith("not an image")
    assert reasons["folder.png"] == "not a file"
    assert reasons["../outside.png"].startswith("not a file name inside the output folder")
    assert reasons["/etc/passwd"].startswith("not a file name inside the output folder")
    assert reasons["nul\0.png"].startswith("unreadable: ")
    for reason in reasons.values():
        assert "\n" not in reason
        assert 0 < len(reason) <= 200
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == ["fine.png" + SUFFIX, "index.json"]


def test_huge_images_are_refused_without_a_warning(out: Path) -> None:
    """An image claiming more than MAX_PIXELS is refused as too large before any decoding; one
    above Pillow's own bomb limit but within ours is tried (no DecompressionBombWarning, an
    error under this suite's filterwarnings), and Pillow's limit is left as it was."""
    (out / "bomb.png").write_bytes(png_header(20_000, 20_000))
    (out / "big.png").write_bytes(png_header(12_000, 12_000))  # 144 Mpx: over Pillow's 89
    before = Image.MAX_IMAGE_PIXELS
    results = make_thumbnails(out, ["bomb.png", "big.png"], out / "thumbs", workers=1)
    assert before == Image.MAX_IMAGE_PIXELS
    assert str(results["bomb.png"]).startswith("too large: 20000x20000 pixels")
    assert str(results["big.png"]).startswith("damaged: ")  # its pixel data is missing


def test_a_second_call_reuses_thumbnails_without_decoding(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running reuses every unchanged thumbnail and recorded reason: no image is decoded and
    no thumbnail rewritten (same mtime and inode), and the results are the same."""
    names = [save(out, f"{i}.png", photo(300, 200, i), "PNG") for i in range(3)]
    (out / "bad.png").write_text("nope")
    names.append("bad.png")
    first = make_thumbnails(out, names, out / "thumbs", workers=1)
    stats = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (out / "thumbs").iterdir()}

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded an image again")

    monkeypatch.setattr(thumbs, "_thumbnail", no_decoding)
    assert make_thumbnails(out, names, out / "thumbs", workers=1) == first
    again = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (out / "thumbs").iterdir()}
    assert again == stats  # the index is not rewritten either when nothing changed


def test_a_changed_or_deleted_thumbnail_or_image_is_made_again(out: Path) -> None:
    """An image replaced by another (new size, new mtime) gets a new thumbnail; a deleted or
    altered thumbnail is made again; an image that became readable loses its reason."""
    names = [
        save(out, "a.png", photo(400, 400), "PNG"),
        save(out, "b.png", photo(400, 400, 1), "PNG"),
        save(out, "c.png", photo(400, 400, 2), "PNG"),
    ]
    (out / "d.png").write_text("not yet")
    names.append("d.png")
    folder = out / "thumbs"
    first = make_thumbnails(out, names, folder, workers=1)
    assert isinstance(first["d.png"], str)
    save(out, "a.png", photo(800, 400), "PNG")
    mtime = (out / "a.png").stat().st_mtime_ns + 1_000_000_000
    os.utime(out / "a.png", ns=(mtime, mtime))
    (folder / ("b.png" + SUFFIX)).unlink()
    (folder / ("c.png" + SUFFIX)).write_bytes(b"torn")
    save(out, "d.png", photo(100, 100), "PNG")
    second = make_thumbnails(out, names, folder, workers=1)
    assert second["a.png"] == Thumb(f"thumbs/a.png{SUFFIX}", THUMB_SIDE, THUMB_SIDE // 2, 800, 400)
    assert opened(out, second["a.png"]).size == (THUMB_SIDE, THUMB_SIDE // 2)
    assert second["b.png"] == first["b.png"]
    assert opened(out, second["b.png"]).size == (THUMB_SIDE, THUMB_SIDE)
    assert opened(out, second["c.png"]).size == (THUMB_SIDE, THUMB_SIDE)
    assert second["d.png"] == Thumb(f"thumbs/d.png{SUFFIX}", 100, 100, 100, 100)


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b'{"spec": [1, "WEBP"], "entries": []}', b"[]", b'{"entries": 3}'],
)
def test_a_damaged_index_is_rebuilt_not_trusted(out: Path, damage: bytes) -> None:
    """A damaged or foreign index.json is ignored: every thumbnail is made again, the results
    are right, and a sound index is written in its place."""
    names = [save(out, f"{i}.png", photo(200, 100, i), "PNG") for i in range(2)]
    folder = out / "thumbs"
    first = make_thumbnails(out, names, folder, workers=1)
    (folder / "index.json").write_bytes(damage)
    assert make_thumbnails(out, names, folder, workers=1) == first
    entries = json.loads((folder / "index.json").read_bytes())["entries"]
    assert sorted(entries) == names


def test_a_wrong_entry_in_the_index_is_dropped(out: Path) -> None:
    """An index entry of the wrong shape is ignored (the image is made again); the others are
    still reused."""
    names = [save(out, f"{i}.png", photo(200, 100, i), "PNG") for i in range(2)]
    folder = out / "thumbs"
    first = make_thumbnails(out, names, folder, workers=1)
    index = json.loads((folder / "index.json").read_bytes())
    index["entries"]["0.png"] = ["x", 1]
    (folder / "index.json").write_text(json.dumps(index))
    kept = (folder / ("1.png" + SUFFIX)).stat().st_mtime_ns
    assert make_thumbnails(out, names, folder, workers=1) == first
    assert (folder / ("1.png" + SUFFIX)).stat().st_mtime_ns == kept


def test_names_are_streamed_and_repeats_ignored(out: Path) -> None:
    """Names may come from a generator; a repeated name is made once; results come in the order
    the names came; `a.png` and `a.jpg` get two thumbnails; a name in a subfolder gets its
    thumbnail in the same subfolder of the thumbnails folder; progress counts up to the total."""
    (out / "sub").mkdir()
    save(out, "a.png", photo(64, 64), "PNG")
    save(out, "a.jpg", photo(64, 64, 1), "JPEG")
    save(out, "sub/b.png", photo(64, 64, 2), "PNG")
    counts: list[int] = []
    names = (name for name in ["a.png", "a.jpg", "a.png", "sub/b.png"])
    results = make_thumbnails(out, names, out / "thumbs", workers=1, progress=counts.append)
    assert list(results) == ["a.png", "a.jpg", "sub/b.png"]
    assert {r.path for r in results.values() if isinstance(r, Thumb)} == {
        f"thumbs/a.png{SUFFIX}",
        f"thumbs/a.jpg{SUFFIX}",
        f"thumbs/sub/b.png{SUFFIX}",
    }
    assert (out / "thumbs" / "sub" / f"b.png{SUFFIX}").is_file()
    assert counts == sorted(counts)
    assert counts[-1] == 3


def test_nothing_is_written_outside_the_folder(out: Path) -> None:
    """Only the thumbnails folder changes (thumbnails and index.json, no temp files left): the
    images and everything else in the output folder are untouched."""
    names = [save(out, f"{i}.png", photo(100, 100, i), "PNG") for i in range(3)]
    (out / "manifest.jsonl").write_text("{}\n")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")}
    folder = out / "report" / "thumbs"
    make_thumbnails(out, names, folder, workers=1)
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")}
    new = {p.relative_to(out).as_posix() for p in after.keys() - before.keys()}
    assert new == {"report", "report/thumbs", "report/thumbs/index.json"} | {
        f"report/thumbs/{name}{SUFFIX}" for name in names
    }
    assert {p: after[p] for p in before} == before


def test_jpeg_thumbnails_when_pillow_has_no_webp(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without WebP support thumbnails are JPEG (`a.png.jpg`), transparency flattened on white;
    an index made for WebP thumbnails is not reused for them."""
    half = Image.new("RGBA", (400, 400), (0, 0, 0, 255))
    half.paste((0, 0, 0, 0), (0, 0, 200, 400))
    name = save(out, "half.png", half, "PNG")
    folder = out / "thumbs"
    if WEBP:
        make_thumbnails(out, [name], folder, workers=1)
    monkeypatch.setattr(features, "check", lambda feature: feature != "webp")
    thumb = make_thumbnails(out, [name], folder, workers=1)[name]
    assert isinstance(thumb, Thumb)
    assert thumb.path == "thumbs/half.png.jpg"
    image = opened(out, thumb)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert grey(out, thumb, (20, 100)) > 240
    assert grey(out, thumb, (300, 100)) < 15


def test_importing_the_module_does_not_import_pillow() -> None:
    """`costguard.report.thumbs` imports Pillow only when thumbnails are made."""
    code = "import sys, costguard.report.thumbs; print('PIL' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_pool_of_two_gives_what_one_process_gives(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers=2 (enough images for a pool) the results and thumbnail bytes are those of
    workers=1, in the same order; the pool really ran."""
    names = [save(out, f"{i:02}.png", photo(160, 120, i), "PNG") for i in range(thumbs.POOL_MIN)]
    (out / "bad.png").write_text("nope")
    names.insert(5, "bad.png")
    pooled = []
    real = thumbs._pooled

    def spy(*args: Any, **kwargs: Any) -> Any:
        pooled.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(thumbs, "_pooled", spy)
    one = make_thumbnails(out, names, out / "one", workers=1)
    two = make_thumbnails(out, names, out / "two", workers=2)
    assert pooled == [True]
    assert list(one) == list(two) == names
    for name in names:
        a, b = one[name], two[name]
        if isinstance(a, Thumb):
            assert isinstance(b, Thumb)
            assert a._replace(path="") == b._replace(path="")
            assert (out / a.path).read_bytes() == (out / b.path).read_bytes()
        else:
            assert a == b


@pytest.mark.slow
def test_memory_stays_that_of_one_image(out: Path) -> None:
    """Making 150 thumbnails of padded 1.5 MiB PNGs in-process peaks (Python allocations) at a
    small multiple of one image, the same as for 15: nothing is held per image but its result."""
    data = image_for("memory", "image/png", size=(1024, 1024), pad_to=PADDED)
    (out / "0.png").write_bytes(data)
    names = ["0.png"]
    for i in range(1, 150):
        os.link(out / "0.png", out / f"{i}.png")
        names.append(f"{i}.png")
    make_thumbnails(out, names[:1], out / "warm", workers=1)  # imports, caches
    peaks = []
    for count in (15, 150):
        tracemalloc.start()
        try:
            make_thumbnails(out, names[:count], out / f"thumbs-{count}", workers=1)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 3 * PADDED
    assert peaks[1] < peaks[0] + 1024 * 1024
