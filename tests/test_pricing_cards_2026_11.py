"""The cards of 2026-11-26: the 2026-12-01 shutdowns, gpt-image-2 at any size, the newest
models with their assumed facts, snapshot aliases and nicknames."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.errors import RateCardError
from costguard.pricing.engine import RateBook, output_image_tokens
from costguard.pricing.loader import load_card
from costguard.pricing.sizes import parse_size, rule_problem, size_problem, smaller_sizes
from costguard.resources import data_dir

Cli = Callable[..., Any]
MakeQueue = Callable[..., Path]

pytestmark = pytest.mark.usefixtures("memo_cards")

TODAY = dt.date(2026, 11, 26)
SHUTDOWN = dt.date(2026, 12, 1)


def estimate_json(cli: Cli, *args: str | Path) -> dict[str, Any]:
    result = cli("estimate", *args, "--output", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


# gpt-image-2 at any size ------------------------------------------------------------------------

PUBLISHED = [  # OpenAI's figures (per-image table) and its calculator's, as the audit quotes them
    ("1024x1024", "low", 196),
    ("1024x1024", "medium", 1756),
    ("1024x1024", "high", 7024),
    ("1024x1536", "medium", 1372),
    ("1024x1536", "high", 5488),
    ("1792x1024", "high", 5063),
    ("3584x2048", "high", 12329),
]


@pytest.mark.parametrize(("size", "quality", "tokens"), PUBLISHED)
def test_token_rule_reproduces_the_published_figures(
    shipped_book: RateBook, size: str, quality: str, tokens: int
) -> None:
    """The rule in the card gives every published figure, listed size or not."""
    model = shipped_book.resolve("gpt-image-2", TODAY).model
    assert output_image_tokens(model, size, quality) == tokens


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ("1000x1000", "multiples of 16"),
        ("3856x2160", "longest edge must be at most 3,840"),
        ("3840x1264", "aspect ratio must be at most 3:1"),
        ("768x768", "655,360 to 8,294,400 pixels (589,824 asked)"),
        ("3840x2176", "655,360 to 8,294,400 pixels (8,355,840 asked)"),
        ("auto", "WIDTHxHEIGHT"),
        ("1024X1024", "WIDTHxHEIGHT"),
    ],
)
def test_invalid_sizes_are_refused_with_the_rule_they_break(
    shipped_book: RateBook, size: str, rule: str
) -> None:
    model = shipped_book.resolve("gpt-image-2", TODAY).model
    problem = size_problem(model, size)
    assert problem is not None
    assert rule in problem


@pytest.mark.parametrize("size", ["1536x864", "3840x2160", "3072x1024", "1024x3072", "816x816"])
def test_valid_custom_sizes_are_accepted(shipped_book: RateBook, size: str) -> None:
    model = shipped_book.resolve("gpt-image-2", TODAY).model
    assert size_problem(model, size) is None


def test_fixed_size_models_still_refuse_other_sizes(shipped_book: RateBook) -> None:
    model = shipped_book.resolve("gpt-image-1.5", TODAY).model
    assert size_problem(model, "1536x864") == (
        "gpt-image-1.5 does not support size '1536x864'; allowed: 1024x1024, 1024x1536, 1536x1024"
    )


def test_queue_at_a_custom_size_is_priced_and_a_bad_one_refused(
    cli: Cli, make_queue: MakeQueue
) -> None:
    """estimate prices 4K by the rule; an invalid size is exit 2 at file:line: size."""
    good = make_queue(
        {"key": "a", "prompt": "p", "model": "gpt-image-2", "size": "3840x2160", "quality": "high"}
    )
    payload = estimate_json(cli, good, "--as-of", TODAY.isoformat())
    (group,) = payload["groups"]
    assert group["size"] == "3840x2160"
    # 13342 tokens x $30 per 1M sync, $15 batch
    assert Decimal(group["unit_usd"]["sync"]) == Decimal("0.40026")
    assert Decimal(group["unit_usd"]["batch"]) == Decimal("0.20013")
    bad = make_queue(
        {"key": "a", "prompt": "p", "model": "gpt-image-2", "size": "3840x2176"}, name="bad.jsonl"
    )
    result = cli("estimate", bad, "--as-of", TODAY.isoformat())
    assert result.code == 2
    assert result.err == (
        f"error: {bad}:1: size: gpt-image-2 does not accept size '3840x2176': the image must "
        "have 655,360 to 8,294,400 pixels (8,355,840 asked)\n"
        "1 bad line; nothing was priced\n"
    )


def test_prices_for_one_custom_size(cli: Cli) -> None:
    """prices --model gpt-image-2 --size 1536x864 lists the three qualities at that size."""
    result = cli("prices", "--model", "gpt-image-2", "--size", "1536x864", "--output", "json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [(r["size"], r["quality"], r["tokens"]) for r in rows] == [
        ("1536x864", "low", "120"),
        ("1536x864", "medium", "1078"),
        ("1536x864", "high", "4312"),
    ]
    refused = cli("prices", "--model", "gpt-image-2", "--size", "1000x1000")
    assert refused.code == 2
    assert "both edges must be multiples of 16 px" in refused.err
    assert cli("prices", "--size", "1536x864").code == 2  # --size needs --model


def test_smaller_sizes_keep_the_shape_and_the_grid(shipped_book: RateBook) -> None:
    model = shipped_book.resolve("gpt-image-2", TODAY).model
    rule = model.any_size
    assert rule is not None
    found = smaller_sizes(model, "3840x2160")
    assert found, "a 16:9 4K image has smaller valid sizes of the same shape"
    pixels = []
    for size in found:
        width, height = parse_size(size) or (0, 0)
        assert rule_problem(rule, size) is None
        assert abs(Fraction(width, height) / Fraction(16, 9) - 1) <= Fraction(3, 100)
        pixels.append(width * height)
    assert pixels == sorted(pixels, reverse=True)
    assert pixels[0] < 3840 * 2160


def test_over_budget_advice_names_a_smaller_size_that_fits(
    cli: Cli, make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """The advice gives the largest same-shape size at which the whole queue fits."""
    line = {"prompt": "p", "model": "gpt-image-2", "size": "3840x2160", "quality": "high"}
    path = make_queue(*({"key": f"k{i}", **line} for i in range(10)))
    result = cli(
        "estimate", path, "--as-of", TODAY.isoformat(), "--max-usd", "1.50", "--output", "json"
    )
    assert result.code == 3
    budget = json.loads(result.out)["budget"]
    (advice,) = budget["smaller_sizes"]
    assert (advice["model"], advice["size"], advice["quality"]) == (
        "gpt-image-2",
        "3840x2160",
        "high",
    )
    assert Decimal(advice["max_usd"]) <= Decimal("1.50")
    # the next larger same-shape size would not fit: the advice is the largest that does
    candidates = smaller_sizes(shipped_book.resolve("gpt-image-2", TODAY).model, "3840x2160")
    index = candidates.index(advice["instead"])
    if index:
        larger = make_queue(
            *({"key": f"k{i}", **line, "size": candidates[index - 1]} for i in range(10)),
            name="larger.jsonl",
        )
        over = cli("estimate", larger, "--as-of", TODAY.isoformat(), "--max-usd", "1.50")
        assert over.code == 3
    table = cli("estimate", path, "--as-of", TODAY.isoformat(), "--max-usd", "1.50")
    assert (
        f"  would fit: gpt-image-2 high images at {advice['instead']} instead of 3840x2160 "
        "(the same shape; max $"
    ) in table.err


def test_card_whose_table_disagrees_with_its_rule_is_refused(tmp_path: Path) -> None:
    """A listed token count that the card's own rule does not give is a card error."""
    text = (data_dir("pricing") / "openai" / "2026-11-26.yaml").read_text(encoding="utf-8")
    path = tmp_path / "openai" / "2026-11-26.yaml"
    path.parent.mkdir()
    path.write_text(text.replace("high: {1024x1024: 7024,", "high: {1024x1024: 7000,", 1))
    with pytest.raises(RateCardError, match=r"7000 but any_size gives 7024"):
        load_card(path)


# Lifecycle: the 2026-12-01 shutdowns ------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"])
def test_shutting_down_models_warn_now_and_are_refused_from_the_day(
    cli: Cli, make_queue: MakeQueue, name: str
) -> None:
    path = make_queue({"key": "a", "prompt": "p", "model": name, "size": "1024x1024"})
    now = cli("estimate", path, "--as-of", TODAY.isoformat(), "--output", "json")
    assert now.code == 0
    assert json.loads(now.out)["warnings"] == [
        (
            f"model '{name}' shuts down on 2026-12-01 (in 5 days); "
            "use gpt-image-2.6-sunburst or gpt-image-2.6-flare or gpt-image-2"
        )
    ]
    then = cli("estimate", path, "--as-of", SHUTDOWN.isoformat())
    assert then.code == 2
    assert then.err == (
        f"error: {path}:1: model: model '{name}' was shut down on 2026-12-01; "
        "use gpt-image-2.6-sunburst or gpt-image-2.6-flare or gpt-image-2\n"
        "1 bad line; nothing was priced\n"
    )


def test_prices_diff_shows_the_shutdowns(cli: Cli) -> None:
    """prices --diff 2026-11-25 2026-12-01 reports the transitions, not only changed fields."""
    result = cli("prices", "--diff", "2026-11-25", "2026-12-01", "--output", "json")
    assert result.code == 0, result.err
    status = {
        r["model"]: (r["before"], r["after"])
        for r in json.loads(result.out)
        if r["field"] == "(status)"
    }
    assert status == {
        "openai:gpt-image-1-mini": ("available", "shut down (on 2026-12-01)"),
        "openai:gpt-image-1.5": ("available", "shut down (on 2026-12-01)"),
    }


def test_prices_diff_shows_a_shutdown_recorded_in_every_card(cli: Cli) -> None:
    """A shutdown whose date every card already held still shows as a transition."""
    result = cli("prices", "--diff", "2026-10-01", "2026-10-03", "--output", "json")
    assert json.loads(result.out) == [
        {
            "model": "gemini:gemini-2.5-flash-image",
            "field": "(status)",
            "before": "available (shuts down 2026-10-02)",
            "after": "shut down (on 2026-10-02)",
        }
    ]


# Aliases and nicknames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "model"),
    [
        ("gpt-image-1.5-2025-12-16", "gpt-image-1.5"),
        ("chatgpt-image-latest", "gpt-image-1.5"),
        ("gpt-image-2-2026-04-21", "gpt-image-2"),
        ("gpt-image-2.5-sunburst-2026-09-08", "gpt-image-2.5-sunburst"),
        ("nano-banana-2", "gemini-3.1-flash-image"),
        ("nano-banana-pro", "gemini-3-pro-image"),
    ],
)
def test_aliases_price_as_their_model(shipped_book: RateBook, alias: str, model: str) -> None:
    assert shipped_book.resolve(alias, TODAY).model.id == model


def test_nicknames_are_sent_as_the_model_id(
    cli: Cli, make_queue: MakeQueue, shipped_book: RateBook
) -> None:
    """A nickname is priced and sent as the API's id; a snapshot id is sent as written."""
    from costguard.queue.reader import QueueReader

    path = make_queue(
        {"key": "a", "prompt": "p", "model": "nano-banana-2"},
        {"key": "b", "prompt": "p", "model": "gpt-image-2-2026-04-21"},
    )
    requests = list(QueueReader(path, shipped_book, TODAY))
    assert [r.model for r in requests] == ["gemini-3.1-flash-image", "gpt-image-2-2026-04-21"]
    payload = estimate_json(cli, path, "--as-of", TODAY.isoformat())
    assert [g["model"] for g in payload["groups"]] == ["gemini-3.1-flash-image", "gpt-image-2"]


def test_a_shut_down_nickname_names_its_model(cli: Cli, make_queue: MakeQueue) -> None:
    path = make_queue({"key": "a", "prompt": "p", "model": "nano-banana"})
    result = cli("estimate", path, "--as-of", TODAY.isoformat())
    assert result.code == 2
    assert "model 'nano-banana' (gemini-2.5-flash-image) was shut down on 2026-10-02" in result.err


# Assumed facts ----------------------------------------------------------------------------------


def test_newest_models_are_priced_and_say_what_is_assumed(cli: Cli, make_queue: MakeQueue) -> None:
    path = make_queue(
        {"key": "a", "prompt": "p", "model": "gpt-image-2.6-sunburst", "size": "1536x864"},
        {"key": "b", "prompt": "p", "model": "gpt-image-2.5-flare", "quality": "high"},
    )
    payload = estimate_json(cli, path, "--as-of", TODAY.isoformat())
    assert payload["warnings"] == []
    assert [(a["model"], a["fact"]) for a in payload["assumptions"]] == [
        ("gpt-image-2.5-flare", "output_image_tokens"),
        ("gpt-image-2.6-sunburst", "output_image_tokens"),
    ]
    table = cli("estimate", path, "--as-of", TODAY.isoformat())
    assumed = [line for line in textkit.unwrap(table.out) if line.startswith("assumed:")]
    assert len(assumed) == 1  # one note (wrapped to 100 columns), naming every fact
    assert "gpt-image-2.6-sunburst output image tokens: gpt-image-2's token rule" in assumed[0]
    assert "gpt-image-2.5-flare output image tokens" in assumed[0]


def test_input_image_assumption_only_with_input_images(cli: Cli, make_queue: MakeQueue) -> None:
    plain = make_queue({"key": "a", "prompt": "p", "model": "gpt-image-2"})
    assert estimate_json(cli, plain, "--as-of", TODAY.isoformat())["assumptions"] == []
    edit = make_queue(
        {
            "key": "a",
            "prompt": "p",
            "model": "gpt-image-2",
            "images": ["https://example.test/a.png"],
        },
        name="edit.jsonl",
    )
    (assumption,) = estimate_json(cli, edit, "--as-of", TODAY.isoformat())["assumptions"]
    assert (assumption["model"], assumption["fact"]) == ("gpt-image-2", "input_image_tokens")


def test_thinking_allowance_is_named_as_assumed(cli: Cli, make_queue: MakeQueue) -> None:
    path = make_queue({"key": "a", "prompt": "p", "model": "gemini-3-pro-image"})
    (assumption,) = estimate_json(cli, path, "--as-of", TODAY.isoformat())["assumptions"]
    assert assumption == {
        "model": "gemini-3-pro-image",
        "fact": "thinking_tokens",
        "assumed": "400 typical / 4,000 max per request (no published count; one real response "
        "showed 217)",
    }


# Through a run ----------------------------------------------------------------------------------


def test_run_at_custom_sizes_and_by_nickname_costs_what_was_estimated(
    cli: Cli, make_queue: MakeQueue, tmp_path: Path
) -> None:
    """`run --simulate`: a 4K gpt-image-2 image, a gpt-image-2.6 image at a custom size and a
    nano-banana-2 request are sent, saved at the size asked, and cost exactly the estimate."""
    from PIL import Image

    path = make_queue(
        {
            "key": "4k",
            "prompt": "p",
            "model": "gpt-image-2",
            "size": "3840x2160",
            "quality": "high",
        },
        {"key": "wide", "prompt": "p", "model": "gpt-image-2.6-sunburst", "size": "1536x864"},
        {"key": "nb", "prompt": "p", "model": "nano-banana-2", "size": "1K"},
    )
    scenario = tmp_path / "pixels.yaml"
    scenario.write_text(
        "name: pixels\ndescription: images at the size asked\ntime_scale: 7200\npending_s: 60\n"
        "running_s: 60\nfinalizing_s: 0\nterminal: succeeded\nimage_pixels: requested\n",
        encoding="utf-8",
    )
    estimate = estimate_json(cli, path, "--as-of", TODAY.isoformat(), "--mode", "batch")
    out = tmp_path / "out"
    result = cli(
        "run", path, "--max-usd", "5", "--simulate", scenario, "--out", out,
        "--poll-interval", "0.05", "--as-of", TODAY.isoformat(), "--output", "json",
    )  # fmt: skip
    assert result.code == 0, result.err
    lines = {
        line["key"]: line
        for line in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
    }
    assert {k: v["model"] for k, v in lines.items()} == {
        "4k": "gpt-image-2",
        "wide": "gpt-image-2.6-sunburst",
        "nb": "gemini-3.1-flash-image",
    }
    with Image.open(out / lines["4k"]["files"][0]) as image:
        assert image.size == (3840, 2160)
    with Image.open(out / lines["wide"]["files"][0]) as image:
        assert image.size == (1536, 864)
    assert lines["4k"]["tokens"]["output_image_tokens"] == 13342
    actual = sum(Decimal(line["cost_usd"]) for line in lines.values())
    assert actual == Decimal(estimate["totals"]["batch"]["expected_usd"])


def test_advice_and_suggestions_skip_models_about_to_shut_down(
    cli: Cli, make_queue: MakeQueue
) -> None:
    """gpt-image-1-mini would fit but shuts down in 5 days: not suggested; a misspelt id is
    matched to models that can still be called first."""
    line = {"prompt": "p", "model": "gpt-image-2", "size": "3840x2160", "quality": "high"}
    path = make_queue(*({"key": f"k{i}", **line} for i in range(10)))
    result = cli(
        "estimate", path, "--as-of", TODAY.isoformat(), "--max-usd", "1.50", "--output", "json"
    )
    assert result.code == 3
    cheaper = [c["model"] for c in json.loads(result.out)["budget"]["cheaper_models"]]
    assert cheaper
    assert "gpt-image-1-mini" not in cheaper
    assert "gpt-image-1.5" not in cheaper
    typo = make_queue({"key": "a", "prompt": "p", "model": "gpt-image-2.6"}, name="typo.jsonl")
    later = cli("estimate", typo, "--as-of", SHUTDOWN.isoformat())
    assert later.code == 2
    assert "Did you mean: gpt-image-2, gpt-image-2.6-flare, gpt-image-2.5-flare?" in later.err
