"""`estimate QUEUE --diff-base OLD_QUEUE`: what a change to a queue adds or saves (CI gate)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit

Cli = Callable[..., Any]
MakeQueue = Callable[..., Path]

AS_OF = "2026-11-26"
HIGH = {"key": "x1", "prompt": "a red fox", "model": "gpt-image-2", "quality": "high"}


@pytest.fixture
def base(examples_dir: Path, tmp_path: Path) -> Path:
    """The example catalog's first 8 lines: Gemini requests only."""
    lines = (examples_dir / "catalog.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "base.jsonl"
    path.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def new(examples_dir: Path, tmp_path: Path) -> Path:
    """The example catalog without its 4K request, plus one gpt-image-2 high request."""
    lines = (examples_dir / "catalog.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if '"4K"' not in line]
    path = tmp_path / "new.jsonl"
    path.write_text("\n".join([*kept, json.dumps(HIGH)]) + "\n", encoding="utf-8")
    return path


def estimate(cli: Cli, *args: str | Path) -> dict[str, Any]:
    """`estimate --output json` of a queue, parsed (exit 0)."""
    result = cli("estimate", *args, "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_table_shows_each_group_before_after_and_the_change(
    cli: Cli, base: Path, new: Path
) -> None:
    """Per model, size and quality: requests and the batch expected and max before -> after,
    and the change of the max; TOTAL; within 100 columns; --wide adds images and the change of
    the expected cost."""
    result = cli("estimate", new, "--diff-base", base, "--as-of", AS_OF)
    assert result.code == 0, result.err
    assert textkit.widest(result.out) <= 100
    header, rows = textkit.table(result.out)
    assert header == [
        "model",
        "size",
        "quality",
        "requests",
        "batch expected before -> after",
        "batch max before -> after",
        "max change",
    ]
    by_group = {tuple(row[:3]): row[3:] for row in rows}
    assert by_group[("gemini-3-pro-image", "4K", "-")] == [
        "1 -> 0",
        "$0.12 -> $0.00",
        "$0.14 -> $0.00",
        "-$0.14",
    ]
    assert by_group[("gemini-3.1-flash-image", "1K", "-")] == [
        "3 -> 3",
        "$0.10 -> $0.10",
        "$0.11 -> $0.11",
        "$0.00",
    ]
    assert by_group[("gpt-image-2", "1024x1024", "high")][0] == "0 -> 2"
    assert rows[-1][0] == "TOTAL"
    assert rows[-1][3] == "8 -> 12"
    lines = textkit.unwrap(result.out)
    assert (
        f"before: {base} (costguard format), priced as of {AS_OF} (rate cards gemini/{AS_OF})"
        in lines
    )
    wide = cli("estimate", new, "--diff-base", base, "--as-of", AS_OF, "--wide")
    header, _ = textkit.table(wide.out)
    assert header[:6] == ["provider", "model", "size", "quality", "requests", "images"]
    assert "expected change" in header


def test_json_has_the_new_estimate_and_the_change_exactly(cli: Cli, base: Path, new: Path) -> None:
    """JSON is the new queue's estimate plus `diff`: the base, the change in total and per
    group (before, after, change), exact decimal strings that add up."""
    payload = estimate(cli, new, "--diff-base", base, "--as-of", AS_OF)
    alone = estimate(cli, new, "--as-of", AS_OF)
    before = estimate(cli, base, "--as-of", AS_OF)
    diff = payload.pop("diff")
    assert payload == alone
    assert diff["base"] == {
        "queue": str(base),
        "format": "costguard",
        "as_of": AS_OF,
        "rate_cards": before["rate_cards"],
        "requests": 8,
        "images": 8,
        "totals": before["totals"],
    }
    assert (diff["change"]["requests"], diff["change"]["images"]) == (12 - 8, 13 - 8)
    for mode in ("batch", "sync"):
        for figure in ("expected_usd", "max_usd"):
            change = Decimal(alone["totals"][mode][figure]) - Decimal(
                before["totals"][mode][figure]
            )
            assert Decimal(diff["change"]["totals"][mode][figure]) == change
            assert sum(Decimal(g["change"][mode][figure]) for g in diff["groups"]) == change
    gone = next(g for g in diff["groups"] if g["size"] == "4K")
    assert gone["after"] is None
    assert gone["change"]["requests"] == -1
    assert gone["before"]["rate_card"] == "gemini/2026-11-26"
    added = next(g for g in diff["groups"] if g["quality"] == "high")
    assert added["before"] is None
    assert added["after"]["requests"] == 2


def test_markdown_is_a_pull_request_comment(cli: Cli, base: Path, new: Path) -> None:
    """Markdown: before, after and the change in one small table, where each side was priced,
    the groups folded, and the budget verdict for the new queue."""
    result = cli(
        "estimate",
        new,
        "--diff-base",
        base,
        "--as-of",
        AS_OF,
        "--output",
        "markdown",
        "--max-usd",
        "1",
    )
    assert result.code == 0, result.err
    blocks = result.out.rstrip("\n").split("\n\n")
    assert blocks[0] == "### costguard estimate: what this change costs (batch)"
    payload = estimate(cli, new, "--diff-base", base, "--as-of", AS_OF)
    assert blocks[1].splitlines()[:2] == [
        "|  | requests | images | batch expected | batch max |",
        "|---|--:|--:|--:|--:|",
    ]
    change = payload["diff"]["change"]["totals"]["batch"]
    assert Decimal(change["max_usd"]) > 0
    assert blocks[1].splitlines()[4].startswith("| **change** | **+4** | **+5** | **+\\$")
    assert blocks[2].splitlines()[0].startswith(f"- before: {base} (costguard format)")
    assert blocks[3] == "<details><summary>Per model, size and quality (4 of 7 changed)</summary>"
    assert blocks[4].splitlines()[-1].startswith("| **TOTAL** |  |  |  | **8 -> 12** |")
    assert blocks[5] == "</details>"
    assert blocks[6].startswith("**Within budget**: the batch maximum \\$")
    assert "**Within budget**: the batch maximum \\$" in result.out


def test_base_as_of_shows_what_a_card_change_does(
    cli: Cli, make_queue: MakeQueue, tmp_path: Path
) -> None:
    """The same queue priced on two dates (--base-as-of): the change is the card's change
    (2.5 Flash Image input images went from 1290 to 258 tokens on 2025-11-04)."""
    (tmp_path / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    path = make_queue(
        {"key": "a", "prompt": "x" * 40, "model": "gemini-2.5-flash-image", "images": ["ref.png"]}
    )
    old = estimate(cli, path, "--as-of", "2025-10-10")
    now = estimate(cli, path, "--as-of", "2025-11-10")
    payload = estimate(
        cli, path, "--diff-base", path, "--as-of", "2025-11-10", "--base-as-of", "2025-10-10"
    )
    diff = payload["diff"]
    assert diff["base"]["as_of"] == "2025-10-10"
    assert diff["base"]["rate_cards"] == old["rate_cards"] != now["rate_cards"]
    saved = Decimal(now["totals"]["batch"]["max_usd"]) - Decimal(old["totals"]["batch"]["max_usd"])
    assert saved < 0
    assert Decimal(diff["change"]["totals"]["batch"]["max_usd"]) == saved
    assert diff["change"]["requests"] == 0
    table = cli(
        "estimate", path, "--diff-base", path, "--as-of", "2025-11-10", "--base-as-of", "2025-10-10"
    )
    _, rows = textkit.table(table.out)
    assert rows[-1][-1].startswith("-$")


def test_without_base_as_of_both_sides_use_as_of(cli: Cli, make_queue: MakeQueue) -> None:
    """--as-of prices both queues; the same queue against itself changes nothing."""
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-2.5-flash-image"})
    diff = estimate(cli, path, "--diff-base", path, "--as-of", "2025-10-10")["diff"]
    assert diff["base"]["as_of"] == "2025-10-10"
    assert diff["change"]["totals"]["batch"] == {"expected_usd": "0", "max_usd": "0"}


def test_max_usd_checks_the_new_queue(cli: Cli, base: Path, new: Path) -> None:
    """--max-usd holds the new queue's maximum, as estimate does: exit 3 over it (what would
    fit on stderr), 0 within it, whatever the base cost."""
    maximum = Decimal(estimate(cli, new, "--as-of", AS_OF)["totals"]["batch"]["max_usd"])
    args = ["estimate", new, "--diff-base", base, "--as-of", AS_OF]
    over = cli(*args, "--max-usd", str(maximum - Decimal("0.000001")))
    assert over.code == 3
    assert over.err.startswith("over budget: the batch maximum $")
    fits = cli(*args, "--max-usd", str(maximum))
    assert fits.code == 0
    assert "within budget: the batch maximum" in fits.out
    as_json = cli(*args, "--max-usd", "0.01", "--output", "json")
    assert as_json.code == 3
    assert json.loads(as_json.out)["budget"]["fits"] is False


def test_an_empty_base_is_a_new_queue(cli: Cli, new: Path, tmp_path: Path) -> None:
    """An empty OLD_QUEUE (a queue the change adds: `git show` found none) is nothing before;
    a missing one is an error (a typo must not count everything as new)."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\xef\xbb\xbf\n  \n")
    diff = estimate(cli, new, "--diff-base", empty, "--as-of", AS_OF)["diff"]
    assert diff["base"]["requests"] == 0
    assert diff["base"]["totals"]["batch"] == {"expected_usd": "0", "max_usd": "0"}
    assert all(g["before"] is None for g in diff["groups"])
    missing = cli("estimate", new, "--diff-base", tmp_path / "nope.jsonl", "--as-of", AS_OF)
    assert missing.code == 2
    assert "queue file not found" in missing.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--output", "csv"), "--diff-base shows a change as a table, json or markdown", id="csv"
        ),
        pytest.param(("--compare", "gpt-image-2"), "--compare prices one queue", id="compare"),
    ],
)
def test_what_diff_base_does_not_combine_with(
    cli: Cli, base: Path, new: Path, args: tuple[str, ...], message: str
) -> None:
    """CSV has no room for a change and --compare prices one queue: exit 2, one line."""
    result = cli("estimate", new, "--diff-base", base, *args)
    assert result.code == 2
    assert result.err.startswith(f"error: {message}")


def test_base_as_of_needs_diff_base(cli: Cli, new: Path) -> None:
    """--base-as-of alone is a usage error."""
    result = cli("estimate", new, "--base-as-of", "2026-01-01")
    assert result.code == 2
    assert result.err == "error: --base-as-of needs --diff-base OLD_QUEUE\n"
