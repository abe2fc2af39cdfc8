"""`costguard prices`: per-image prices by provider, model and date; diffs; the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from costguard.resources import data_dir

Cli = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("memo_cards")


def prices_json(cli: Cli, *args: str) -> list[dict[str, str]]:
    """Run `prices --output json` and return its rows (exit code must be 0)."""
    result = cli("prices", *args, "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_prices_for_one_provider(cli: Cli) -> None:
    """--provider lists only that provider's callable models, every size of each."""
    rows = prices_json(cli, "--provider", "gemini", "--as-of", "2026-11-01")
    assert {r["provider"] for r in rows} == {"gemini"}
    models = {r["model"] for r in rows}
    assert models == {"gemini-3-pro-image", "gemini-3.1-flash-image", "gemini-3.1-flash-lite-image"}
    flash = {r["size"]: r for r in rows if r["model"] == "gemini-3.1-flash-image"}
    assert list(flash) == ["512", "1K", "2K", "4K"]
    assert flash["512"] | {} == {
        "provider": "gemini",
        "model": "gemini-3.1-flash-image",
        "size": "512",
        "quality": "-",
        "tokens": "747",
        "sync": "0.04482",
        "batch": "0.02241",
    }


def test_prices_for_one_model_by_quality_and_size(cli: Cli) -> None:
    """--model lists every quality x size with its tokens and both modes' prices."""
    rows = prices_json(cli, "--model", "gpt-image-1", "--as-of", "2026-10-01")
    assert len(rows) == 9
    high = next(r for r in rows if r["quality"] == "high" and r["size"] == "1024x1536")
    assert (high["tokens"], high["sync"], high["batch"]) == ("6240", "0.2496", "0.1248")


@pytest.mark.parametrize(
    ("as_of", "listed"),
    [
        pytest.param("2025-12-15", False, id="day-before-launch"),
        pytest.param("2025-12-16", True, id="launch-day"),
    ],
)
def test_prices_follow_the_card_in_force(cli: Cli, as_of: str, listed: bool) -> None:
    """A model appears in the listing from the card that adds it."""
    rows = prices_json(cli, "--provider", "openai", "--as-of", as_of)
    assert ("gpt-image-1.5" in {r["model"] for r in rows}) is listed


def test_openai_batch_prices_start_with_their_card(cli: Cli) -> None:
    """GPT Image models have no batch price before openai/2026-02-10 and half price after."""
    before = prices_json(cli, "--model", "gpt-image-1.5", "--as-of", "2026-02-09")
    after = prices_json(cli, "--model", "gpt-image-1.5", "--as-of", "2026-02-10")
    assert {r["batch"] for r in before} == {"n/a"}
    medium = next(r for r in after if r["quality"] == "medium" and r["size"] == "1024x1024")
    assert (medium["sync"], medium["batch"]) == ("0.033792", "0.016896")  # 1056 x $32/M, $16/M


def test_imagen_shows_no_batch_price(cli: Cli) -> None:
    """Imagen 4 has no batch tier: `n/a` in the table and the JSON."""
    rows = prices_json(cli, "--model", "imagen-4.0-ultra-generate-001", "--as-of", "2026-06-01")
    assert [(r["size"], r["sync"], r["batch"]) for r in rows] == [
        ("1K", "0.06", "n/a"),
        ("2K", "0.06", "n/a"),
    ]
    table = cli("prices", "--model", "imagen-4.0-generate-001", "--as-of", "2026-06-01")
    assert table.code == 0
    body = table.out.splitlines()[2:]
    assert [line.split()[-2:] for line in body] == [["$0.04", "n/a"], ["$0.04", "n/a"]]


def test_prices_csv(cli: Cli) -> None:
    """CSV output has a header and one row per size and quality."""
    result = cli(
        "prices", "--model", "gemini-3-pro-image", "--as-of", "2026-11-01", "--output", "csv"
    )
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "provider,model,size,quality,tokens,sync,batch"
    assert lines[1:] == [
        "gemini,gemini-3-pro-image,1K,-,1120,0.1344,0.0672",
        "gemini,gemini-3-pro-image,2K,-,1120,0.1344,0.0672",
        "gemini,gemini-3-pro-image,4K,-,2000,0.24,0.12",
    ]


def test_prices_near_shutdown_warns(cli: Cli) -> None:
    """Listing a model close to its shutdown prints the warning on stderr."""
    result = cli("prices", "--model", "gpt-image-1", "--as-of", "2026-10-01")
    assert result.code == 0
    assert result.err.startswith(
        "warning: model 'gpt-image-1' shuts down on 2026-10-23 (in 22 days)"
    )


def test_diff_shows_the_input_image_token_change(cli: Cli) -> None:
    """The diff across 2025-11-04 shows 2.5 Flash Image input images going 1290 -> 258."""
    rows = prices_json(cli, "--diff", "2025-10-03", "2025-11-05", "--provider", "gemini")
    assert {
        "model": "gemini:gemini-2.5-flash-image",
        "field": "input_image_tokens.typical",
        "before": "1290",
        "after": "258",
    } in rows
    assert {
        "model": "gemini:gemini-2.5-flash-image",
        "field": "input_image_tokens.max",
        "before": "1290",
        "after": "258",
    } in rows
    assert {r["model"] for r in rows} == {
        "gemini:gemini-2.5-flash-image",
        "gemini:gemini-2.5-flash-image-preview",
    }
    table = cli("prices", "--diff", "2025-10-03", "2025-11-05", "--model", "gemini-2.5-flash-image")
    assert table.code == 0
    assert "input_image_tokens.typical" in table.out
    assert "openai" not in table.out


def test_diff_lists_added_models(cli: Cli) -> None:
    """A model new between the dates is listed as added."""
    rows = prices_json(cli, "--diff", "2026-04-20", "2026-04-21", "--provider", "openai")
    assert rows == [
        {
            "model": "openai:gpt-image-2",
            "field": "(model)",
            "before": "-",
            "after": "added: available",
        }
    ]


def test_diff_with_no_change(cli: Cli) -> None:
    """Between two dates under the same cards the diff says nothing changed."""
    result = cli("prices", "--diff", "2026-11-01", "2026-11-20")
    assert result.code == 0
    assert result.out == "no price or lifecycle changes between 2026-11-01 and 2026-11-20\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ("--model", "gpt-image-3", "--as-of", "2026-11-01"),
            2,
            "error: unknown model 'gpt-image-3'. Did you mean:",
            id="unknown-model",
        ),
        pytest.param(
            ("--model", "imagen-4.0-generate-001", "--as-of", "2026-11-01"),
            2,
            "error: model 'imagen-4.0-generate-001' was shut down on 2026-08-17",
            id="shut-down-model",
        ),
        pytest.param(
            ("--as-of", "2026-02-30"),
            2,
            "error: --as-of: '2026-02-30' is not a date",
            id="bad-date",
        ),
        pytest.param(
            ("--diff", "2025-10-03", "yesterday"),
            2,
            "error: --as-of: 'yesterday' is not a date",
            id="bad-diff-date",
        ),
        pytest.param(
            ("--provider", "midjourney", "--as-of", "2026-11-01"),
            2,
            "error: no models priced on 2026-11-01 for provider 'midjourney'",
            id="unknown-provider",
        ),
        pytest.param(
            ("--model", "gpt-image-1", "--as-of", "2025-10-01"),
            4,
            "error: no openai rate card is in force on 2025-10-01",
            id="before-first-card",
        ),
    ],
)
def test_prices_errors(cli: Cli, args: tuple[str, ...], code: int, message: str) -> None:
    """Bad prices requests exit with their code and one error line, printing no table."""
    result = cli("prices", *args)
    assert result.code == code
    assert result.out == ""
    assert result.err.startswith(message)
    assert len(result.err.splitlines()) == 1


def test_schema_option_prints_the_shipped_schema(cli: Cli) -> None:
    """`prices --schema` prints exactly pricing/schema.json, and --check agrees."""
    result = cli("prices", "--schema")
    assert result.code == 0
    assert result.out == (data_dir("pricing") / "schema.json").read_text(encoding="utf-8")
    checked = cli("prices", "--schema", "--check")
    assert (checked.code, checked.out, checked.err) == (0, "", "")


def test_prices_through_the_console_script() -> None:
    """The installed `costguard` script lists prices (a real process, real entry point)."""
    from pathlib import Path

    script = Path(sys.executable).parent / "costguard"
    if not script.exists():
        pytest.skip(f"no costguard console script beside {sys.executable}")
    done = subprocess.run(
        [
            script,
            "prices",
            "--model",
            "gemini-3-pro-image",
            "--as-of",
            "2026-11-01",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["size"], r["batch"]) for r in rows] == [
        ("1K", "0.0672"),
        ("2K", "0.0672"),
        ("4K", "0.12"),
    ]
