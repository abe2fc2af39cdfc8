"""Loading rate cards: shipped cards, one-line errors for broken ones, user cards, the schema."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from costguard.errors import RateCardError
from costguard.pricing.loader import card_files, json_schema, load_book, load_card, shipped_dir
from costguard.resources import data_dir

SHIPPED = card_files(data_dir("pricing"))


def test_shipped_cards_are_found() -> None:
    """Both providers ship cards, and only `<provider>/<date>.yaml` files count as cards."""
    providers = {p.parent.name for p in SHIPPED}
    assert providers == {"gemini", "openai"}
    assert len(SHIPPED) >= 17
    assert all(p.suffix == ".yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_card_loads(path: Path) -> None:
    """Each shipped card validates, and its date and provider match its file and folder."""
    card = load_card(path)
    assert card.effective_from == dt.date.fromisoformat(path.stem)
    assert card.provider == path.parent.name
    assert card.card_id == f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_card_points_at_the_schema(path: Path) -> None:
    """Each card starts with the yaml-language-server schema comment (editor hints)."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schema.json"


def test_book_records_where_each_card_came_from() -> None:
    """The book maps each card id to the shipped file it was read from."""
    book = load_book()
    assert len(book.cards) == len(SHIPPED)
    origin = Path(book.origins["gemini/2025-11-04"])
    assert origin == shipped_dir() / "gemini" / "2025-11-04.yaml"


# Broken cards -----------------------------------------------------------------------------------

BROKEN = [
    pytest.param(
        {"output_image_per_mtok: 30": "output_image_per_mtok: -30"},
        ["model test-image", "modes.standard.output_image_per_mtok", "greater than or equal to 0"],
        id="negative-price",
    ),
    pytest.param(
        {"default_size: 1K": "default_size: 1K\n    colour: red"},
        ["model test-image", "colour", "Extra inputs are not permitted"],
        id="unknown-model-field",
    ),
    pytest.param(
        {"provider: gemini": "provider: gemini\nregion: eu"},
        ["region", "Extra inputs are not permitted"],
        id="unknown-card-field",
    ),
    pytest.param(
        {"default_size: 1K": "default_size: 4K"},
        ["model test-image", "default_size '4K' is not in sizes ['1K', '2K']"],
        id="default-size-not-in-sizes",
    ),
    pytest.param(
        {"    output_image_tokens: {1K: 1000, 2K: 2000}\n": ""},
        ["model test-image", "output_image_tokens is required for a token-priced model"],
        id="missing-output-image-tokens",
    ),
    pytest.param(
        {"{1K: 1000, 2K: 2000}": "{1K: 1000}"},
        ["model test-image", "output_image_tokens must have exactly the sizes", "missing ['2K']"],
        id="output-tokens-missing-a-size",
    ),
    pytest.param(
        {"effective_from: 2030-01-01": "effective_from: 2030-01-02"},
        ["effective_from 2030-01-02 must match the file name", "2030-01-02.yaml"],
        id="effective-from-not-filename",
    ),
    pytest.param(
        {"provider: gemini": "provider: openai"},
        ["provider 'openai' must match the folder 'gemini'"],
        id="provider-not-folder",
    ),
    pytest.param(
        {"typical: 500, max: 800": "typical: 900, max: 800"},
        ["model test-image", "input_image_tokens", "max (800) must be >= typical (900)"],
        id="allowance-max-below-typical",
    ),
    pytest.param(
        {"      standard:": "      turbo:"},
        ["model test-image", "modes.turbo"],
        id="unknown-mode",
    ),
    pytest.param(
        {"input_text_per_mtok: 0.1": "input_text_per_mtok: 0.00000000001"},
        ["model test-image", "modes.standard.input_text_per_mtok", "10 decimal places"],
        id="too-many-decimal-places",
    ),
    pytest.param(
        {"input_text_per_mtok: 0.1": "input_text_per_mtok: .inf"},
        [":15:", "'.inf' is not a finite number"],
        id="infinite-price",
    ),
    pytest.param(
        {"sizes: [1K, 2K]": "sizes: [1K, 2K"},
        ["invalid YAML"],
        id="invalid-yaml",
    ),
    pytest.param(
        {"  - id: test-image\n": "  - id: test-image\n    id: again\n"},
        [":9:", "invalid YAML: duplicate key 'id'"],
        id="duplicate-yaml-key",
    ),
]


@pytest.mark.parametrize(("replace", "fragments"), BROKEN)
def test_broken_card_fails_with_one_line_naming_file_model_and_field(
    make_card: Callable[..., Path], replace: dict[str, str], fragments: list[str]
) -> None:
    """A broken card raises one line that starts with its path and names what is wrong."""
    path = make_card(replace=replace)
    with pytest.raises(RateCardError) as info:
        load_card(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == 4


def test_model_level_error_is_labelled_as_the_model(make_card: Callable[..., Path]) -> None:
    """A check across a model's fields names the model, not the whole card."""
    path = make_card(replace={"default_size: 1K": "default_size: 4K"})
    with pytest.raises(RateCardError) as info:
        load_card(path)
    assert f"{path}: model test-image: (model): default_size" in str(info.value)


def test_broken_card_counts_further_errors(make_card: Callable[..., Path]) -> None:
    """When several fields are wrong, the line shows the first and how many more there are."""
    path = make_card(
        replace={
            "output_image_per_mtok: 30": "output_image_per_mtok: -30",
            "output_image_per_mtok: 15": "output_image_per_mtok: -15",
        }
    )
    with pytest.raises(RateCardError, match=r"\(\+1 more\)$"):
        load_card(path)


def test_card_that_is_not_a_mapping(make_card: Callable[..., Path]) -> None:
    """A YAML list is refused as not a card."""
    path = make_card("- just\n- a list\n")
    with pytest.raises(RateCardError, match="a rate card must be a YAML mapping"):
        load_card(path)


def test_file_name_that_is_not_a_date(make_card: Callable[..., Path]) -> None:
    """A card file must be named after its effective date."""
    path = make_card(name="latest.yaml")
    with pytest.raises(RateCardError, match=r"rename the file to 2030-01-01\.yaml"):
        load_card(path)


# Decimal loading --------------------------------------------------------------------------------


def test_yaml_floats_load_as_exact_decimals(make_card: Callable[..., Path]) -> None:
    """Unquoted YAML floats become the Decimal of their text, never passing through float."""
    path = make_card(
        replace={
            "input_text_per_mtok: 0.1": "input_text_per_mtok: 0.1",
            "input_image_per_mtok: 0.2": "input_image_per_mtok: 1_000.3",
            "output_image_per_mtok: 15": 'output_image_per_mtok: "15.50"',
        }
    )
    model = load_card(path).models[0]
    standard, batch = model.modes["standard"], model.modes["batch"]
    assert standard.input_text_per_mtok == Decimal("0.1")
    assert str(standard.input_text_per_mtok) == "0.1"
    assert standard.input_text_per_mtok != Decimal.from_float(0.1)  # not via float
    assert standard.input_image_per_mtok == Decimal("1000.3")
    assert standard.output_image_per_mtok == Decimal(30)  # a YAML int
    assert str(batch.output_image_per_mtok) == "15.50"  # a quoted string keeps its digits


# User cards -------------------------------------------------------------------------------------


def _alias(model: str, alias: str) -> dict[str, str]:
    """A replacement that gives `model` (which has no aliases yet) the extra id `alias`."""
    return {f"  - id: {model}\n": f"  - id: {model}\n    aliases: [{alias}]\n"}


def _copy_shipped(root: Path, card: str, replace: dict[str, str]) -> Path:
    """Copy a shipped card under `root` with text replacements; return its path."""
    text = (shipped_dir() / f"{card}.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert text.count(old) == 1, f"{old!r} is not unique in {card}"
        text = text.replace(old, new)
    path = root / f"{card}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_user_card_overrides_shipped_card_for_same_date(tmp_path: Path) -> None:
    """A user card for the same provider and date replaces the shipped one."""
    user = tmp_path / "mine"
    path = _copy_shipped(
        user,
        "gemini/2026-10-02",
        _alias("gemini-3-pro-image", "pro-negotiated"),
    )
    book = load_book([user])
    resolved = book.resolve("pro-negotiated", dt.date(2026, 11, 1))
    assert resolved.model.id == "gemini-3-pro-image"
    assert book.origins["gemini/2026-10-02"] == str(path)
    assert len(book.cards) == len(SHIPPED)


def test_user_card_with_later_date_takes_over(
    make_card: Callable[..., Path], tmp_path: Path
) -> None:
    """A user card dated after the shipped ones is the one in force from its date."""
    make_card(date="2030-01-01")
    book = load_book([tmp_path / "cards"])
    assert book.card_at("gemini", dt.date(2030, 1, 1)).card_id == "gemini/2030-01-01"
    assert book.card_at("gemini", dt.date(2029, 12, 31)).card_id == "gemini/2026-11-26"
    assert book.resolve("test-image", dt.date(2030, 1, 2)).model.id == "test-image"


def test_later_folder_wins_over_earlier_folder(tmp_path: Path) -> None:
    """Of two user folders with the same card, the one named last wins."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    _copy_shipped(
        first,
        "openai/2026-10-23",
        _alias("gpt-image-1.5", "from-first"),
    )
    winner = _copy_shipped(
        second,
        "openai/2026-10-23",
        _alias("gpt-image-1.5", "from-second"),
    )
    book = load_book([first, second])
    assert book.origins["openai/2026-10-23"] == str(winner)
    assert book.resolve("from-second", dt.date(2026, 11, 1)).model.id == "gpt-image-1.5"


def test_missing_user_folder_is_a_rate_card_error(tmp_path: Path) -> None:
    """A pricing folder that does not exist is reported, not silently skipped."""
    with pytest.raises(RateCardError, match="pricing folder does not exist"):
        load_book([tmp_path / "nowhere"])


def test_book_without_any_card_is_an_error(tmp_path: Path) -> None:
    """An empty folder with no shipped cards gives no book."""
    with pytest.raises(RateCardError, match="no rate cards found"):
        load_book([tmp_path], include_shipped=False)


# Schema -----------------------------------------------------------------------------------------


def test_shipped_schema_json_matches_the_models() -> None:
    """`pricing/schema.json` is exactly what the pydantic models generate."""
    shipped = (data_dir("pricing") / "schema.json").read_text(encoding="utf-8")
    assert shipped == json_schema()
    schema = json.loads(shipped)
    assert schema["additionalProperties"] is False
    assert "models" in schema["required"]
