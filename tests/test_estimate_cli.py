"""`costguard estimate`: prices, the three queue formats, bad input, --as-of, budgets, output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.pricing.loader import shipped_dir

MakeQueue = Callable[..., Path]
Cli = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("memo_cards")

AS_OF = "2026-11-01"
CATALOG_AS_OF = "2026-11-24"
README_AS_OF = "2026-11-26"
"""The README's estimate example: the cards of that date mark some figures assumed."""


def estimate_json(cli: Cli, *args: str | Path) -> dict[str, Any]:
    """Run `estimate --output json` and return the parsed payload (exit code must be 0)."""
    result = cli("estimate", *args, "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def totals(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of an estimate that must not depend on the queue's format or layout."""
    return {key: payload[key] for key in ("requests", "images", "totals", "groups", "rate_cards")}


# Prices through the CLI -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "as_of", "mode", "unit"),
    [
        pytest.param(
            {"model": "gemini-2.5-flash-image"}, "2026-09-01", "sync", "0.0387", id="2.5-sync"
        ),
        pytest.param(
            {"model": "gemini-2.5-flash-image"}, "2026-09-01", "batch", "0.01935", id="2.5-batch"
        ),
        pytest.param(
            {"model": "gemini-3-pro-image", "size": "4K"}, AS_OF, "batch", "0.12", id="3-pro-4K"
        ),
        pytest.param(
            {"model": "gemini-3.1-flash-image", "size": "512"},
            AS_OF,
            "sync",
            "0.04482",
            id="3.1-flash-512",
        ),
        pytest.param(
            {"model": "gpt-image-1", "size": "1024x1536", "quality": "high"},
            "2026-10-01",
            "sync",
            "0.2496",
            id="gpt-image-1-high",
        ),
    ],
)
def test_unit_price_in_json_matches_reference(
    cli: Cli, make_queue: MakeQueue, line: dict[str, str], as_of: str, mode: str, unit: str
) -> None:
    """The JSON per-image price of each reference model is the published figure, exactly."""
    path = make_queue({"key": "a", "prompt": "p", **line})
    payload = estimate_json(cli, path, "--as-of", as_of)
    [group] = payload["groups"]
    assert Decimal(group["unit_usd"][mode]) == Decimal(unit)


def test_request_cost_in_json_matches_hand_calculation(cli: Cli, make_queue: MakeQueue) -> None:
    """A 3 Pro 4K request with two input images and thinking costs exactly the hand figure."""
    path = make_queue(
        {
            "key": "a",
            "prompt": "x" * 100,
            "model": "gemini-3-pro-image",
            "size": "4K",
            "images": ["https://example.test/a.png", "gs://bucket/b.png"],
        }
    )
    payload = estimate_json(cli, path, "--as-of", AS_OF)
    # batch: image 2000 x $60/M; prompt 25 (max 100) x $1/M; inputs 1120 x $1/M;
    # thinking 400 (max 4000) x $6/M. sync: every rate doubled.
    assert payload["totals"]["batch"] == {"expected_usd": "0.123545", "max_usd": "0.14522"}
    assert payload["totals"]["sync"] == {"expected_usd": "0.24709", "max_usd": "0.29044"}
    assert payload["batch_saving"] == {"expected_usd": "0.123545", "max_usd": "0.14522"}
    [group] = payload["groups"]
    assert (group["prompt_tokens"], group["prompt_tokens_max"], group["input_images"]) == (
        25,
        100,
        2,
    )


def test_catalog_example_totals(cli: Cli, examples_dir: Path) -> None:
    """The shipped example queue prices to the same exact totals every time."""
    payload = estimate_json(cli, examples_dir / "catalog.jsonl", "--as-of", CATALOG_AS_OF)
    assert (payload["requests"], payload["images"]) == (12, 13)
    assert payload["rate_cards"] == ["gemini/2026-10-02", "openai/2026-10-23"]
    assert payload["totals"] == {
        "sync": {"expected_usd": "1.0824465", "max_usd": "1.15449"},
        "batch": {"expected_usd": "0.54122325", "max_usd": "0.577245"},
    }
    # the gpt-image-2 portrait ads: 3 images x 1372 tokens x $15/M + 45 (max 177) x $2.50/M
    [portrait] = [g for g in payload["groups"] if g["size"] == "1024x1536"]
    assert (portrait["model"], portrait["images"]) == ("gpt-image-2", 3)
    assert portrait["batch"] == {"expected_usd": "0.0618525", "max_usd": "0.0621825"}


# The three formats ------------------------------------------------------------------------------

GEMINI_REQUESTS = [
    # key, prompt, size, aspect ratio, input image
    ("g-1", "A red kettle on a stove", "512", "1:1", None),
    ("g-2", "Un café crème sur une table en chêne", "1K", "4:5", None),
    ("g-3", "日本の朝の市場、柔らかい光", "2K", "16:9", "gs://bucket/market.png"),
    ("g-4", "Lighthouse at dusk 🌅, long exposure", "1K", "21:9", None),
]

OPENAI_REQUESTS = [
    # key, prompt, size, quality, n, input image
    ("o-1", "Square hero ad: perfume on marble", "1024x1024", "high", 1, None),
    ("o-2", "Portrait ad: runner at dawn, room for headline", "1024x1536", "medium", 2, None),
    ("o-3", "Retouch: make the sky über-blue", "1536x1024", "low", 1, "https://example.test/a.png"),
]


def _costguard_lines() -> list[dict[str, Any]]:
    """Both request sets in the costguard format, models on the lines."""
    lines: list[dict[str, Any]] = []
    for key, prompt, size, ratio, image in GEMINI_REQUESTS:
        line = {"key": key, "prompt": prompt, "model": "gemini-3.1-flash-image", "size": size}
        line["aspect_ratio"] = ratio
        if image:
            line["images"] = [image]
        lines.append(line)
    for key, prompt, size, quality, n, image in OPENAI_REQUESTS:
        line = {"key": key, "prompt": prompt, "model": "gpt-image-1.5", "size": size}
        line |= {"quality": quality, "n": n}
        if image:
            line["images"] = [image]
        lines.append(line)
    return lines


def _gemini_lines() -> list[dict[str, Any]]:
    """The Gemini requests as Gemini batch lines (the model comes from --model)."""
    lines = []
    for key, prompt, size, ratio, image in GEMINI_REQUESTS:
        parts: list[dict[str, Any]] = [{"text": prompt}]
        if image:
            parts.append({"fileData": {"fileUri": image, "mimeType": "image/png"}})
        config = {"responseModalities": ["IMAGE"], "imageConfig": {"imageSize": size}}
        config["imageConfig"]["aspectRatio"] = ratio
        request = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
        lines.append({"key": key, "request": request})
    return lines


def _openai_lines() -> list[dict[str, Any]]:
    """The OpenAI requests as OpenAI batch lines."""
    lines = []
    for key, prompt, size, quality, n, image in OPENAI_REQUESTS:
        body: dict[str, Any] = {"model": "gpt-image-1.5", "prompt": prompt, "size": size}
        body |= {"quality": quality, "n": n}
        url = "/v1/images/generations"
        if image:
            body["images"] = [{"image_url": image}]
            url = "/v1/images/edits"
        lines.append({"custom_id": key, "method": "POST", "url": url, "body": body})
    return lines


def test_gemini_format_priced_like_costguard_format(cli: Cli, make_queue: MakeQueue) -> None:
    """The same Gemini requests cost exactly the same in the costguard and Gemini formats."""
    ours = make_queue(*_costguard_lines()[: len(GEMINI_REQUESTS)], name="ours.jsonl")
    theirs = make_queue(*_gemini_lines(), name="gemini.jsonl")
    a = estimate_json(cli, ours, "--as-of", AS_OF)
    b = estimate_json(cli, theirs, "--as-of", AS_OF, "--model", "gemini-3.1-flash-image")
    assert (a["format"], b["format"]) == ("costguard", "gemini")
    assert totals(a) == totals(b)
    assert a["requests"] == 4


def test_openai_format_priced_like_costguard_format(cli: Cli, make_queue: MakeQueue) -> None:
    """The same OpenAI requests cost exactly the same in the costguard and OpenAI formats."""
    ours = make_queue(*_costguard_lines()[len(GEMINI_REQUESTS) :], name="ours.jsonl")
    theirs = make_queue(*_openai_lines(), name="openai.jsonl")
    a = estimate_json(cli, ours, "--as-of", AS_OF)
    b = estimate_json(cli, theirs, "--as-of", AS_OF)
    assert (a["format"], b["format"]) == ("costguard", "openai")
    assert totals(a) == totals(b)
    assert a["images"] == 4


def test_three_formats_price_the_same_requests_identically(cli: Cli, make_queue: MakeQueue) -> None:
    """One costguard queue of all requests equals the Gemini file plus the OpenAI file."""
    mixed = estimate_json(cli, make_queue(*_costguard_lines(), name="all.jsonl"), "--as-of", AS_OF)
    gemini = estimate_json(
        cli,
        make_queue(*_gemini_lines(), name="gemini.jsonl"),
        "--as-of",
        AS_OF,
        "--model",
        "gemini-3.1-flash-image",
    )
    openai = estimate_json(cli, make_queue(*_openai_lines(), name="openai.jsonl"), "--as-of", AS_OF)
    assert mixed["groups"] == gemini["groups"] + openai["groups"]
    for mode in ("batch", "sync"):
        for figure in ("expected_usd", "max_usd"):
            assert Decimal(mixed["totals"][mode][figure]) == Decimal(
                gemini["totals"][mode][figure]
            ) + Decimal(openai["totals"][mode][figure])
    assert mixed["requests"] == gemini["requests"] + openai["requests"] == 7


def test_format_option_overrides_detection(cli: Cli, make_queue: MakeQueue) -> None:
    """--format reads a file whose first line misleads detection."""
    path = make_queue({"key": "x", "prompt": "looks like costguard"}, *_gemini_lines())
    detected = cli("estimate", path, "--as-of", AS_OF, "--model", "gemini-3.1-flash-image")
    assert detected.code == 2
    assert "this line is in the gemini format but the file is read as costguard" in detected.err
    forced = cli(
        "estimate",
        path,
        "--as-of",
        AS_OF,
        "--model",
        "gemini-3.1-flash-image",
        "--format",
        "gemini",
    )
    assert forced.code == 2
    assert "this line is in the costguard format but the file is read as gemini (--format)" in (
        forced.err
    )
    assert "1 bad line; nothing was priced" in forced.err


# Streaming robustness ---------------------------------------------------------------------------


def test_bom_crlf_and_blank_lines_price_like_a_clean_file(cli: Cli, make_queue: MakeQueue) -> None:
    """A BOM, CRLF line ends and blank lines change nothing in the estimate."""
    lines = _costguard_lines()
    clean = make_queue(*lines, name="clean.jsonl")
    messy = make_queue(
        "", *lines[:3], "   ", "\t", *lines[3:], "", name="messy.jsonl", bom=True, newline=b"\r\n"
    )
    assert totals(estimate_json(cli, clean, "--as-of", AS_OF)) == totals(
        estimate_json(cli, messy, "--as-of", AS_OF)
    )


def test_non_ascii_prompt_tokens_come_from_bytes(cli: Cli, make_queue: MakeQueue) -> None:
    """Nine CJK characters are 27 bytes: 7 expected and 27 maximum prompt tokens."""
    path = make_queue({"key": "a", "prompt": "日本語のプロンプト", "model": "gemini-3-pro-image"})
    [group] = estimate_json(cli, path, "--as-of", AS_OF)["groups"]
    assert (group["prompt_tokens"], group["prompt_tokens_max"]) == (7, 27)


# Bad input --------------------------------------------------------------------------------------

GPT = {"key": "a", "prompt": "p", "model": "gpt-image-1.5"}
PRO = {"key": "a", "prompt": "p", "model": "gemini-3-pro-image"}
GEMINI_ARGS = ("--model", "gemini-3-pro-image")


def _gem(request: dict[str, Any]) -> dict[str, Any]:
    """A Gemini batch line around `request`."""
    return {"key": "a", "request": request}


def _oai(**line: Any) -> dict[str, Any]:
    """An OpenAI batch line with a valid default for every top-level field not given."""
    base = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1.5", "prompt": "p"},
    }
    return {key: value for key, value in (base | line).items() if value is not None}


TEXT = {"contents": [{"parts": [{"text": "p"}]}]}

BAD_INPUT = [
    pytest.param(['{"key": "a", "prompt": '], (), 1, "(line)", "invalid JSON", id="truncated-json"),
    pytest.param(
        ['{"key": "a" "prompt": "p"}'],
        (),
        1,
        "(line)",
        "invalid JSON: Expecting ','",
        id="json-missing-comma",
    ),
    pytest.param(
        ['{"key": "a", "prompt": "p"} {}'],
        (),
        1,
        "(line)",
        "invalid JSON: Extra data",
        id="json-extra-data",
    ),
    pytest.param(
        ["[1, 2]"], (), 1, "(line)", "each line must be a JSON object", id="not-an-object"
    ),
    pytest.param(
        [{"prompt": "p", "model": "gpt-image-1.5"}], (), 1, "key", "missing", id="missing-key"
    ),
    pytest.param([GPT | {"key": "   "}], (), 1, "key", "is empty", id="empty-key"),
    pytest.param(
        [GPT | {"key": 42}], (), 1, "key", "must be a string, got int", id="key-not-string"
    ),
    pytest.param(
        [{"key": "a", "model": "gpt-image-1.5"}], (), 1, "prompt", "missing", id="missing-prompt"
    ),
    pytest.param(
        [GPT, GPT | {"key": "b"}, GPT | {"prompt": "again"}],
        (),
        3,
        "key",
        "duplicate key 'a' (first used on line 1)",
        id="duplicate-key",
    ),
    pytest.param(
        [GPT | {"model": "gpt-image1.5"}],
        (),
        1,
        "model",
        "unknown model 'gpt-image1.5'. Did you mean: gpt-image-1.5",
        id="unknown-model",
    ),
    pytest.param(
        [GPT | {"model": "gpt-image-1"}],
        (),
        1,
        "model",
        "was shut down on 2026-10-23; use gpt-image-1.5 or gpt-image-2",
        id="model-shut-down",
    ),
    pytest.param(
        [PRO],
        ("--as-of", "2026-01-01"),
        1,
        "model",
        "'gemini-3-pro-image' is not priced until 2026-05-28",
        id="model-not-yet-available",
    ),
    pytest.param(
        [GPT | {"size": "512x512"}],
        (),
        1,
        "size",
        "does not support size '512x512'; allowed: 1024x1024, 1024x1536, 1536x1024",
        id="size-unsupported",
    ),
    pytest.param(
        [GPT | {"size": "auto"}],
        (),
        1,
        "size",
        "'auto' cannot be priced before the response, so name a size",
        id="size-auto",
    ),
    pytest.param(
        [GPT | {"size": ""}], (), 1, "size", "must be a non-empty string", id="size-empty"
    ),
    pytest.param(
        [GPT | {"quality": "ultra"}],
        (),
        1,
        "quality",
        "does not support quality 'ultra'; allowed: low, medium, high",
        id="quality-unsupported",
    ),
    pytest.param(
        [PRO | {"quality": "high"}],
        (),
        1,
        "quality",
        "gemini-3-pro-image has no quality setting",
        id="quality-on-gemini",
    ),
    pytest.param(
        [PRO | {"aspect_ratio": "7:3"}],
        (),
        1,
        "aspect_ratio",
        "does not support aspect ratio '7:3'; allowed: 1:1, 2:3, 3:2",
        id="aspect-ratio-unsupported",
    ),
    pytest.param(
        [GPT | {"aspect_ratio": "1:1"}],
        (),
        1,
        "aspect_ratio",
        "gpt-image-1.5 takes no aspect ratio; the size sets the shape",
        id="aspect-ratio-on-openai",
    ),
    pytest.param(
        [GPT | {"n": 0}], (), 1, "n", "0 is out of range for gpt-image-1.5 (1 to 10)", id="n-zero"
    ),
    pytest.param(
        [GPT | {"n": 11}],
        (),
        1,
        "n",
        "11 is out of range for gpt-image-1.5 (1 to 10)",
        id="n-over-max",
    ),
    pytest.param(
        [PRO | {"n": 2}],
        (),
        1,
        "n",
        "2 is out of range for gemini-3-pro-image (1 to 1)",
        id="n-over-gemini-max",
    ),
    pytest.param([GPT | {"n": "2"}], (), 1, "n", "must be a whole number, got '2'", id="n-string"),
    pytest.param([GPT | {"n": 2.0}], (), 1, "n", "must be a whole number, got 2.0", id="n-float"),
    pytest.param(
        [GPT | {"n": True}], (), 1, "n", "must be a whole number, got True", id="n-boolean"
    ),
    pytest.param(
        [PRO | {"images": ["missing.png"]}],
        (),
        1,
        "images[0]",
        "input image not found",
        id="image-missing",
    ),
    pytest.param(
        [PRO | {"images": "a.png"}],
        (),
        1,
        "images",
        "must be a list of paths or URIs",
        id="images-not-a-list",
    ),
    pytest.param(
        [
            {
                "key": "a",
                "prompt": "p",
                "model": "imagen-4.0-generate-001",
                "images": ["gs://b/x.png"],
            }
        ],
        ("--as-of", "2026-06-01"),
        1,
        "images",
        "imagen-4.0-generate-001 does not take input images",
        id="images-on-imagen",
    ),
    pytest.param(
        [{"key": "a", "prompt": "p"}],
        (),
        1,
        "model",
        "no model: set it on the line or pass --model",
        id="no-model",
    ),
    pytest.param(
        [_gem(TEXT)],
        (),
        1,
        "model",
        "no model: set it on the line or pass --model",
        id="gemini-without-model",
    ),
    pytest.param(
        [_gem({"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/x.png"}}]}]})],
        GEMINI_ARGS,
        1,
        "request.contents",
        "no text part: the prompt is missing",
        id="gemini-no-text-part",
    ),
    pytest.param(
        [_gem({"contents": [{"parts": [{"video": "x"}]}]})],
        GEMINI_ARGS,
        1,
        "request.contents[0].parts[0].video",
        "cannot be priced: costguard prices text, inlineData and fileData parts",
        id="gemini-unknown-part",
    ),
    pytest.param(
        [_gem(TEXT | {"generationConfig": {"imageConfig": {"imageSize": "8K"}}})],
        GEMINI_ARGS,
        1,
        "request.generationConfig.imageConfig.imageSize",
        "does not support size '8K'; allowed: 1K, 2K, 4K",
        id="gemini-size-unsupported",
    ),
    pytest.param(
        [_oai(method="GET")],
        (),
        1,
        "method",
        "must be \"POST\", got 'GET'",
        id="openai-wrong-method",
    ),
    pytest.param(
        [_oai(url="/v1/chat/completions")],
        (),
        1,
        "url",
        "must be /v1/images/generations or /v1/images/edits, got '/v1/chat/completions'",
        id="openai-wrong-url",
    ),
    pytest.param(
        [_oai(url="/v1/images/edits")],
        (),
        1,
        "body.images",
        "an edit needs at least one input image",
        id="openai-edit-without-images",
    ),
    pytest.param(
        [_oai(body=None)], (), 1, "body", "missing or not an object", id="openai-body-missing"
    ),
    pytest.param(
        [_oai(body={"model": "gpt-image-1.5"})],
        (),
        1,
        "body.prompt",
        "missing",
        id="openai-prompt-missing",
    ),
    pytest.param(
        [_oai(body={"model": "gpt-image-1.5", "prompt": "p", "quality": "auto"})],
        (),
        1,
        "body.quality",
        "does not support quality 'auto'",
        id="openai-quality-auto",
    ),
    pytest.param(
        [GPT, _gem(TEXT)],
        (),
        2,
        "(line)",
        "this line is in the gemini format but the file is read as costguard",
        id="gemini-line-in-costguard-file",
    ),
    pytest.param(
        [b'{"key": "a", "prompt": "caf\xe9", "model": "gpt-image-1.5"}'],
        (),
        1,
        "(line)",
        "not valid UTF-8 at byte 27",
        id="invalid-utf8",
    ),
    pytest.param([], (), None, "(file)", "the queue is empty", id="empty-file"),
    pytest.param(["", "  ", "\t"], (), None, "(file)", "the queue is empty", id="only-blank-lines"),
]


@pytest.mark.parametrize(("lines", "args", "line", "field", "fragment"), BAD_INPUT)
def test_bad_input_is_refused_with_file_line_field_and_message(
    cli: Cli,
    make_queue: MakeQueue,
    lines: list[Any],
    args: tuple[str, ...],
    line: int | None,
    field: str,
    fragment: str,
) -> None:
    """A bad queue exits 2, names file:line, field and problem, and prices nothing."""
    path = make_queue(*lines)
    result = cli("estimate", path, "--as-of", AS_OF, *args)
    assert result.code == 2
    assert result.out == ""
    where = f"{path}:{line}" if line is not None else str(path)
    errors = [e for e in result.err.splitlines() if e.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {where}: {field}: ")
    assert fragment in errors[0]
    assert result.err.splitlines()[-1] == "1 bad line; nothing was priced"


def test_bad_input_cases_cover_the_spec() -> None:
    """The parametrized table holds at least 25 distinct bad-input cases."""
    assert len({p.id for p in BAD_INPUT}) == len(BAD_INPUT) >= 25


def test_more_than_twenty_bad_lines_shows_twenty_and_the_count(
    cli: Cli, make_queue: MakeQueue
) -> None:
    """With 23 bad lines, 20 are shown, then the total and how many were left out."""
    bad = [GPT | {"key": f"k{i}", "n": 0} for i in range(23)]
    path = make_queue(GPT | {"key": "good"}, *bad)
    result = cli("estimate", path, "--as-of", AS_OF)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 21
    assert lines[0].startswith(f"error: {path}:2: n: ")
    assert lines[19].startswith(f"error: {path}:21: n: ")
    assert lines[20] == "23 bad lines (3 more not shown); nothing was priced"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--as-of", "2026-13-01"), "--as-of: '2026-13-01' is not a date", id="as-of"),
        pytest.param(
            ("--max-usd", "abc"), "--max-usd: 'abc' is not an amount in USD", id="max-usd-text"
        ),
        pytest.param(
            ("--max-usd", "-1"), "--max-usd: '-1' is not an amount in USD", id="max-usd-negative"
        ),
        pytest.param(
            ("--max-usd", "NaN"), "--max-usd: 'NaN' is not an amount in USD", id="max-usd-nan"
        ),
        pytest.param(
            ("--max-usd", "9e999999999999999999"),
            "--max-usd: '9e999999999999999999' is not an amount in USD; give one from 0 to "
            "$1,000,000,000.00",
            id="max-usd-huge",
        ),
        pytest.param(
            ("--max-usd", "1000000000.01"),
            "--max-usd: '1000000000.01' is not an amount in USD",
            id="max-usd-over-the-maximum",
        ),
        pytest.param(("--format", "xml"), "Invalid value for '--format'", id="format"),
        pytest.param(("--mode", "cheap"), "Invalid value for '--mode'", id="mode"),
        pytest.param(("--output", "yaml"), "Invalid value for '--output'", id="output"),
        pytest.param(
            ("--budget-mode", "both"), "Invalid value for '--budget-mode'", id="budget-mode"
        ),
    ],
)
def test_bad_option_value_exits_2_with_one_error_line(
    cli: Cli, make_queue: MakeQueue, args: tuple[str, ...], message: str
) -> None:
    """A bad option value exits 2 with a single error line and nothing on stdout."""
    path = make_queue(GPT)
    result = cli("estimate", path, *args)
    assert result.code == 2
    assert result.out == ""
    errors = [e for e in result.err.splitlines() if e.lower().startswith("error: ")]
    assert len(errors) == 1
    assert message in errors[0]
    assert "Traceback" not in result.err


def test_missing_queue_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    """A queue file that does not exist is one error line, not a count of bad lines."""
    path = tmp_path / "nope.jsonl"
    result = cli("estimate", path, "--as-of", AS_OF)
    assert result.code == 2
    assert result.out == ""
    assert result.err == f"error: {path}: queue file not found\n"


# --as-of ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "card", "batch", "sync_expected"),
    [
        pytest.param(
            "2025-11-03",
            "gemini/2025-10-02",
            {"expected_usd": "0.019545", "max_usd": "0.0195495"},
            "0.03909",
            id="before-change-1290-tokens",
        ),
        pytest.param(
            "2025-11-04",
            "gemini/2025-11-04",
            {"expected_usd": "0.0193902", "max_usd": "0.0193947"},
            "0.0387804",
            id="after-change-258-tokens",
        ),
    ],
)
def test_card_in_force_sets_input_image_tokens(
    cli: Cli,
    tmp_path: Path,
    make_queue: MakeQueue,
    as_of: str,
    card: str,
    batch: dict[str, str],
    sync_expected: str,
) -> None:
    """2.5 Flash Image input images cost 1290 tokens before 2025-11-04 and 258 from then."""
    (tmp_path / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    path = make_queue(
        {"key": "a", "prompt": "x" * 40, "model": "gemini-2.5-flash-image", "images": ["ref.png"]}
    )
    payload = estimate_json(cli, path, "--as-of", as_of)
    assert payload["rate_cards"] == [card]
    assert payload["totals"]["batch"] == batch
    assert Decimal(payload["totals"]["sync"]["expected_usd"]) == Decimal(sync_expected)


def test_model_near_shutdown_warns_and_exits_0(cli: Cli, make_queue: MakeQueue) -> None:
    """A model within 30 days of shutdown is priced, with a warning, in every output."""
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-2.5-flash-image"})
    warning = (
        "warning: model 'gemini-2.5-flash-image' shuts down on 2026-10-02 (in 17 days); "
        "use gemini-3.1-flash-image or gemini-3.1-flash-lite-image"
    )
    table = cli("estimate", path, "--as-of", "2026-09-15")
    assert table.code == 0
    assert warning in textkit.unwrap(table.out)
    as_json = cli("estimate", path, "--as-of", "2026-09-15", "--output", "json")
    assert as_json.code == 0
    assert json.loads(as_json.out)["warnings"] == [warning.removeprefix("warning: ")]
    as_csv = cli("estimate", path, "--as-of", "2026-09-15", "--output", "csv")
    assert as_csv.code == 0
    assert as_csv.err.splitlines() == [warning]


def test_before_the_first_card_is_a_rate_card_error(cli: Cli, make_queue: MakeQueue) -> None:
    """An --as-of before the provider's first card exits 4: no card is in force."""
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-2.5-flash-image"})
    result = cli("estimate", path, "--as-of", "2025-01-01")
    assert result.code == 4
    assert result.out == ""
    assert result.err == (
        "error: no gemini rate card is in force on 2025-01-01 (for 'gemini-2.5-flash-image'); "
        "the first gemini card is 2025-10-02\n"
    )


# --max-usd --------------------------------------------------------------------------------------


def test_budget_that_fits_exits_0(cli: Cli, examples_dir: Path) -> None:
    """When the batch maximum fits --max-usd, the table says so and the exit code is 0."""
    result = cli(
        "estimate", examples_dir / "catalog.jsonl", "--as-of", CATALOG_AS_OF, "--max-usd", "1"
    )
    assert result.code == 0
    assert "within budget: the batch maximum $0.58 fits --max-usd $1.00" in result.out


def test_budget_boundary_is_inclusive(cli: Cli, examples_dir: Path) -> None:
    """A maximum exactly equal to --max-usd fits; one millionth of a dollar less does not, and
    the message shows the maximum and the limit with the digits that tell them apart."""
    catalog = examples_dir / "catalog.jsonl"
    fits = cli("estimate", catalog, "--as-of", CATALOG_AS_OF, "--max-usd", "0.577245")
    assert fits.code == 0
    assert "within budget: the batch maximum $0.577245 fits --max-usd $0.577245" in fits.out
    over = cli("estimate", catalog, "--as-of", CATALOG_AS_OF, "--max-usd", "0.577244")
    assert over.code == 3
    assert over.err.splitlines()[0] == (
        "over budget: the batch maximum $0.577245 passes --max-usd $0.577244 by $0.0000010"
    )


def test_over_budget_exits_3_and_says_what_fits(cli: Cli, examples_dir: Path) -> None:
    """Over budget: by how much, how many first requests fit, and a cheaper option."""
    result = cli(
        "estimate", examples_dir / "catalog.jsonl", "--as-of", CATALOG_AS_OF, "--max-usd", "0.30"
    )
    assert result.code == 3
    lines = result.err.splitlines()
    assert lines[0] == "over budget: the batch maximum $0.58 passes --max-usd $0.30 by $0.28"
    # per-request batch maxima in queue order: 0.03587375, 0.0358745, 0.03587125, 0.0526725,
    # 0.0526675 (sum 0.2129595), then the 3 Pro 4K request at 0.14409 no longer fits
    assert "  would fit: the first 5 requests (max $0.21)" in lines
    assert any(
        line.startswith("  would fit: the same queue on gpt-image-1-mini (max $")
        and line.endswith("--compare gpt-image-1-mini)")
        for line in lines
    )
    assert "TOTAL" in result.out  # the table is still shown


def test_budget_mode_sync_checks_the_sync_maximum(cli: Cli, examples_dir: Path) -> None:
    """--budget-mode sync holds the sync maximum against the budget instead."""
    catalog = examples_dir / "catalog.jsonl"
    over = cli(
        "estimate", catalog, "--as-of", CATALOG_AS_OF, "--max-usd", "1", "--budget-mode", "sync"
    )
    assert over.code == 3
    assert over.err.splitlines()[0] == (
        "over budget: the sync maximum $1.15 passes --max-usd $1.00 by $0.15"
    )
    fits = cli(
        "estimate", catalog, "--as-of", CATALOG_AS_OF, "--max-usd", "2", "--budget-mode", "sync"
    )
    assert fits.code == 0
    assert "within budget: the sync maximum $1.15 fits --max-usd $2.00" in fits.out


@pytest.mark.parametrize(
    ("limit", "code", "budget"),
    [
        pytest.param(
            "1",
            0,
            {
                "max_usd": "1",
                "mode": "batch",
                "fits": True,
                "needed_usd": "0.577245",
                "shortfall_usd": "0",
            },
            id="fits",
        ),
        pytest.param(
            "0.30",
            3,
            {
                "max_usd": "0.3",
                "mode": "batch",
                "fits": False,
                "needed_usd": "0.577245",
                "shortfall_usd": "0.277245",
            },
            id="over",
        ),
    ],
)
def test_json_budget_object(
    cli: Cli, examples_dir: Path, limit: str, code: int, budget: dict[str, Any]
) -> None:
    """With --output json the budget check is an object: limit, mode, fits, figures."""
    result = cli(
        "estimate",
        examples_dir / "catalog.jsonl",
        "--as-of",
        CATALOG_AS_OF,
        "--max-usd",
        limit,
        "--output",
        "json",
    )
    assert result.code == code
    payload = json.loads(result.out)
    assert {key: payload["budget"][key] for key in budget} == budget
    if code == 3:
        assert payload["budget"]["first_requests_that_fit"] == 5
        assert payload["budget"]["cheaper_models"][0]["model"] == "gpt-image-1-mini"


def test_budget_on_a_queue_that_cannot_be_batched(cli: Cli, make_queue: MakeQueue) -> None:
    """Imagen 4 has no batch tier: a batch budget is refused with a reason, a sync one works."""
    path = make_queue({"key": "a", "prompt": "p", "model": "imagen-4.0-generate-001"})
    batch = cli("estimate", path, "--as-of", "2026-06-01", "--max-usd", "5")
    assert batch.code == 3
    assert batch.err.splitlines()[0] == (
        "over budget: the queue has no batch price (a model in it is not sold in batch mode), "
        "so it cannot fit --max-usd $5.00 as a batch; check it with --budget-mode sync"
    )
    assert "Traceback" not in batch.err
    sync = cli("estimate", path, "--as-of", "2026-06-01", "--max-usd", "5", "--budget-mode", "sync")
    assert sync.code == 0


# Output -----------------------------------------------------------------------------------------


def test_json_output_schema(cli: Cli, examples_dir: Path) -> None:
    """The JSON has the documented keys, money as exact decimal strings, totals = sum of groups."""
    payload = estimate_json(cli, examples_dir / "catalog.jsonl", "--as-of", CATALOG_AS_OF)
    assert {"requests", "images", "as_of", "rate_cards", "totals", "groups"} <= set(payload)
    assert payload["as_of"] == CATALOG_AS_OF
    assert isinstance(payload["requests"], int)
    for mode in ("batch", "sync"):
        for figure in ("expected_usd", "max_usd"):
            text = payload["totals"][mode][figure]
            assert isinstance(text, str)
            assert "e" not in text.lower()
            assert Decimal(text) == sum(Decimal(g[mode][figure]) for g in payload["groups"])
    group = payload["groups"][0]
    assert set(group) >= {"provider", "model", "size", "quality", "rate_card", "unit_usd"}
    assert sum(g["requests"] for g in payload["groups"]) == payload["requests"]


def test_compare_prices_the_queue_on_other_models(cli: Cli, make_queue: MakeQueue) -> None:
    """--compare M1,M2 adds the same queue priced on each model, at its default settings."""
    path = make_queue(
        {"key": "a", "prompt": "abcd", "model": "gemini-3.1-flash-image", "size": "512"}
    )
    payload = estimate_json(
        cli, path, "--as-of", AS_OF, "--compare", "gpt-image-2, gemini-3-pro-image"
    )
    first, second = payload["compare"]
    assert first["models"] == ["gpt-image-2"]
    # 1024x1024 medium: 1756 x $15/M + prompt 1 (max 4) x $2.50/M
    assert first["totals"]["batch"] == {"expected_usd": "0.0263425", "max_usd": "0.02635"}
    assert second["models"] == ["gemini-3-pro-image"]
    table = cli("estimate", path, "--as-of", AS_OF, "--compare", "gpt-image-2", "--mode", "batch")
    assert "compare gpt-image-2: batch expected $0.0263, max $0.0264" in table.out.splitlines()


def test_compare_with_unknown_model(cli: Cli, make_queue: MakeQueue) -> None:
    """An unknown --compare model is refused with a suggestion."""
    result = cli("estimate", make_queue(GPT), "--as-of", AS_OF, "--compare", "gpt-image-3")
    assert result.code == 2
    assert "unknown model 'gpt-image-3'. Did you mean:" in result.err


@pytest.mark.parametrize(
    ("mode", "columns"),
    [
        pytest.param(
            "batch",
            ["batch $/image", "batch expected", "batch max"],
            id="batch",
        ),
        pytest.param(
            "sync",
            ["sync $/image", "sync expected", "sync max"],
            id="sync",
        ),
        pytest.param("both", ["batch expected-max", "sync expected-max"], id="both"),
    ],
)
def test_mode_chooses_the_table_columns(
    cli: Cli, make_queue: MakeQueue, mode: str, columns: list[str]
) -> None:
    """--mode batch|sync shows that mode's unit price, expected and max; both shows each
    mode's expected-max range (unit prices and the saving are --wide columns)."""
    result = cli("estimate", make_queue(GPT), "--as-of", AS_OF, "--mode", mode)
    assert result.code == 0
    header, _ = textkit.table(result.out)
    assert header == ["model", "size", "quality", "requests", "images", *columns]


@pytest.mark.parametrize(
    ("mode", "columns"),
    [
        pytest.param("batch", ["batch $/image", "batch expected", "batch max"], id="batch"),
        pytest.param(
            "both",
            [
                "batch $/image",
                "batch expected",
                "batch max",
                "sync $/image",
                "sync expected",
                "sync max",
                "batch saves",
            ],
            id="both",
        ),
    ],
)
def test_wide_shows_every_column(
    cli: Cli, examples_dir: Path, mode: str, columns: list[str]
) -> None:
    """--wide shows the provider and every mode's unit price, expected and max (and the
    saving with both), and the notes unwrapped."""
    catalog = examples_dir / "catalog.jsonl"
    result = cli("estimate", catalog, "--as-of", README_AS_OF, "--mode", mode, "--wide")
    assert result.code == 0
    header, rows = textkit.table(result.out)
    assert header == ["provider", "model", "size", "quality", "requests", "images", *columns]
    assert rows[0][:6] == ["gemini", "gemini-3-pro-image", "4K", "-", "1", "1"]
    assert rows[-1][0] == "TOTAL"
    assumed = [line for line in result.out.splitlines() if line.startswith("assumed:")]
    assert len(assumed) == 1
    assert assumed == [line for line in textkit.unwrap(result.out) if line.startswith("assumed:")]
    assert textkit.widest(result.out) > 100


def test_default_table_fits_100_columns(cli: Cli, examples_dir: Path) -> None:
    """The README example's whole default output (table and notes) fits 100 columns, in every
    mode; the notes wrap and read back whole."""
    catalog = examples_dir / "catalog.jsonl"
    for mode in ("both", "batch", "sync"):
        result = cli("estimate", catalog, "--as-of", README_AS_OF, "--mode", mode)
        assert result.code == 0
        assert textkit.widest(result.out) <= 100, result.out
        assert "left out to fit" not in result.out  # the default layout fits by design
    lines = textkit.unwrap(result.out)
    assert any(
        line.startswith("assumed: ") and line.endswith("(no published count)") for line in lines
    )


def test_long_model_names_still_fit_100_columns(cli: Cli, make_queue: MakeQueue) -> None:
    """The longest model ids (30 characters) with amounts that need six decimals to tell the
    expected from the max fit 100 columns: columns are left out (the table says which, and
    --wide shows them), never cut."""
    names = ["gemini-2.5-flash-image-preview", "imagen-4.0-generate-001", "gpt-image-1-mini"]
    path = make_queue(
        *({"key": f"k{i}", "prompt": "a red fox", "model": m} for i, m in enumerate(names)),
        {"key": "low", "prompt": "p", "model": "gpt-image-1", "quality": "low"},
    )
    for mode in ("both", "batch", "sync"):
        result = cli("estimate", path, "--as-of", "2025-11-01", "--mode", mode)
        assert result.code == 0, result.err
        assert textkit.widest(result.out) <= 100, result.out
        _, rows = textkit.table(result.out)
        assert [row[0] for row in rows] == [*names[:1], names[1], "gpt-image-1", names[2], "TOTAL"]
        wide = cli("estimate", path, "--as-of", "2025-11-01", "--mode", mode, "--wide")
        assert "left out to fit" not in wide.out
    both = cli("estimate", path, "--as-of", "2025-11-01")
    header, rows = textkit.table(both.out)
    assert header[-1] == "batch expected-max"
    assert rows[0][-1] == "$0.019350-$0.019351"  # equal at fewer decimals: they are not
    assert (
        "(left out to fit 100 columns: sync expected-max; --wide shows every column)"
        in both.out.splitlines()
    )


def test_csv_output(cli: Cli, examples_dir: Path) -> None:
    """CSV has one row per group, exact decimal strings that add up to the JSON totals."""
    catalog = examples_dir / "catalog.jsonl"
    result = cli("estimate", catalog, "--as-of", CATALOG_AS_OF, "--output", "csv")
    assert result.code == 0
    header, *rows = [line.split(",") for line in result.out.splitlines()]
    assert header == [
        "provider",
        "model",
        "size",
        "quality",
        "rate_card",
        "requests",
        "images",
        "sync_unit_usd",
        "sync_expected_usd",
        "sync_max_usd",
        "batch_unit_usd",
        "batch_expected_usd",
        "batch_max_usd",
    ]
    assert len(rows) == 7
    assert rows[0][:7] == ["gemini", "gemini-3-pro-image", "4K", "", "gemini/2026-10-02", "1", "1"]
    assert rows[0][10] == "0.12"
    column = header.index("batch_expected_usd")
    assert sum(Decimal(r[column]) for r in rows) == Decimal("0.54122325")


@pytest.mark.parametrize(
    ("mode", "money"),
    [
        pytest.param(
            "batch", ["batch_unit_usd", "batch_expected_usd", "batch_max_usd"], id="batch"
        ),
        pytest.param("sync", ["sync_unit_usd", "sync_expected_usd", "sync_max_usd"], id="sync"),
    ],
)
def test_csv_output_honours_mode(cli: Cli, examples_dir: Path, mode: str, money: list[str]) -> None:
    """`--output csv --mode batch|sync` has that mode's columns only, with the same figures."""
    catalog = examples_dir / "catalog.jsonl"
    both = cli("estimate", catalog, "--as-of", CATALOG_AS_OF, "--output", "csv")
    one = cli("estimate", catalog, "--as-of", CATALOG_AS_OF, "--output", "csv", "--mode", mode)
    assert one.code == 0
    header, *rows = [line.split(",") for line in one.out.splitlines()]
    assert header == [
        "provider",
        "model",
        "size",
        "quality",
        "rate_card",
        "requests",
        "images",
        *money,
    ]
    full_header, *full_rows = [line.split(",") for line in both.out.splitlines()]
    picked = [full_header.index(name) for name in header]
    assert rows == [[row[i] for i in picked] for row in full_rows]


def test_markdown_output_is_a_pull_request_comment(cli: Cli, examples_dir: Path) -> None:
    """`--output markdown`: a heading, what was priced, a GitHub table of every column with a
    bold TOTAL, the budget verdict, and the assumed figures folded; `$` escaped throughout."""
    catalog = examples_dir / "catalog.jsonl"
    args = ["estimate", catalog, "--as-of", README_AS_OF, "--output", "markdown"]
    result = cli(*args, "--max-usd", "1")
    assert result.code == 0, result.err
    assert result.err == ""
    blocks = result.out.rstrip("\n").split("\n\n")
    assert blocks[0] == "### costguard estimate"
    assert blocks[1] == (
        f"`{catalog}` (costguard format): 12 requests, 13 images, priced as of 2026-11-26 "
        "(rate cards gemini/2026-11-26, openai/2026-11-26)."
    )
    head, align, *rows = blocks[2].splitlines()
    assert head == (
        "| provider | model | size | quality | requests | images | batch \\$/image | "
        "batch expected | batch max | sync \\$/image | sync expected | sync max | batch saves |"
    )
    assert align == "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    assert rows[0] == (
        "| gemini | gemini-3-pro-image | 4K | - | 1 | 1 | \\$0.12 | \\$0.12 | \\$0.14 | "
        "\\$0.24 | \\$0.24 | \\$0.29 | \\$0.12 |"
    )
    assert rows[-1] == (
        "| **TOTAL** |  |  |  | **12** | **13** |  | **\\$0.54** | **\\$0.58** |  | "
        "**\\$1.08** | **\\$1.15** | **\\$0.54** |"
    )
    assert blocks[3] == ("**Within budget**: the batch maximum \\$0.58 fits --max-usd \\$1.00")
    assert blocks[4].startswith("<details><summary>Assumed: these figures rest on card facts")
    assert "- gemini-3-pro-image thinking tokens: 400 typical / 4,000 max" in blocks[5]
    assert "$" not in result.out.replace("\\$", "")


def test_markdown_over_budget_and_warnings(cli: Cli, make_queue: MakeQueue) -> None:
    """Over --max-usd the comment says so and lists what would fit (exit 3, the advice also on
    stderr); warnings become a GitHub alert; --mode batch shows that mode's columns only."""
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-2.5-flash-image"})
    args = ["estimate", path, "--as-of", "2026-09-15", "--output", "markdown", "--mode", "batch"]
    result = cli(*args, "--max-usd", "0.01")
    assert result.code == 3
    assert result.err.startswith("over budget: the batch maximum $0.02 passes --max-usd $0.01 by")
    blocks = result.out.split("\n\n")
    assert blocks[2].splitlines()[0] == (
        "| provider | model | size | quality | requests | images | batch \\$/image | "
        "batch expected | batch max |"
    )
    verdict = blocks[3].splitlines()
    assert verdict[0] == (
        "**Over budget**: the batch maximum \\$0.02 passes --max-usd \\$0.01 by \\$0.0094"
    )
    assert verdict[1].startswith("- would fit: ")
    assert blocks[4].splitlines() == [
        "> [!WARNING]",
        (
            "> - model 'gemini-2.5-flash-image' shuts down on 2026-10-02 (in 17 days); use "
            "gemini-3.1-flash-image or gemini-3.1-flash-lite-image"
        ),
    ]


def test_imagen_has_no_batch_price(cli: Cli, make_queue: MakeQueue) -> None:
    """Imagen 4 with --mode both: batch shows n/a in the table and null in the JSON."""
    path = make_queue({"key": "a", "prompt": "p", "model": "imagen-4.0-generate-001", "n": 4})
    table = cli("estimate", path, "--as-of", "2026-06-01", "--mode", "both")
    assert table.code == 0
    header, rows = textkit.table(table.out)
    assert header[-2:] == ["batch expected-max", "sync expected-max"]
    assert rows[0][-2:] == ["n/a", "$0.16-$0.16"]
    assert rows[-1][0] == "TOTAL"
    assert rows[-1][-2:] == ["n/a", "$0.16-$0.16"]
    wide = cli("estimate", path, "--as-of", "2026-06-01", "--mode", "both", "--wide")
    _, rows = textkit.table(wide.out)
    assert rows[0][6:] == ["n/a", "n/a", "n/a", "$0.04", "$0.16", "$0.16", "n/a"]
    assert rows[-1][6:] == ["", "n/a", "n/a", "", "$0.16", "$0.16", "n/a"]
    assert "batch saves" not in table.out  # nothing to save: no batch tier
    payload = estimate_json(cli, path, "--as-of", "2026-06-01", "--mode", "both")
    assert payload["totals"] == {"sync": {"expected_usd": "0.16", "max_usd": "0.16"}, "batch": None}
    assert payload["batch_saving"] is None
    assert payload["groups"][0]["unit_usd"] == {"sync": "0.04", "batch": None}


# User cards through the CLI ---------------------------------------------------------------------

NEW_MODEL = """\
  - id: house-image-1
    sizes: [1K]
    default_size: 1K
    output_image_tokens: {1K: 1000}
    modes:
      standard:
        input_text_per_mtok: "1"
        output_image_per_mtok: "10"
      batch:
        input_text_per_mtok: "0.5"
        output_image_per_mtok: "5"
"""


def _user_cards(root: Path, price: str = "5") -> Path:
    """A pricing folder whose gemini/2026-10-02 is the shipped card plus `house-image-1`."""
    text = (shipped_dir() / "gemini" / "2026-10-02.yaml").read_text(encoding="utf-8")
    path = root / "gemini" / "2026-10-02.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text.rstrip("\n") + "\n" + NEW_MODEL.replace('"5"', f'"{price}"'))
    return root


def test_pricing_option_adds_a_model(cli: Cli, tmp_path: Path, make_queue: MakeQueue) -> None:
    """--pricing DIR replaces the shipped card of that date, so its new model is priced."""
    user = _user_cards(tmp_path / "mine")
    path = make_queue({"key": "a", "prompt": "abcd", "model": "house-image-1"})
    payload = estimate_json(cli, path, "--as-of", AS_OF, "--pricing", user)
    # 1000 x $5/M + 1 (max 4) x $0.5/M
    assert payload["totals"]["batch"] == {"expected_usd": "0.0050005", "max_usd": "0.005002"}
    shipped_only = cli("estimate", path, "--as-of", AS_OF)
    assert shipped_only.code == 2
    assert "unknown model 'house-image-1'" in shipped_only.err


def test_pricing_env_var_and_option_precedence(
    cli: Cli, tmp_path: Path, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COSTGUARD_PRICING_DIR adds cards; --pricing wins over it for the same card."""
    from_env = _user_cards(tmp_path / "env", price="5")
    from_option = _user_cards(tmp_path / "opt", price="7")
    monkeypatch.setenv("COSTGUARD_PRICING_DIR", str(from_env))
    path = make_queue({"key": "a", "prompt": "abcd", "model": "house-image-1"})
    env_only = estimate_json(cli, path, "--as-of", AS_OF)
    assert env_only["groups"][0]["unit_usd"]["batch"] == "0.005"
    both = estimate_json(cli, path, "--as-of", AS_OF, "--pricing", from_option)
    assert both["groups"][0]["unit_usd"]["batch"] == "0.007"


def test_broken_user_card_exits_4_with_one_line(
    cli: Cli, make_card: Callable[..., Path], make_queue: MakeQueue, tmp_path: Path
) -> None:
    """A broken user card stops the estimate with exit 4 and one line naming the file."""
    card = make_card(replace={"output_image_per_mtok: 30": "output_image_per_mtok: -1"})
    result = cli("estimate", make_queue(GPT), "--as-of", AS_OF, "--pricing", tmp_path / "cards")
    assert result.code == 4
    assert result.out == ""
    assert result.err.startswith(f"error: {card}: model test-image: modes.standard.")
    assert len(result.err.splitlines()) == 1


def test_missing_pricing_folder_exits_4(cli: Cli, make_queue: MakeQueue, tmp_path: Path) -> None:
    """A --pricing folder that does not exist is a rate-card problem."""
    result = cli("estimate", make_queue(GPT), "--as-of", AS_OF, "--pricing", tmp_path / "none")
    assert result.code == 4
    assert "pricing folder does not exist" in result.err


# The real entry points --------------------------------------------------------------------------


def _console_script() -> Path:
    """The `costguard` script installed beside this Python."""
    script = Path(sys.executable).parent / (
        "costguard.exe" if sys.platform == "win32" else "costguard"
    )
    if not script.exists():
        pytest.skip(f"no costguard console script beside {sys.executable}")
    return script


def test_python_m_costguard_matches_in_process_run(cli: Cli, examples_dir: Path) -> None:
    """`python -m costguard estimate` prints the same JSON the in-process CLI does."""
    catalog = examples_dir / "catalog.jsonl"
    args = ["estimate", str(catalog), "--as-of", CATALOG_AS_OF, "--output", "json"]
    done = subprocess.run(
        [sys.executable, "-m", "costguard", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == estimate_json(cli, *args[1:-2])


def test_console_script_exit_codes(examples_dir: Path, tmp_path: Path) -> None:
    """The installed `costguard` script exits 3 over budget and 2 on bad input."""
    script = _console_script()
    catalog = examples_dir / "catalog.jsonl"
    over = subprocess.run(
        [script, "estimate", catalog, "--as-of", CATALOG_AS_OF, "--max-usd", "0.30"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert over.returncode == 3
    assert over.stderr.startswith("over budget: the batch maximum $0.58 passes")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "a"}\n', encoding="utf-8")
    refused = subprocess.run(
        [script, "estimate", bad, "--as-of", CATALOG_AS_OF],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"{bad}:1: prompt: missing" in refused.stderr


# A queue on stdin ----------------------------------------------------------------------------


@pytest.fixture
def stdin(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Callable[[bytes], None]:
    """Factory: make `data` the CLI's stdin, through a real pipe (not seekable, read once)."""

    def feed(data: bytes) -> None:
        read_fd, write_fd = os.pipe()

        def write() -> None:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)

        threading.Thread(target=write, daemon=True).start()
        reader = io.TextIOWrapper(os.fdopen(read_fd, "rb"))
        request.addfinalizer(reader.close)
        monkeypatch.setattr(sys, "stdin", reader)

    return feed


def test_a_queue_on_stdin_prices_like_the_file(
    cli: Cli, examples_dir: Path, stdin: Callable[[bytes], None]
) -> None:
    """`estimate -` reads the queue from stdin: same figures, named `<stdin>`."""
    catalog = examples_dir / "catalog.jsonl"
    stdin(catalog.read_bytes())
    piped = estimate_json(cli, "-", "--as-of", CATALOG_AS_OF)
    from_file = estimate_json(cli, catalog, "--as-of", CATALOG_AS_OF)
    assert piped["queue"] == "<stdin>"
    assert totals(piped) == totals(from_file)
    stdin(catalog.read_bytes())
    table = cli("estimate", "-", "--as-of", CATALOG_AS_OF).out
    assert "<stdin> (costguard format), priced as of 2026-11-24" in table


@pytest.mark.parametrize("fmt", ["gemini", "openai"])
def test_the_format_on_stdin_is_detected_past_blank_lines(
    cli: Cli, make_queue: MakeQueue, stdin: Callable[[bytes], None], fmt: str
) -> None:
    """The lines read to detect the format (blank ones, then the first) are priced too."""
    lines = _gemini_lines() if fmt == "gemini" else _openai_lines()
    path = make_queue(*lines)
    model = ("--model", "gemini-3.1-flash-image") if fmt == "gemini" else ()
    stdin(b"\n\r\n" + path.read_bytes())
    piped = estimate_json(cli, "-", "--as-of", AS_OF, *model)
    assert piped["format"] == fmt
    assert totals(piped) == totals(estimate_json(cli, path, "--as-of", AS_OF, *model))


def test_bad_lines_on_stdin_are_named_stdin_and_line(
    cli: Cli, stdin: Callable[[bytes], None]
) -> None:
    """Errors name `<stdin>:LINE`, exit 2, nothing priced."""
    good = {"key": "a", "prompt": "a fox", "model": "gpt-image-2"}
    stdin(b"\n".join(json.dumps(x).encode() for x in (good, {"key": "b"}, good)) + b"\n")
    result = cli("estimate", "-", "--as-of", AS_OF)
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        "error: <stdin>:2: prompt: missing",
        (
            "error: <stdin>:3: key: duplicate key 'a' (first used on line 1); results are "
            "matched by key, so keys must be unique"
        ),
        "2 bad lines; nothing was priced",
    ]


def test_relative_image_paths_on_stdin_are_relative_to_the_current_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdin: Callable[[bytes], None]
) -> None:
    """A queue on stdin has no folder of its own: `images` paths start from the current one."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "in.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    line = {"key": "a", "prompt": "retouch", "model": "gpt-image-2", "images": ["in.png"]}
    monkeypatch.chdir(here)
    stdin(json.dumps(line).encode() + b"\n")
    assert cli("estimate", "-", "--as-of", AS_OF).code == 0
    monkeypatch.chdir(tmp_path)
    stdin(json.dumps(line).encode() + b"\n")
    result = cli("estimate", "-", "--as-of", AS_OF)
    assert result.code == 2
    assert result.err.startswith("error: <stdin>:1: images[0]: input image not found: in.png")


def test_over_budget_on_stdin_still_counts_the_first_requests_that_fit(
    examples_dir: Path,
) -> None:
    """A pipe is read once; how many first requests fit is counted in that same pass."""
    catalog = (examples_dir / "catalog.jsonl").read_bytes()
    args = ["estimate", "-", "--as-of", CATALOG_AS_OF, "--max-usd", "0.30"]
    done = subprocess.run(
        [sys.executable, "-m", "costguard", *args], input=catalog, capture_output=True, check=False
    )
    assert done.returncode == 3
    lines = done.stderr.decode().splitlines()
    assert lines[0] == "over budget: the batch maximum $0.58 passes --max-usd $0.30 by $0.28"
    assert "  would fit: the first 5 requests (max $0.21)" in lines
    json_run = subprocess.run(
        [sys.executable, "-m", "costguard", *args, "--output", "json"],
        input=catalog,
        capture_output=True,
        check=False,
    )
    assert json.loads(json_run.stdout)["budget"]["first_requests_that_fit"] == 5
