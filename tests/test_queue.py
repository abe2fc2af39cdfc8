"""The streaming queue reader: format detection, robustness, the three formats, duplicate keys."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from costguard.errors import QueueError, UsageError
from costguard.models import ImageRequest
from costguard.pricing.engine import RateBook
from costguard.queue.reader import (
    MAX_ERRORS_KEPT,
    MAX_LINES_KEPT,
    Defaults,
    KeySet,
    QueueReader,
    detect_format,
)

AT = dt.date(2026, 11, 1)

MakeQueue = Callable[..., Path]


def read(
    path: Path,
    book: RateBook,
    *,
    at: dt.date = AT,
    defaults: Defaults = Defaults(),  # noqa: B008 - frozen dataclass
    fmt: Any = None,
) -> tuple[list[ImageRequest], QueueReader]:
    """All requests a reader yields, and the reader (for its errors and warnings)."""
    reader = QueueReader(path, book, at, defaults=defaults, fmt=fmt)
    return list(reader), reader


def gemini_line(key: str, text: str, **config: Any) -> dict[str, Any]:
    """A Gemini batch line with one text part and an optional generationConfig."""
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        request["generationConfig"] = config
    return {"key": key, "request": request}


def openai_line(key: str, body: dict[str, Any], url: str = "/v1/images/generations") -> dict:
    """An OpenAI batch line."""
    return {"custom_id": key, "method": "POST", "url": url, "body": body}


# Format detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([{"key": "a", "prompt": "p"}], "costguard", id="costguard"),
        pytest.param([gemini_line("a", "p")], "gemini", id="gemini"),
        pytest.param([openai_line("a", {"prompt": "p"})], "openai", id="openai"),
        pytest.param(["", "   ", gemini_line("a", "p")], "gemini", id="blank-lines-first"),
        pytest.param(["not json", gemini_line("a", "p")], "costguard", id="unreadable-first"),
        pytest.param(["[1, 2]"], "costguard", id="not-an-object"),
        pytest.param([], "costguard", id="empty-file"),
    ],
)
def test_detect_format_from_first_non_blank_line(
    make_queue: MakeQueue, lines: list[Any], expected: str
) -> None:
    """The format comes from the first non-blank line, and is costguard when unsure."""
    assert detect_format(make_queue(*lines)) == expected


def test_detect_format_ignores_bom_and_crlf(make_queue: MakeQueue) -> None:
    """A UTF-8 BOM and CRLF line ends do not hide the format."""
    path = make_queue(openai_line("a", {"prompt": "p"}), bom=True, newline=b"\r\n")
    assert detect_format(path) == "openai"


# Streaming robustness ---------------------------------------------------------------------------


def test_bom_crlf_and_blank_lines(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """BOM, CRLF and blank lines are tolerated, and line numbers still count every line."""
    line = {"key": "a", "prompt": "p", "model": "gpt-image-1.5"}
    path = make_queue(line, "", "  ", {**line, "key": "b"}, bom=True, newline=b"\r\n")
    requests, reader = read(path, shipped_book)
    reader.check()
    assert [(r.key, r.line) for r in requests] == [("a", 1), ("b", 4)]
    assert reader.lines == 2


@pytest.mark.parametrize(
    ("prompt", "prompt_bytes"),
    [
        pytest.param("hello", 5, id="ascii"),
        pytest.param("café crème", 12, id="latin-accents"),
        pytest.param("日本語のプロンプト", 27, id="cjk-3-bytes-each"),
        pytest.param("🍌🍌", 8, id="emoji-4-bytes-each"),
    ],
)
def test_prompt_size_is_utf8_bytes_not_characters(
    make_queue: MakeQueue, shipped_book: RateBook, prompt: str, prompt_bytes: int
) -> None:
    """Tokens are estimated from the prompt's UTF-8 bytes, whatever the characters."""
    path = make_queue({"key": "a", "prompt": prompt, "model": "gemini-3-pro-image"})
    [request], reader = read(path, shipped_book)
    reader.check()
    assert request.prompt == prompt
    assert request.prompt_bytes == prompt_bytes


def test_escaped_non_ascii_counts_decoded_bytes(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """A prompt written with \\u escapes is measured as its decoded UTF-8, not its escapes."""
    path = make_queue('{"key": "a", "prompt": "\\u65e5\\u672c", "model": "gemini-3-pro-image"}')
    [request], _ = read(path, shipped_book)
    assert request.prompt == "日本"
    assert request.prompt_bytes == 6


def test_reader_keeps_going_and_keeps_first_twenty_errors(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """Every bad line is counted, the first 20 distinct errors are kept (later distinct ones
    only counted), and good lines still stream."""
    bad = [
        {"key": f"k{i}", "prompt": "p", "model": "gpt-image-1.5", "n": 11 + i} for i in range(25)
    ]
    good = {"key": "ok", "prompt": "p", "model": "gpt-image-1.5"}
    path = make_queue(*bad, good)
    requests, reader = read(path, shipped_book)
    assert [r.key for r in requests] == ["ok"]
    assert reader.error_count == 25
    assert len(reader.errors) == MAX_ERRORS_KEPT == 20
    assert reader.errors[0] == f"{path}:1: n: 11 is out of range for gpt-image-1.5 (1 to 10)"
    assert reader.errors[-1].startswith(f"{path}:20: n:")
    assert reader.unlisted == 5
    with pytest.raises(QueueError) as info:
        reader.check()
    assert info.value.total == 25
    assert info.value.unlisted == 5
    assert info.value.errors == reader.errors


def test_identical_errors_are_grouped_with_their_count_and_first_lines(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    """2,000 lines with the same error (field and message) are one error with its count and
    its first 10 line numbers; distinct errors stay apart, in the order first seen."""
    path = tmp_path / "queue.jsonl"
    lines = [json.dumps({"key": f"k{i}", "prompt": "p"}) for i in range(2000)]
    lines.insert(3, json.dumps({"key": "x", "prompt": "p", "model": "gpt-image-2", "n": 0}))
    lines.append(json.dumps({"key": "y", "prompt": "p", "model": "gpt-image-2", "n": 0}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, reader = read(path, shipped_book)
    assert reader.error_count == 2002
    [no_model, n_zero] = reader.groups
    assert (no_model.field, no_model.message) == (
        "model",
        "no model: set it on the line or pass --model",
    )
    assert no_model.count == 2000
    assert no_model.lines == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert (n_zero.field, n_zero.count, n_zero.lines) == ("n", 2, [4, 2002])
    assert reader.errors == [
        (
            f"{path}: model: no model: set it on the line or pass --model "
            "(2,000 lines: 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, ...)"
        ),
        f"{path}: n: 0 is out of range for gpt-image-2 (1 to 10) (2 lines: 4, 2002)",
    ]
    with pytest.raises(QueueError) as info:
        reader.check()
    assert info.value.total == 2002
    assert str(info.value) == f"{reader.errors[0]}; 2,002 bad lines in all"


def test_grouping_errors_keeps_memory_bounded(tmp_path: Path, shipped_book: RateBook) -> None:
    """A queue whose every line has its own error keeps only MAX_ERRORS_KEPT of them, each
    with at most MAX_LINES_KEPT line numbers: the rest is counted, not stored."""
    path = tmp_path / "queue.jsonl"
    line = '{{"key": "k{}", "prompt": "p", "model": "gpt-image-2"}}'
    lines = [line.format(i // 2) for i in range(10_000)]  # every key twice: 5,000 distinct errors
    lines += ['{"key": "none", "prompt": "p"}'] * 5000  # 5,000 times one error, after those
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, reader = read(path, shipped_book)
    assert reader.error_count == 5000 + 5000
    assert len(reader.groups) == MAX_ERRORS_KEPT
    assert all(g.count == 1 and len(g.lines) == 1 for g in reader.groups)
    assert reader.unlisted == 10_000 - MAX_ERRORS_KEPT
    assert reader.groups[0].where() == (
        f"{path}:2: key: duplicate key 'k0' (first used on line 1); results are matched by "
        "key, so keys must be unique"
    )
    assert MAX_LINES_KEPT == 10


def test_missing_queue_file_is_a_usage_error(tmp_path: Path, shipped_book: RateBook) -> None:
    """A queue path that is not a file is one usage error, not a bad line."""
    with pytest.raises(UsageError, match="queue file not found"):
        QueueReader(tmp_path / "missing.jsonl", shipped_book, AT)


# Defaults ---------------------------------------------------------------------------------------


def test_line_values_win_over_defaults(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """A line's own model, size and quality beat the CLI defaults, which fill the gaps."""
    path = make_queue(
        {"key": "a", "prompt": "p"},
        {"key": "b", "prompt": "p", "model": "gpt-image-2", "size": "1536x1024", "quality": "low"},
    )
    defaults = Defaults(model="gpt-image-1.5", size="1024x1536", quality="high")
    requests, reader = read(path, shipped_book, defaults=defaults)
    reader.check()
    assert [(r.model, r.provider, r.size, r.quality) for r in requests] == [
        ("gpt-image-1.5", "openai", "1024x1536", "high"),
        ("gpt-image-2", "openai", "1536x1024", "low"),
    ]


def test_card_defaults_when_nothing_is_given(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """With no size or quality anywhere, the card's default size and quality are priced."""
    path = make_queue(
        {"key": "a", "prompt": "p", "model": "gpt-image-1.5"},
        {"key": "b", "prompt": "p", "model": "gemini-3.1-flash-image"},
    )
    requests, reader = read(path, shipped_book)
    reader.check()
    assert [(r.size, r.quality, r.n) for r in requests] == [
        ("1024x1024", "medium", 1),
        ("1K", None, 1),
    ]


def test_quality_default_does_not_apply_to_gemini(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """--quality fills OpenAI lines only: a Gemini model has no quality to set."""
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-3-pro-image"})
    [request], reader = read(path, shipped_book, defaults=Defaults(quality="high"))
    reader.check()
    assert request.quality is None


# The three formats ------------------------------------------------------------------------------


def test_gemini_line_fields(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """A Gemini line: text parts joined, system text counted, images and imageConfig read."""
    line = {
        "key": "g1",
        "request": {
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {
                    "parts": [
                        {"text": "a cat"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"fileData": {"fileUri": "files/abc", "mimeType": "image/png"}},
                        {"text": "on a mat"},
                    ]
                }
            ],
            "generationConfig": {"imageConfig": {"imageSize": "2K", "aspectRatio": "16:9"}},
        },
    }
    path = make_queue(line)
    [request], reader = read(path, shipped_book, defaults=Defaults(model="gemini-3-pro-image"))
    reader.check()
    assert request.prompt == "a cat\non a mat"
    assert request.prompt_bytes == len("a cat\non a mat") + len("be brief")
    assert request.images == ("inline:request.contents[0].parts[1]", "files/abc")
    assert (request.size, request.aspect_ratio, request.model) == (
        "2K",
        "16:9",
        "gemini-3-pro-image",
    )


def test_gemini_snake_case_and_model_on_the_line(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """snake_case keys work, and a `models/` id on the request is used without --model."""
    line = {
        "key": "g1",
        "request": {
            "model": "models/gemini-3.1-flash-image",
            "contents": [{"parts": [{"text": "p"}]}],
            "generation_config": {"image_config": {"image_size": "512", "aspect_ratio": "1:8"}},
        },
    }
    [request], reader = read(make_queue(line), shipped_book)
    reader.check()
    assert (request.model, request.size, request.aspect_ratio) == (
        "gemini-3.1-flash-image",
        "512",
        "1:8",
    )


@pytest.mark.parametrize(
    ("body", "images"),
    [
        pytest.param(
            {"images": [{"image_url": "https://x/a.png"}]}, ("https://x/a.png",), id="url"
        ),
        pytest.param(
            {"images": [{"file_id": "file-1"}, {"file_id": "file-2"}]},
            ("file-1", "file-2"),
            id="file-ids",
        ),
        pytest.param({"image": "file-9"}, ("file-9",), id="single-image-string"),
    ],
)
def test_openai_edit_images(
    make_queue: MakeQueue, shipped_book: RateBook, body: dict[str, Any], images: tuple[str, ...]
) -> None:
    """An OpenAI edit counts each reference image, in any of the accepted spellings."""
    line = openai_line("e1", {"model": "gpt-image-1.5", "prompt": "p", **body}, "/v1/images/edits")
    [request], reader = read(make_queue(line), shipped_book)
    reader.check()
    assert request.images == images


def test_openai_generation_fields(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """An OpenAI generation line reads model, size, quality and n from its body."""
    body = {"model": "gpt-image-2", "prompt": "p", "size": "1536x1024", "quality": "high", "n": 3}
    [request], reader = read(make_queue(openai_line("o1", body)), shipped_book)
    reader.check()
    assert (request.key, request.model, request.size, request.quality, request.n) == (
        "o1",
        "gpt-image-2",
        "1536x1024",
        "high",
        3,
    )


def test_forced_format_reads_a_file_detection_gets_wrong(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """When the first line is broken, detection says costguard; forcing gemini reads the rest."""
    path = make_queue({"key": "a"}, gemini_line("b", "p"))
    _, detected = read(path, shipped_book, defaults=Defaults(model="gemini-3-pro-image"))
    assert detected.format == "costguard"
    assert detected.error_count == 2
    requests, forced = read(
        path, shipped_book, defaults=Defaults(model="gemini-3-pro-image"), fmt="gemini"
    )
    assert [r.key for r in requests] == ["b"]
    assert forced.errors == [
        f"{path}:1: request: missing or not an object (GenerateContentRequest)"
    ]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        pytest.param(
            gemini_line("a", "p", imageConfig={"imageSize": "8K"}),
            "request.generationConfig.imageConfig.imageSize",
            id="size",
        ),
        pytest.param(
            gemini_line("a", "p", imageConfig={"aspectRatio": "7:3"}),
            "request.generationConfig.imageConfig.aspectRatio",
            id="aspect-ratio",
        ),
        pytest.param(
            gemini_line("a", "p", candidateCount=2),
            "request.generationConfig.candidateCount",
            id="candidate-count",
        ),
    ],
)
def test_gemini_errors_name_the_field_as_written(
    make_queue: MakeQueue, shipped_book: RateBook, line: dict[str, Any], field: str
) -> None:
    """Errors on a Gemini line name the nested field the line actually has."""
    path = make_queue(line)
    _, reader = read(path, shipped_book, defaults=Defaults(model="gemini-3-pro-image"))
    assert len(reader.errors) == 1
    assert reader.errors[0].startswith(f"{path}:1: {field}: ")


def test_openai_input_image_error_names_body_field(
    make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """An edit to a model without image input names `body.images`."""
    line = openai_line(
        "a", {"model": "dall-e-3", "prompt": "p", "image": "file-1"}, "/v1/images/edits"
    )
    path = make_queue(line)
    _, reader = read(path, shipped_book, at=dt.date(2026, 1, 1))
    assert reader.errors == [f"{path}:1: body.images: dall-e-3 does not take input images"]


def test_shutdown_warning_is_collected_once(make_queue: MakeQueue, shipped_book: RateBook) -> None:
    """A model near its shutdown adds one warning however many lines use it."""
    lines = [{"key": f"k{i}", "prompt": "p", "model": "gemini-2.5-flash-image"} for i in range(3)]
    requests, reader = read(make_queue(*lines), shipped_book, at=dt.date(2026, 9, 20))
    reader.check()
    assert len(requests) == 3
    assert reader.warnings == [
        (
            "model 'gemini-2.5-flash-image' shuts down on 2026-10-02 (in 12 days); "
            "use gemini-3.1-flash-image or gemini-3.1-flash-lite-image"
        )
    ]


def test_input_image_paths_are_relative_to_the_queue(
    tmp_path: Path, make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """Local input images are looked up next to the queue file; URIs are not checked."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    line = {
        "key": "a",
        "prompt": "p",
        "model": "gemini-3-pro-image",
        "images": ["ref.png", "gs://bucket/x.png", str(tmp_path / "sub" / "ref.png")],
    }
    [request], reader = read(make_queue(line, name="sub/q.jsonl"), shipped_book)
    reader.check()
    assert len(request.images) == 3


# KeySet -----------------------------------------------------------------------------------------


def test_keyset_reports_the_first_line_of_a_duplicate() -> None:
    """Adding a key again returns the line it was first seen on; new keys return 0."""
    keys = KeySet(capacity=8)
    assert keys.add("a", 1) == 0
    assert keys.add("b", 2) == 0
    assert keys.add("a", 7) == 1
    assert keys.add("b", 9) == 2
    assert len(keys) == 2


def test_keyset_survives_growing() -> None:
    """Past its initial capacity the set grows and still knows every key and line."""
    keys = KeySet(capacity=16)
    count = 5000
    for i in range(count):
        assert keys.add(f"key-{i}", i + 1) == 0
    assert len(keys) == count
    assert all(keys.add(f"key-{i}", 10**6) == i + 1 for i in range(0, count, 7))
    assert keys.add("", 1) == 0  # the empty string hashes to 0: still a key
    assert keys.add("", 2) == 1
