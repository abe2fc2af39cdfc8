"""Bad input is refused, never mispriced, and never crashes (issue 12's red-team set).

Every field of a queue line is priced, sent as written, or refused with file:line: nothing is
dropped (a dropped field would be priced, and sent, as absent). Input images are checked by
their bytes, not their names. Input that used to end in a traceback is one line and exit 2 or 4.
"""

from __future__ import annotations

import base64
import io
import json
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from costguard.pricing.engine import RateBook
from costguard.queue.reader import Defaults, QueueReader

MakeQueue = Callable[..., Path]
Cli = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("memo_cards")

AS_OF = "2026-11-01"
GEMINI = ("--model", "gemini-3-pro-image")


def _png(size: int = 8, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def _gem(request: dict[str, Any], key: str = "a") -> dict[str, Any]:
    """A Gemini batch line; `request` is merged over one valid text part."""
    return {"key": key, "request": {"contents": [{"parts": [{"text": "a red cube"}]}], **request}}


def _estimate(cli: Cli, path: Path, *args: str) -> Any:
    return cli("estimate", path, "--as-of", AS_OF, *args)


def _error(result: Any) -> str:
    """The one error line of a refused queue (exit 2, nothing on stdout)."""
    assert result.code == 2, result.err
    assert result.out == ""
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.err
    return errors[0]


def _json(cli: Cli, path: Path, *args: str) -> dict[str, Any]:
    result = _estimate(cli, path, *args, "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


# 12. Gemini lines: priced, sent as written, or refused -------------------------------------

MEGABYTE_TOOL = {
    "tools": [{"functionDeclarations": [{"name": "lookup", "description": "x" * 1_000_000}]}]
}

REFUSED = [
    pytest.param(MEGABYTE_TOOL, "request.tools", "tools cannot be priced", id="tools"),
    pytest.param(
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        "request.toolConfig",
        "cannot be priced",
        id="tool-config",
    ),
    pytest.param(
        {"cachedContent": "cachedContents/abc"},
        "request.cachedContent",
        "cached content cannot be priced",
        id="cached-content",
    ),
    pytest.param(
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 24576}}},
        "request.generationConfig.thinkingConfig",
        "changes how much the model thinks",
        id="thinking-config",
    ),
    pytest.param(
        {"generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_HIGH"}},
        "request.generationConfig.mediaResolution",
        "tokens each input image costs",
        id="media-resolution",
    ),
    pytest.param(
        {"generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}},
        "request.generationConfig.maxOutputTokens",
        "set it, so the maximum cost is known",
        id="text-output-without-bound",
    ),
    pytest.param(
        {"generationConfig": {"responseModalities": ["IMAGE", "AUDIO"]}},
        "request.generationConfig.responseModalities",
        "audio cannot be priced",
        id="audio-output",
    ),
    pytest.param(
        {"generationConfig": {"responseModalities": ["TEXT"], "maxOutputTokens": 10}},
        "request.generationConfig.responseModalities",
        "must include IMAGE",
        id="text-only-output",
    ),
    pytest.param(
        {"generationConfig": {"temprature": 0.4}},
        "request.generationConfig.temprature",
        "did you mean 'temperature'?",
        id="misspelt-config-field",
    ),
    pytest.param(
        {"labels": {"team": "covers"}},
        "request.labels",
        "unknown field",
        id="unknown-request-field",
    ),
    pytest.param(
        {"contents": [{"parts": [{"text": "a"}, {"functionCall": {"name": "f", "args": {}}}]}]},
        "request.contents[0].parts[1].functionCall",
        "cannot be priced",
        id="function-call-part",
    ),
    pytest.param(
        {"systemInstruction": {"parts": [{"fileData": {"fileUri": "files/x"}}]}},
        "request.systemInstruction.parts[0].fileData",
        "takes text only",
        id="system-instruction-image",
    ),
]


@pytest.mark.parametrize(("request_fields", "field", "fragment"), REFUSED)
def test_gemini_fields_that_cannot_be_priced_are_refused(
    cli: Cli, make_queue: MakeQueue, request_fields: dict[str, Any], field: str, fragment: str
) -> None:
    """Tools, cached content, thinking settings, unbounded or audio output: exit 2 at file:line."""
    path = make_queue(_gem({}, key="fine"), _gem(request_fields, key="bad"))
    error = _error(_estimate(cli, path, *GEMINI))
    assert error.startswith(f"error: {path}:2: {field}: ")
    assert fragment in error


def test_gemini_text_output_is_held_in_the_maximum(cli: Cli, make_queue: MakeQueue) -> None:
    """TEXT output adds maxOutputTokens x the output text rate to the maximum, and says so."""
    image_only = _json(cli, make_queue(_gem({}), name="image.jsonl"), *GEMINI)
    text = {"responseModalities": ["TEXT", "IMAGE"], "maxOutputTokens": 8192}
    with_text = _json(cli, make_queue(_gem({"generationConfig": text}), name="text.jsonl"), *GEMINI)
    rates = {"batch": Decimal("6.00"), "sync": Decimal("12.00")}  # gemini-3-pro-image text out
    for mode, rate in rates.items():
        before, after = image_only["totals"][mode], with_text["totals"][mode]
        assert after["expected_usd"] == before["expected_usd"]
        added = Decimal(after["max_usd"]) - Decimal(before["max_usd"])
        assert added == 8192 * rate / 1_000_000
    assert any("maxOutputTokens (8,192 tokens in all)" in w for w in with_text["warnings"])


def test_gemini_system_instruction_is_priced(cli: Cli, make_queue: MakeQueue) -> None:
    """A 1 MB system instruction is input text: the maximum grows by its bytes x the rate."""
    plain = _json(cli, make_queue(_gem({}), name="plain.jsonl"), *GEMINI)
    system = {"systemInstruction": {"parts": [{"text": "y" * 1_000_000}]}}
    big = _json(cli, make_queue(_gem(system), name="system.jsonl"), *GEMINI)
    added = Decimal(big["totals"]["batch"]["max_usd"]) - Decimal(
        plain["totals"]["batch"]["max_usd"]
    )
    assert added == 1_000_000 * Decimal("1.00") / 1_000_000  # batch input text $1.00 / 1M


def test_gemini_fields_are_sent_as_written(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """systemInstruction, safetySettings, sampling settings and multi-turn contents reach the
    provider unchanged, in the REST request and in the SDK's inline batch form."""
    from google.genai import types

    from costguard.providers.gemini import GeminiProvider, _inlined

    png = base64.urlsafe_b64encode(_png()).decode().rstrip("=")
    request = {
        "system_instruction": {"parts": [{"text": "flat colours"}]},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "contents": [
            {"role": "user", "parts": [{"text": "a cube"}]},
            {"role": "model", "parts": [{"inline_data": {"mime_type": "image/png", "data": png}}]},
            {"role": "user", "parts": [{"text": "now blue"}]},
        ],
        "generationConfig": {
            "temperature": 0.2,
            "seed": 7,
            "responseModalities": ["TEXT", "IMAGE"],
            "maxOutputTokens": 2048,
            "imageConfig": {"imageSize": "2K"},
        },
    }
    path = make_queue({"key": "k", "request": request})
    reader = QueueReader(path, shipped_book, _date(AS_OF), defaults=Defaults("gemini-3-pro-image"))
    [parsed] = list(reader)
    reader.check()
    assert parsed.prompt == "a cube\nnow blue"
    assert parsed.images == ("inline:request.contents[1].parts[0]",)
    assert parsed.text_tokens_max == 2048
    wire = GeminiProvider("test-key", base=path.parent).request_json(parsed)
    assert wire["systemInstruction"] == {"parts": [{"text": "flat colours"}]}
    assert wire["safetySettings"] == request["safetySettings"]
    assert [c["role"] for c in wire["contents"]] == ["user", "model", "user"]
    assert wire["contents"][1]["parts"][0]["inlineData"] == {"mimeType": "image/png", "data": png}
    assert wire["generationConfig"] == {
        "temperature": 0.2,
        "seed": 7,
        "maxOutputTokens": 2048,
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"imageSize": "2K"},
    }
    inline = types.InlinedRequest.model_validate(_inlined({"key": "k", "request": wire}))
    assert inline.config is not None
    assert inline.config.system_instruction is not None
    assert inline.config.temperature == 0.2
    assert inline.config.max_output_tokens == 2048
    assert inline.contents is not None
    assert inline.contents[1].parts[0].inline_data.data == _png()  # type: ignore[index,union-attr]


OPENAI_REFUSED = [
    pytest.param({"partial_images": 2}, "body.partial_images", "billed as extra", id="partial"),
    pytest.param({"stream": True}, "body.stream", "cannot stream", id="stream"),
    pytest.param({"input_fidelity": "high"}, "body.input_fidelity", "tokens each", id="fidelity"),
    pytest.param({"qualty": "high"}, "body.qualty", "did you mean 'quality'?", id="misspelt"),
    pytest.param({"output_format": "gif"}, "body.output_format", "png, jpeg, webp", id="format"),
    pytest.param({"background": 5}, "body.background", "transparent, opaque, auto", id="bg"),
    pytest.param({"output_compression": 101}, "body.output_compression", "0 to 100", id="cmp"),
]


@pytest.mark.parametrize(("body", "field", "fragment"), OPENAI_REFUSED)
def test_openai_fields_that_cannot_be_priced_are_refused(
    cli: Cli, make_queue: MakeQueue, body: dict[str, Any], field: str, fragment: str
) -> None:
    """OpenAI lines: fields that change the price unpredictably, or unknown ones, exit 2."""
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1.5", "prompt": "a cube", **body},
    }
    error = _error(_estimate(cli, make_queue(line)))
    assert error.startswith(f"error: {make_queue(line)}:1: {field}: ")
    assert fragment in error


def test_openai_price_neutral_fields_are_sent(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """background and output_format are sent as the line wrote them, not dropped."""
    from costguard.providers.openai import OpenAIProvider

    body = {"model": "gpt-image-1.5", "prompt": "a cube", "background": "transparent"}
    line = {"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": body}
    path = make_queue(line | {"body": body | {"output_format": "webp"}})
    [parsed] = list(QueueReader(path, shipped_book, _date(AS_OF)))
    sent = OpenAIProvider("sk-test", base=path.parent).body(parsed)
    assert sent["background"] == "transparent"
    assert sent["output_format"] == "webp"
    assert sent["size"] == "1024x1024"  # costguard's explicit, priced size


@pytest.mark.parametrize(
    ("config", "field", "fragment"),
    [
        ({"temperature": "warm"}, "request.generationConfig.temperature", "must be a number"),
        ({"seed": 1.5}, "request.generationConfig.seed", "must be a whole number"),
        ({"stopSequences": "END"}, "request.generationConfig.stopSequences", "list of strings"),
    ],
    ids=["temperature", "seed", "stop-sequences"],
)
def test_gemini_sent_fields_are_type_checked(
    cli: Cli, make_queue: MakeQueue, config: dict[str, Any], field: str, fragment: str
) -> None:
    """A value sent as written that the API (or its SDK) would refuse fails at read time, not
    after admission with a traceback."""
    path = make_queue(_gem({"generationConfig": config}))
    error = _error(_estimate(cli, path, *GEMINI))
    assert error.startswith(f"error: {path}:1: {field}: ")
    assert fragment in error


def test_gemini_safety_settings_are_checked(cli: Cli, make_queue: MakeQueue) -> None:
    """A misspelt key in a safety setting is named, with the key it should be."""
    setting = {"category": "HARM_CATEGORY_HARASSMENT", "treshold": "BLOCK_NONE"}
    path = make_queue(_gem({"safetySettings": [setting]}))
    error = _error(_estimate(cli, path, *GEMINI))
    assert error.startswith(f"error: {path}:1: request.safetySettings[0].treshold: ")
    assert "did you mean 'threshold'?" in error


@pytest.mark.parametrize(
    ("images", "field", "fragment"),
    [
        ({"image": ["missing.png"]}, "body.image[0]", "input image not found"),
        ({"image": "notes.png"}, "body.image[0]", "is not an image"),
        ({"images": [{"image_url": "anim.gif"}]}, "body.images[0]", "is a GIF image"),
    ],
    ids=["missing", "text-file", "gif-image-url"],
)
def test_openai_edit_images_are_checked_like_any_other(
    cli: Cli,
    make_queue: MakeQueue,
    tmp_path: Path,
    images: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    """A local path in an OpenAI edit line is checked by its bytes, before anything is
    reserved (it used to crash the run after admission, or be uploaded as it was)."""
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "anim.gif").write_bytes(_png(fmt="GIF"))
    body = {"model": "gpt-image-1.5", "prompt": "edit", **images}
    path = make_queue({"custom_id": "a", "method": "POST", "url": "/v1/images/edits", "body": body})
    error = _error(_estimate(cli, path))
    assert error.startswith(f"error: {path}:1: {field}: ")
    assert fragment in error


def test_a_folder_is_not_a_queue_or_an_image(
    cli: Cli, make_queue: MakeQueue, tmp_path: Path
) -> None:
    """A folder given as the queue, or as an input image, is named as a folder."""
    result = _estimate(cli, tmp_path)
    assert result.code == 2
    assert f"{tmp_path}: is a folder, not a queue file" in result.err
    path = make_queue({"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": ["."]})
    assert "is a folder, not an image" in _error(_estimate(cli, path))


def test_costguard_format_refuses_a_misspelt_field(cli: Cli, make_queue: MakeQueue) -> None:
    """`qualty: high` would have been priced (and sent) at the default quality."""
    path = make_queue({"key": "a", "prompt": "a cube", "model": "gpt-image-1.5", "qualty": "high"})
    error = _error(_estimate(cli, path))
    assert error.startswith(f"error: {path}:1: qualty: unknown field")
    assert "did you mean 'quality'?" in error


def test_a_gemini_line_with_an_openai_model_is_refused(cli: Cli, make_queue: MakeQueue) -> None:
    """A Gemini request cannot be sent to OpenAI: refused, not rebuilt without its fields."""
    error = _error(_estimate(cli, make_queue(_gem({})), "--model", "gpt-image-1.5"))
    assert "gpt-image-1.5 is a openai model, but this is a gemini queue line" in error


# 13. Input images: checked by their bytes, within the provider's limits ----------------------


def test_a_file_that_is_not_an_image_is_refused(cli: Cli, make_queue: MakeQueue) -> None:
    """`"images": ["/etc/passwd"]` was uploaded; now exit 2 at estimate, naming the file."""
    path = make_queue(
        {"key": "a", "prompt": "edit", "model": "gpt-image-1.5", "images": ["/etc/passwd"]}
    )
    error = _error(_estimate(cli, path))
    assert error == (
        f"error: {path}:1: images[0]: input image /etc/passwd is not an image; "
        "openai takes PNG, JPEG, WEBP"
    )


def test_image_types_are_the_providers(cli: Cli, make_queue: MakeQueue, tmp_path: Path) -> None:
    """A GIF is refused for OpenAI; a JPEG named .png is accepted and sent as image/jpeg."""
    from costguard.providers.base import read_image

    (tmp_path / "anim.gif").write_bytes(_png(fmt="GIF"))
    (tmp_path / "photo.png").write_bytes(_png(fmt="JPEG"))
    gif = make_queue({"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": ["anim.gif"]})
    assert "is a GIF image; openai takes PNG, JPEG, WEBP" in _error(_estimate(cli, gif))
    jpeg = {"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": ["photo.png"]}
    assert _estimate(cli, make_queue(jpeg, name="jpeg.jsonl")).code == 0
    assert read_image("photo.png", tmp_path) == (_png(fmt="JPEG"), "image/jpeg")


def test_a_huge_file_is_refused_without_reading_it(
    make_queue: MakeQueue, shipped_book: RateBook, tmp_path: Path
) -> None:
    """A 20 GB (sparse) file with a PNG header: refused by size, reading a few bytes of it."""
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.write(_png())
        handle.truncate(20 * 1024**3)
    path = make_queue({"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": ["huge.png"]})
    reader = QueueReader(path, shipped_book, _date(AS_OF))
    tracemalloc.start()
    try:
        assert list(reader) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    assert "is 20,480.0 MB; openai takes at most 50 MB per image" in reader.errors[0]


INLINE_REFUSED = [
    pytest.param("!!!", "image/png", "is not base64", id="not-base64"),
    pytest.param(
        base64.b64encode(b"hello world, not an image").decode(),
        "image/png",
        "not an image",
        id="text",
    ),
    pytest.param(
        base64.b64encode(_png(fmt="JPEG")).decode(),
        "image/png",
        "declared image/png but is image/jpeg",
        id="mislabelled",
    ),
    pytest.param(
        base64.b64encode(_png()).decode(),
        "application/pdf",
        "declared application/pdf",
        id="pdf-type",
    ),
]


@pytest.mark.parametrize(("data", "mime", "fragment"), INLINE_REFUSED)
def test_inline_images_are_checked(
    cli: Cli, make_queue: MakeQueue, data: str, mime: str, fragment: str
) -> None:
    """Gemini inlineData: base64, an accepted type, the type it declares."""
    parts = [{"text": "edit"}, {"inlineData": {"mimeType": mime, "data": data}}]
    path = make_queue(_gem({"contents": [{"parts": parts}]}))
    error = _error(_estimate(cli, path, *GEMINI))
    assert error.startswith(f"error: {path}:1: request.contents[0].parts[1].inlineData.data: ")
    assert fragment in error


def test_data_urls_are_checked(cli: Cli, make_queue: MakeQueue) -> None:
    """A `data:` URL is an inline image: its type and bytes are checked like a file's."""
    text = "data:text/plain;base64," + base64.b64encode(b"not an image").decode()
    path = make_queue({"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": [text]})
    assert "images[0]: the image is not an image; openai takes" in _error(_estimate(cli, path))
    good = "data:image/png;base64," + base64.b64encode(_png()).decode()
    ok = make_queue(
        {"key": "a", "prompt": "e", "model": "gpt-image-1.5", "images": [good]}, name="ok.jsonl"
    )
    assert _estimate(cli, ok).code == 0


# 14. No traceback: deep nesting, lone surrogates, impossible card dates -----------------------


@pytest.mark.parametrize("line_number", [1, 2])
def test_deep_nesting_is_one_line(cli: Cli, make_queue: MakeQueue, line_number: int) -> None:
    """100,000 nested `[` (a RecursionError in json) is bad JSON at its line, first or later."""
    lines = ["[" * 100_000]
    if line_number == 2:
        lines.insert(0, json.dumps({"key": "a", "prompt": "a", "model": "gpt-image-1.5"}))
    path = make_queue(*lines)
    error = _error(_estimate(cli, path))
    assert error == f"error: {path}:{line_number}: (line): invalid JSON: nested too deeply"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"key": "a", "prompt": "a \\udfff cube", "model": "gpt-image-1.5"}', "prompt"),
        ('{"key": "\\udfff", "prompt": "a cube", "model": "gpt-image-1.5"}', "key"),
        (
            '{"key": "a", "request": {"contents": [{"parts": [{"text": "x\\ud800"}]}]}}',
            "request.contents[0].parts[0].text",
        ),
    ],
    ids=["prompt", "key", "gemini-text"],
)
def test_a_lone_surrogate_is_one_line(
    cli: Cli, make_queue: MakeQueue, line: str, field: str
) -> None:
    """`"\\udfff"` decodes to text that cannot be encoded: refused at its field, not a crash."""
    path = make_queue(line)
    error = _error(_estimate(cli, path, *GEMINI) if "request" in line else _estimate(cli, path))
    assert error.startswith(f"error: {path}:1: {field}: holds a lone UTF-16 surrogate")


def test_a_surrogate_pair_is_text(cli: Cli, make_queue: MakeQueue) -> None:
    """An escaped pair (an emoji) is valid text and is priced by its UTF-8 bytes."""
    path = make_queue('{"key": "a", "prompt": "a cube \\ud83d\\ude00", "model": "gpt-image-1.5"}')
    assert _estimate(cli, path).code == 0


def test_an_impossible_card_date_is_a_card_error(cli: Cli, tmp_path: Path) -> None:
    """A card dated 2026-13-40 (file and effective_from): exit 4, file and line, no traceback."""
    from costguard.pricing.loader import shipped_dir

    folder = tmp_path / "cards" / "gemini"
    folder.mkdir(parents=True)
    text = (shipped_dir() / "gemini" / "2026-10-02.yaml").read_text(encoding="utf-8")
    card = folder / "2026-13-40.yaml"
    card.write_text(text.replace("effective_from: 2026-10-02", "effective_from: 2026-13-40"))
    result = cli("prices", "--pricing", tmp_path / "cards")
    assert result.code == 4
    assert result.err.strip().splitlines() == [
        f"error: {card}:4: invalid YAML: '2026-13-40' is not a valid date (month must be in 1..12)"
    ]


def _date(text: str) -> Any:
    import datetime as dt

    return dt.date.fromisoformat(text)
