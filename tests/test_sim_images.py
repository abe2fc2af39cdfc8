"""Sized, padded images: the pixel size each request asks for, deterministic, decodable, and
streamed (inline `batches.get`, result files) without being held in memory."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import types
from openai import OpenAI
from PIL import Image

from costguard.simulator import Simulator
from costguard.simulator.core import SimRequest
from costguard.simulator.images import image_for
from costguard.simulator.mock import mock_transport
from costguard.simulator.scenario import Scenario, load_scenario
from costguard.simulator.server import serve_in_thread

KEY = "sim-key"
GOOGLE = "https://generativelanguage.googleapis.com"
MIB = 1024 * 1024
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def sized(image_bytes: int | None = None) -> Scenario:
    """A scenario answering images at the requested pixel size, padded to `image_bytes`."""
    return Scenario(
        name="sized",
        description="sized images",
        image_pixels="requested",
        image_bytes=image_bytes,
        pending_s=0,
        running_s=60,
    )


def decode(data: bytes) -> Image.Image:
    """The image `data` decodes to (fully loaded)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(data: bytes) -> bytes:
    """The RGB pixels of an encoded image."""
    return decode(data).convert("RGB").tobytes()


# -- image_for -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mime", list(FORMATS))
@pytest.mark.parametrize("size", [(1024, 1024), (1376, 768), (792, 168), (384, 3072)])
def test_sized_images_decode_at_their_size_and_depend_on_the_seed(
    mime: str, size: tuple[int, int]
) -> None:
    """A sized image decodes at exactly its size and type; a seed gives the same bytes, another
    seed other pixels."""
    data = image_for("batch-1:0", mime, size=size)
    image = decode(data)
    assert (image.size, image.format) == (size, FORMATS[mime])
    assert image_for("batch-1:0", mime, size=size) == data
    assert pixels(image_for("batch-1:1", mime, size=size)) != pixels(data)


@pytest.mark.parametrize("mime", list(FORMATS))
@pytest.mark.parametrize("target", [1572864, 300_001, 250_000])
def test_padded_images_weigh_the_target_and_still_decode(mime: str, target: int) -> None:
    """Padding grows the file to the target (WebP files are even: one byte short at most) and
    leaves the pixels as they were."""
    plain = image_for("k", mime, size=(1024, 1024))
    padded = image_for("k", mime, size=(1024, 1024), pad_to=target)
    assert target - 1 <= len(padded) <= target
    assert pixels(padded) == pixels(plain)
    assert decode(padded).format == FORMATS[mime]


@pytest.mark.parametrize("mime", list(FORMATS))
def test_tiny_images_can_be_padded_too(mime: str) -> None:
    """A tiny image padded to 100 kB still decodes as 32x32."""
    padded = image_for("k", mime, pad_to=100_000)
    assert 99_999 <= len(padded) <= 100_000
    assert decode(padded).size == (32, 32)


def test_an_image_already_over_the_target_is_left_alone() -> None:
    """Padding never shrinks: an image larger than the target comes back unchanged."""
    plain = image_for("k", "image/jpeg", size=(1024, 1024))
    assert image_for("k", "image/jpeg", size=(1024, 1024), pad_to=1000) == plain


def test_impossible_pixel_sizes_are_refused() -> None:
    """A side under 16 or over 16,383 pixels is a ValueError naming the size."""
    with pytest.raises(ValueError, match="8x1024"):
        image_for("k", size=(8, 1024))


def test_scenario_image_fields_validate() -> None:
    """`image_bytes` must be positive; the realistic scenario asks 1.5 MiB at the requested size."""
    with pytest.raises(ValueError, match="image_bytes"):
        Scenario(name="x", description="x", image_bytes=0)
    realistic = load_scenario("realistic")
    assert (realistic.image_pixels, realistic.image_bytes) == ("requested", 1572864)
    assert load_scenario("succeeded").image_pixels == "tiny"


def test_importing_costguard_and_the_simulator_does_not_load_pillow() -> None:
    """Pillow is imported only when an image is drawn."""
    code = (
        "import sys, costguard, costguard.simulator, costguard.simulator.gemini, "
        "costguard.simulator.openai; print('PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- the faces answer the requested size -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "image_config", "size"),
    [
        ("gemini-2.5-flash-image", None, (1024, 1024)),
        ("gemini-2.5-flash-image", {"aspect_ratio": "21:9"}, (1536, 672)),
        ("gemini-3-pro-image", {"image_size": "2K", "aspect_ratio": "3:4"}, (1792, 2400)),
        ("gemini-3.1-flash-image", {"image_size": "512", "aspect_ratio": "8:1"}, (1536, 192)),
        ("gemini-3.1-flash-image", {"aspect_ratio": "16:9"}, (1376, 768)),
        ("gemini-3.1-flash-lite-image", {"image_size": "1K"}, (1024, 1024)),
    ],
)
def test_gemini_images_have_the_pixel_size_of_model_size_and_ratio(
    model: str, image_config: dict[str, str] | None, size: tuple[int, int]
) -> None:
    """generateContent answers a PNG of the model's size for `imageSize` x `aspectRatio`."""
    sim = Simulator(sized(), api_keys=[KEY], time_scale=0)
    config = types.GenerateContentConfig(
        image_config=types.ImageConfig(**image_config) if image_config else None
    )
    with mock_transport(sim), genai.Client(api_key=KEY) as client:
        response = client.models.generate_content(model=model, contents="a kite", config=config)
    data = next(p.inline_data.data for p in response.parts or [] if p.inline_data)
    assert data is not None
    image = decode(data)
    assert (image.size, image.format) == (size, "PNG")


@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", ["1024x1536", "1536x1024"])
def test_openai_images_have_the_requested_size_and_format(output_format: str, size: str) -> None:
    """images.generate answers `n` images of the requested `size` and `output_format`."""
    sim = Simulator(sized(), api_keys=[KEY], time_scale=0)
    body: dict[str, Any] = {"size": size, "output_format": output_format, "n": 2}
    with mock_transport(sim), OpenAI(api_key=KEY) as client:
        result = client.images.generate(model="gpt-image-1", prompt="a kite", **body)
    images = [decode(base64.b64decode(d.b64_json or "")) for d in result.data or []]
    width, height = (int(side) for side in size.split("x"))
    fmt = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[output_format]
    assert [(i.size, i.format) for i in images] == [((width, height), fmt)] * 2
    assert images[0].tobytes() != images[1].tobytes()


def test_the_default_scenario_answers_tiny_images() -> None:
    """Without `image_pixels: requested` an image is the 32x32 recorded one (fast tests)."""
    sim = Simulator(api_keys=[KEY], time_scale=0)
    with mock_transport(sim), OpenAI(api_key=KEY) as client:
        result = client.images.generate(model="gpt-image-1", prompt="a kite", size="1536x1024")
    assert decode(base64.b64decode((result.data or [])[0].b64_json or "")).size == (32, 32)


# -- streamed results ----------------------------------------------------------------------------


def inline_job(sim: Simulator, client: genai.Client, count: int) -> str:
    """A finished inline job of `count` requests; its name."""
    src = [{"contents": f"picture {i}", "metadata": {"key": f"k{i}"}} for i in range(count)]
    job = client.batches.create(model="gemini-3.1-flash-image", src=src)  # type: ignore[arg-type]
    sim.advance(3600)
    return job.name or ""


@pytest.mark.parametrize("face", ["mock", "server"])
def test_padded_inline_results_stream_and_the_sdk_parses_them(face: str) -> None:
    """A finished inline job's `batches.get` is a streamed body the SDK reads whole: every
    image at its size and weight, in order."""
    sim = Simulator(sized(300_000), api_keys=[KEY], time_scale=0)
    with (
        mock_transport(sim) if face == "mock" else serve_in_thread(sim) as served,
        genai.Client(
            api_key=KEY,
            http_options=types.HttpOptions(base_url=served if isinstance(served, str) else None),
        ) as client,
    ):
        name = inline_job(sim, client, 4)
        job = client.batches.get(name=name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    results = job.dest.inlined_responses if job.dest else None
    assert [r.metadata for r in results or []] == [{"key": f"k{i}"} for i in range(4)]
    for result in results or []:
        assert result.response is not None
        data = next(p.inline_data.data for p in result.response.parts or [] if p.inline_data)
        assert data is not None
        assert len(data) == 300_000
        assert decode(data).size == (1024, 1024)


def test_inline_batch_get_is_generated_while_read_in_bounded_memory() -> None:
    """Streaming a 200-image padded inline `batches.get` never holds more than a few images:
    the traced peak stays under a twentieth of the body."""
    sim = Simulator(sized(256 * 1024), api_keys=[KEY], time_scale=0)
    with mock_transport(sim), genai.Client(api_key=KEY) as client:
        name = inline_job(sim, client, 200)
    request = SimRequest.build(
        "GET", f"/v1/{name}", headers=[("x-goog-api-key", KEY)], base_url=GOOGLE
    )
    tracemalloc.start()
    try:
        response = sim.handle(request)
        assert not isinstance(response.body, bytes)
        total, head, tail = 0, b"", b""
        for chunk in response.body:
            total += len(chunk)
            head = head or chunk[:200]
            tail = chunk[-200:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 2 * 200 * 256 * 1024  # the list comes twice: metadata.output and response
    assert peak < total / 20
    assert head.startswith(b'{"name":"batches/')
    assert tail.endswith(b"}")


def output_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The lines of a streamed JSONL body."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        yield from lines


def test_openai_output_file_with_padded_images_streams_in_bounded_memory() -> None:
    """A 100-line output file of padded images is generated line by line while downloaded."""
    sim = Simulator(sized(256 * 1024), api_keys=[KEY], time_scale=0)
    lines = b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-1", "prompt": f"p{i}", "size": "1024x1536"},
            }
        ).encode()
        + b"\n"
        for i in range(100)
    )
    with mock_transport(sim), OpenAI(api_key=KEY) as client:
        uploaded = client.files.create(file=("in.jsonl", lines), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        sim.advance(24 * 3600)
        output = client.batches.retrieve(batch.id).output_file_id
    request = SimRequest.build(
        "GET",
        f"/v1/files/{output}/content",
        headers=[("authorization", f"Bearer {KEY}")],
        base_url="https://api.openai.com",
    )
    # the padded image head is built once per type, size and weight and then shared: build it
    # before measuring, whichever test ran first in this process (pytest-xdist reorders them)
    warm = sim.handle(request)
    assert not isinstance(warm.body, bytes)
    next(iter(output_lines(warm.body)))
    tracemalloc.start()
    try:
        response = sim.handle(request)
        assert not isinstance(response.body, bytes)
        count, total, first = 0, 0, b""
        for line in output_lines(response.body):
            count += 1
            total += len(line)
            first = first or line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100
    assert peak < total / 10
    b64 = json.loads(first)["response"]["body"]["data"][0]["b64_json"]
    assert decode(base64.b64decode(b64)).size == (1024, 1536)
