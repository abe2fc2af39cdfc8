"""Result lines with images' base64 spliced in: the same bytes `json.dumps` gives, the same
images, and a padded image's cached head shared between images."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from openai import OpenAI
from PIL import Image

from costguard.simulator import Simulator
from costguard.simulator.core import SimResponse
from costguard.simulator.images import image_base64, image_for
from costguard.simulator.mock import mock_transport
from costguard.simulator.scenario import load_scenario
from costguard.simulator.splice import _MARKER, Base64, chunked, dump, dump_pieces

MIB = 1024 * 1024
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def plain(obj: Any) -> Any:
    """`obj` with every `Base64` value replaced by its text, as `json.dumps` takes it."""
    if isinstance(obj, Base64):
        return obj.text()
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [plain(value) for value in obj]
    return obj


def dumped(obj: Any) -> bytes:
    return json.dumps(plain(obj), separators=(",", ":")).encode()


def gemini_line(data: Base64) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": "image/png", "data": data}}
    content = {"parts": [{"text": "Here it is: ünïcode"}, part], "role": "model"}
    return {"key": "k-1", "response": {"candidates": [{"content": content, "index": 0}]}}


def openai_line(images: list[Base64]) -> dict[str, Any]:
    body = {"created": 1, "data": [{"b64_json": b} for b in images], "size": "1024x1024"}
    response = {"status_code": 200, "request_id": "req_1", "body": body}
    return {"id": "batch_req_1", "custom_id": 'a "quoted" id', "response": response, "error": None}


def test_a_spliced_realistic_line_is_what_json_dumps_gives_and_its_image_decodes() -> None:
    """A Gemini result line of a 1K PNG padded to 1.5 MiB: the spliced pieces join to the bytes
    json.dumps writes for the same object, parse as JSON, and carry the very image."""
    data = image_base64("batches/abc:0", size=(1024, 1024), pad_to=1572864)
    assert len(data.pieces) == 2  # the cached head, then this image's tail
    line = gemini_line(data)
    joined = b"".join(dump_pieces(line))
    assert joined == dumped(line)
    parsed = json.loads(joined)
    assert parsed == plain(line)
    raw = base64.b64decode(
        parsed["response"]["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    )
    assert raw == image_for("batches/abc:0", size=(1024, 1024), pad_to=1572864)
    assert len(raw) == 1572864
    image = Image.open(io.BytesIO(raw))
    image.load()
    assert (image.size, image.format) == ((1024, 1024), "PNG")


@pytest.mark.parametrize(
    "obj",
    [
        {"plain": [1, 2.5, None, True, "x"]},
        openai_line([]),
        openai_line([Base64.of(b"one"), Base64.of(b"")]),
        openai_line(
            [image_base64(f"s{i}", "image/jpeg", size=(64, 64), pad_to=20_000) for i in range(3)]
        ),
        [Base64.of(bytes(range(256))), {"n": Base64.of(b"xy")}],
        Base64.of(b"alone"),
    ],
)
def test_dump_pieces_equals_json_dumps(obj: Any) -> None:
    """Any object, any number of Base64 values anywhere (none, several, at the top): the same
    bytes as json.dumps of the plain object; without Base64 values, one piece."""
    pieces = dump_pieces(obj)
    assert b"".join(pieces) == dumped(obj) == dump(obj)
    assert json.loads(b"".join(pieces)) == plain(obj)


def test_data_holding_the_placeholder_is_dumped_right_all_the_same() -> None:
    """A string that happens to hold the placeholder cannot misplace an image: the object is
    then dumped whole."""
    obj = {"prompt": _MARKER, "image": Base64.of(b"\x89PNG...")}
    assert b"".join(dump_pieces(obj)) == dumped(obj)


def test_unknown_types_are_still_refused() -> None:
    """Only Base64 values are spliced; anything else json.dumps refuses is refused."""
    with pytest.raises(TypeError, match="set"):
        dump_pieces({"x": {1, 2}})


def test_a_json_response_carries_base64_values_as_strings() -> None:
    """`SimResponse.json` (sync image answers) splices too."""
    response = SimResponse.json({"data": [{"b64_json": Base64.of(b"img")}]})
    assert json.loads(response.read()) == {
        "data": [{"b64_json": base64.b64encode(b"img").decode()}]
    }


def test_chunked_passes_large_pieces_alone_and_uncopied() -> None:
    """Small pieces are grouped up to the size; a large one is sent as it is, in order."""
    big = b"B" * 100
    pieces = [b"a", b"bc", big, b"d" * 30, b"e" * 30, b"f"]
    chunks = list(chunked(pieces, 50))
    assert b"".join(chunks) == b"".join(pieces)
    assert chunks[1] is big
    assert [len(c) for c in chunks] == [3, 100, 30, 31]


@pytest.mark.parametrize("mime", list(FORMATS))
@pytest.mark.parametrize(
    ("size", "pad_to"),
    [((1024, 1024), 1572864), ((1024, 1536), 300_001), ((1024, 1024), None), (None, 100_000),
     (None, None), ((1024, 1024), 1000)],
)  # fmt: skip
def test_image_base64_is_the_base64_of_the_image(
    mime: str, size: tuple[int, int] | None, pad_to: int | None
) -> None:
    """Sized or tiny, padded or not (or already over the target): the pieces join to the
    base64 of `image_for`, and every piece but the last is whole 4-character groups."""
    encoded = image_base64("seed-9", mime, size=size, pad_to=pad_to)
    assert b"".join(encoded.pieces) == base64.b64encode(
        image_for("seed-9", mime, size=size, pad_to=pad_to)
    )
    assert all(len(piece) % 4 == 0 for piece in encoded.pieces[:-1])
    assert encoded.decoded() == image_for("seed-9", mime, size=size, pad_to=pad_to)


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg"])
def test_padded_images_of_one_size_share_a_cached_head(mime: str) -> None:
    """Two seeds at one pixel size and target share the head's base64 (the same object), and
    still differ in pixels and decode at the target weight."""
    first = image_base64("batch:1", mime, size=(1024, 1024), pad_to=1572864)
    second = image_base64("batch:2", mime, size=(1024, 1024), pad_to=1572864)
    assert first.pieces[0] is second.pieces[0]
    assert len(first.pieces[0]) > 1_900_000  # most of the 2 MiB of base64
    images = [Image.open(io.BytesIO(e.decoded())) for e in (first, second)]
    assert [len(e.decoded()) for e in (first, second)] == [1572864, 1572864]
    assert images[0].convert("RGB").tobytes() != images[1].convert("RGB").tobytes()


def test_a_realistic_openai_output_file_line_decodes() -> None:
    """Through the face: a realistic batch's output file is JSONL whose images decode at the
    requested size and weigh 1.5 MiB each."""
    sim = Simulator(load_scenario("realistic"), time_scale=0)
    body = {"model": "gpt-image-1", "prompt": "a kite", "size": "1536x1024", "n": 2}
    line = {"custom_id": "c0", "method": "POST", "url": "/v1/images/generations", "body": body}
    with mock_transport(sim), OpenAI(api_key="sk-test") as client:
        uploaded = client.files.create(
            file=("in.jsonl", json.dumps(line).encode()), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        sim.advance(24 * 3600)
        output = client.batches.retrieve(batch.id).output_file_id
        assert output is not None
        lines = client.files.content(output).content.splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])["response"]["body"]["data"]
    raws = [base64.b64decode(item["b64_json"]) for item in data]
    assert [len(raw) for raw in raws] == [1572864, 1572864]
    for raw in raws:
        image = Image.open(io.BytesIO(raw))
        image.load()
        assert (image.size, image.format) == ((1536, 1024), "PNG")


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg"])
@pytest.mark.parametrize("extra", [12, 100, 7000])
def test_images_padded_by_a_little_weigh_the_target_and_keep_their_pixels(
    mime: str, extra: int
) -> None:
    """A target just above the image (no room for a shared head, or barely) is still met
    exactly, the pixels unchanged, the base64 that of the bytes."""
    plain_image = image_for("k", mime, size=(256, 256))
    target = len(plain_image) + extra
    padded = image_for("k", mime, size=(256, 256), pad_to=target)
    assert len(padded) == target
    decoded = [
        Image.open(io.BytesIO(data)).convert("RGB").tobytes() for data in (plain_image, padded)
    ]
    assert decoded[0] == decoded[1]
    encoded = image_base64("k", mime, size=(256, 256), pad_to=target)
    assert encoded.decoded() == padded
