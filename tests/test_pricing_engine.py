"""The pure pricing engine: reference prices, request costs worked out by hand, card choice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from costguard.errors import ModelUnavailableError, RateCardError
from costguard.pricing.engine import (
    SHUTDOWN_WARNING_DAYS,
    Cost,
    RateBook,
    Totals,
    UnknownModelError,
    estimate,
    has_mode,
    image_unit_price,
    output_image_tokens,
    price,
    prompt_tokens,
)
from costguard.pricing.schema import RateCard


def day(text: str) -> dt.date:
    """A date from its ISO text."""
    return dt.date.fromisoformat(text)


def one_request(*, prompt_bytes: int, input_images: int = 0, n: int = 1) -> Totals:
    """Totals of a single request."""
    totals = Totals()
    totals.add_request(n=n, prompt_bytes=prompt_bytes, input_images=input_images)
    return totals


# Reference figures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "mode", "size", "quality", "at", "expected"),
    [
        pytest.param(
            "gemini-2.5-flash-image",
            "standard",
            "1K",
            None,
            "2026-09-01",
            Decimal("0.0387"),
            id="2.5-flash-image-sync-1290x30",
        ),
        pytest.param(
            "gemini-2.5-flash-image",
            "batch",
            "1K",
            None,
            "2026-09-01",
            Decimal("0.01935"),
            id="2.5-flash-image-batch-1290x15",
        ),
        pytest.param(
            "gemini-3-pro-image",
            "batch",
            "4K",
            None,
            "2026-11-01",
            Decimal("0.12"),
            id="3-pro-image-4K-batch",
        ),
        pytest.param(
            "gemini-3-pro-image",
            "standard",
            "1K",
            None,
            "2026-11-01",
            Decimal("0.1344"),
            id="3-pro-image-1K-sync",
        ),
        pytest.param(
            "gemini-3.1-flash-image",
            "standard",
            "512",
            None,
            "2026-11-01",
            Decimal("0.04482"),
            id="3.1-flash-image-512-sync",
        ),
        pytest.param(
            "gpt-image-1",
            "standard",
            "1024x1536",
            "high",
            "2026-10-01",
            Decimal("0.2496"),
            id="gpt-image-1-high-1024x1536-sync",
        ),
        pytest.param(
            "gpt-image-1-mini",
            "batch",
            "1024x1536",
            "high",
            "2026-11-01",
            Decimal("0.026"),
            id="gpt-image-1-mini-per-image-batch",
        ),
        pytest.param(
            "imagen-4.0-generate-001",
            "standard",
            "2K",
            None,
            "2026-06-01",
            Decimal("0.04"),
            id="imagen-4-per-image-sync",
        ),
    ],
)
def test_image_unit_price_matches_reference(
    shipped_book: RateBook,
    model: str,
    mode: Any,
    size: str,
    quality: str | None,
    at: str,
    expected: Decimal,
) -> None:
    """The per-image price of each reference model equals the published figure exactly."""
    card = shipped_book.resolve(model, day(at)).model
    assert image_unit_price(card, mode, size, quality) == expected


@pytest.mark.parametrize(
    ("model", "mode", "size", "quality", "at", "request_", "expected"),
    [
        pytest.param(
            "gemini-3-pro-image",
            "batch",
            "4K",
            None,
            "2026-11-01",
            {"prompt_bytes": 100, "input_images": 2},
            # image 2000x$60/M = 0.12; prompt 25 (max 100) x $1/M; inputs 2x560x$1/M = 0.00112;
            # thinking 400 (max 4000) x $6/M
            Cost(Decimal("0.123545"), Decimal("0.14522")),
            id="3-pro-4K-batch-thinking-and-inputs",
        ),
        pytest.param(
            "gpt-image-1",
            "standard",
            "1024x1536",
            "high",
            "2026-10-01",
            {"prompt_bytes": 10, "input_images": 1, "n": 2},
            # images 2x0.2496; prompt 3 (max 10) x $5/M; input 135 (max 8000) x $10/M
            Cost(Decimal("0.500565"), Decimal("0.57925")),
            id="gpt-image-1-high-edit-n2",
        ),
        pytest.param(
            "gemini-3.1-flash-image",
            "standard",
            "512",
            None,
            "2026-11-01",
            {"prompt_bytes": 7},
            # image 0.04482; prompt 2 (max 7) x $0.50/M; thinking 200 (max 1500) x $3/M
            Cost(Decimal("0.045421"), Decimal("0.0493235")),
            id="3.1-flash-512-sync-thinking",
        ),
        pytest.param(
            "gemini-2.5-flash-image",
            "batch",
            "1K",
            None,
            "2025-10-15",
            {"prompt_bytes": 40, "input_images": 1},
            # image 0.01935; prompt 10 (max 40) x $0.15/M; input 1290 x $0.15/M
            Cost(Decimal("0.019545"), Decimal("0.0195495")),
            id="2.5-flash-batch-input-1290",
        ),
        pytest.param(
            "gemini-2.5-flash-image",
            "batch",
            "1K",
            None,
            "2025-11-04",
            {"prompt_bytes": 40, "input_images": 1},
            # as above but the input image is 258 tokens from this card on
            Cost(Decimal("0.0193902"), Decimal("0.0193947")),
            id="2.5-flash-batch-input-258",
        ),
        pytest.param(
            "gpt-image-1-mini",
            "batch",
            "1024x1536",
            "high",
            "2026-11-01",
            {"prompt_bytes": 8, "input_images": 1, "n": 3},
            # per image 3x0.026; prompt 2 (max 8) x $1/M; input 135 (max 8000) x $1.25/M
            Cost(Decimal("0.07817075"), Decimal("0.088008")),
            id="gpt-image-1-mini-per-image-with-input",
        ),
        pytest.param(
            "imagen-4.0-ultra-generate-001",
            "standard",
            "2K",
            None,
            "2026-06-01",
            {"prompt_bytes": 20, "n": 4},
            # flat 4x$0.06; Imagen has no text rate, so the prompt is free
            Cost(Decimal("0.24"), Decimal("0.24")),
            id="imagen-ultra-n4",
        ),
    ],
)
def test_request_cost_matches_hand_calculation(
    shipped_book: RateBook,
    model: str,
    mode: Any,
    size: str,
    quality: str | None,
    at: str,
    request_: dict[str, int],
    expected: Cost,
) -> None:
    """A request's expected and maximum cost (image, prompt, inputs, thinking) are exact."""
    card = shipped_book.resolve(model, day(at)).model
    assert price(card, mode, size, quality, one_request(**request_)) == expected


@pytest.mark.parametrize(
    ("prompt_bytes", "expected"),
    [
        pytest.param(0, (0, 0), id="empty"),
        pytest.param(1, (1, 1), id="one-byte"),
        pytest.param(4, (1, 4), id="exactly-four"),
        pytest.param(5, (2, 5), id="rounds-up"),
        pytest.param(27, (7, 27), id="nine-cjk-chars"),
    ],
)
def test_prompt_tokens_expected_is_ceil_quarter_and_max_is_bytes(
    prompt_bytes: int, expected: tuple[int, int]
) -> None:
    """Prompt tokens are ceil(bytes / 4) expected and one per byte at most."""
    assert prompt_tokens(prompt_bytes) == expected


def test_group_price_equals_sum_of_request_prices(shipped_book: RateBook) -> None:
    """Pricing a group from its totals equals the sum of pricing each request alone."""
    card = shipped_book.resolve("gemini-3-pro-image", day("2026-11-01")).model
    shapes = [(13, 0, 1), (101, 2, 1), (7, 1, 1)]
    group = Totals()
    each = Cost(Decimal(0), Decimal(0))
    for prompt_bytes, inputs, n in shapes:
        group.add_request(n=n, prompt_bytes=prompt_bytes, input_images=inputs)
        alone = price(
            card,
            "batch",
            "2K",
            None,
            one_request(prompt_bytes=prompt_bytes, n=n, input_images=inputs),
        )
        assert alone is not None
        each = each + alone
    assert price(card, "batch", "2K", None, group) == each


def test_model_without_batch_tier_has_no_batch_price(shipped_book: RateBook) -> None:
    """Imagen 4 is not sold in batch: no batch price, and asking for its unit price says so."""
    card = shipped_book.resolve("imagen-4.0-generate-001", day("2026-06-01")).model
    assert not has_mode(card, "batch")
    assert price(card, "batch", "1K", None, one_request(prompt_bytes=4)) is None
    with pytest.raises(RateCardError, match="has no batch pricing"):
        image_unit_price(card, "batch", "1K", None)


def test_output_image_tokens_by_quality_and_size(shipped_book: RateBook) -> None:
    """GPT Image tokens come from the quality-then-size grid; per-image models have none."""
    gpt = shipped_book.resolve("gpt-image-1.5", day("2026-11-01")).model
    mini = shipped_book.resolve("gpt-image-1-mini", day("2026-11-01")).model
    assert output_image_tokens(gpt, "1536x1024", "low") == 400
    assert output_image_tokens(gpt, "1024x1024", None) == 1056  # default quality: medium
    assert output_image_tokens(mini, "1024x1024", "high") == 0


# Which card, which model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "card_id", "input_tokens"),
    [
        pytest.param("2025-10-02", "gemini/2025-10-02", 1290, id="first-day-of-first-card"),
        pytest.param("2025-11-03", "gemini/2025-10-02", 1290, id="day-before-change"),
        pytest.param("2025-11-04", "gemini/2025-11-04", 258, id="day-of-change"),
        pytest.param("2026-09-01", "gemini/2026-08-17", 258, id="later-card"),
    ],
)
def test_card_in_force_is_latest_effective_on_or_before_date(
    shipped_book: RateBook, at: str, card_id: str, input_tokens: int
) -> None:
    """A card applies from its effective date until the day before the next one."""
    resolved = shipped_book.resolve("gemini-2.5-flash-image", day(at))
    assert resolved.card.card_id == card_id
    assert resolved.model.input_image_tokens is not None
    assert resolved.model.input_image_tokens.typical == input_tokens


def test_no_card_before_first_card(shipped_book: RateBook) -> None:
    """Asking for a provider's card before its first one names that first date."""
    with pytest.raises(RateCardError, match="no openai rate card is in force on 2025-10-01"):
        shipped_book.card_at("openai", day("2025-10-01"))
    with pytest.raises(RateCardError, match="the first openai card is 2025-10-06"):
        shipped_book.card_at("openai", day("2025-10-01"))


def test_alias_resolves_to_its_model(shipped_book: RateBook) -> None:
    """A dated snapshot id is priced as the model it aliases."""
    resolved = shipped_book.resolve("gpt-image-2-2026-04-21", day("2026-11-01"))
    assert resolved.model.id == "gpt-image-2"
    assert resolved.provider == "openai"


@pytest.mark.parametrize(
    ("at", "warns"),
    [
        pytest.param("2026-09-01", False, id="31-days-before"),
        pytest.param("2026-09-02", True, id="30-days-before"),
        pytest.param("2026-10-01", True, id="day-before"),
    ],
)
def test_shutdown_warning_within_30_days(shipped_book: RateBook, at: str, warns: bool) -> None:
    """A model that shuts down within 30 days resolves with a warning naming date and successor."""
    resolved = shipped_book.resolve("gemini-2.5-flash-image", day(at))
    assert SHUTDOWN_WARNING_DAYS == 30
    if warns:
        assert resolved.warning is not None
        assert "shuts down on 2026-10-02" in resolved.warning
        assert "gemini-3.1-flash-image" in resolved.warning
    else:
        assert resolved.warning is None


def test_shut_down_model_names_date_and_successors(shipped_book: RateBook) -> None:
    """On and after its shutdown day a model is refused with the date and what to use."""
    with pytest.raises(ModelUnavailableError) as info:
        shipped_book.resolve("gemini-2.5-flash-image", day("2026-10-02"))
    message = str(info.value)
    assert "was shut down on 2026-10-02" in message
    assert "use gemini-3.1-flash-image or gemini-3.1-flash-lite-image" in message


def test_model_not_yet_priced_names_first_card(shipped_book: RateBook) -> None:
    """A model that only appears in a later card says from when it is priced."""
    with pytest.raises(ModelUnavailableError, match="not priced until 2026-05-28"):
        shipped_book.resolve("gemini-3-pro-image", day("2026-01-01"))


def test_unknown_model_suggests_close_ids(shipped_book: RateBook) -> None:
    """A misspelt id is refused with difflib suggestions."""
    with pytest.raises(UnknownModelError, match=r"Did you mean: gpt-image-1\.5"):
        shipped_book.resolve("gpt-image1.5", day("2026-11-01"))


def test_models_at_leaves_out_shut_down_and_future_models(shipped_book: RateBook) -> None:
    """Only models callable on the date are listed."""
    ids = {r.model.id for r in shipped_book.models_at(day("2026-11-01"))}
    assert "gemini-3.1-flash-lite-image" in ids
    assert "gpt-image-2" in ids
    assert "gpt-image-1" not in ids  # shut down 2026-10-23
    assert "imagen-4.0-generate-001" not in ids  # shut down 2026-08-17
    assert "dall-e-3" not in ids


def _card(**model: Any) -> RateCard:
    """A one-model gemini card dated 2030-01-01, the model's fields overridden by `model`."""
    base: dict[str, Any] = {
        "id": "m",
        "sizes": ["1K"],
        "default_size": "1K",
        "output_image_tokens": {"1K": 1000},
        "modes": {"standard": {"output_image_per_mtok": "30"}},
    }
    return RateCard.model_validate(
        {
            "provider": "gemini",
            "effective_from": "2030-01-01",
            "sources": [{"id": "S", "url": "https://example.test", "checked": "2029-12-01"}],
            "models": [{**base, **model}],
        }
    )


def test_model_not_yet_available_within_its_card() -> None:
    """A model listed with a later available_from is refused until that day."""
    book = RateBook([_card(lifecycle={"available_from": "2030-02-01"})])
    with pytest.raises(ModelUnavailableError, match="not available until 2030-02-01"):
        book.resolve("m", day("2030-01-15"))
    assert book.resolve("m", day("2030-02-01")).model.id == "m"


def _lifecycle_book() -> RateBook:
    """One card with a model of each lifecycle, and other names from the card."""
    base = _card().models[0].model_dump()
    models = [
        base | {"id": "new-model", "aliases": ["new-model-2030"], "nicknames": ["newbie"]},
        base | {"id": "fading", "lifecycle": {"shutdown_on": "2030-06-01"}},
        base | {"id": "retired", "lifecycle": {"shutdown_on": "2030-01-10"}},
        base | {"id": "upcoming", "lifecycle": {"available_from": "2030-03-01"}},
    ]
    card = _card().model_dump() | {"models": models}
    return RateBook([RateCard.model_validate(card)])


def test_unknown_model_lists_callable_models_then_the_others() -> None:
    """With nothing close, the message lists the callable models (with their aliases and
    nicknames from the card, and an announced shutdown), then those not yet available and
    those shut down, apart."""
    with pytest.raises(UnknownModelError) as info:
        _lifecycle_book().resolve("zzz", day("2030-01-15"))
    assert str(info.value) == (
        "unknown model 'zzz'. Known models: fading (shuts down 2030-06-01), new-model (also "
        "new-model-2030, newbie); not yet available: upcoming (from 2030-03-01); shut down: "
        "retired (on 2030-01-10)"
    )
    assert info.value.details["did_you_mean"] == []
    models = info.value.details["models"]
    assert isinstance(models, list)
    listed = {m["id"]: m["status"] for m in models}
    assert listed == {
        "fading": "available",
        "new-model": "available",
        "retired": "shut_down",
        "upcoming": "not_yet_available",
    }


def test_unknown_model_suggests_a_shut_down_one_as_such() -> None:
    """A suggestion that can no longer be called says so (callable ones come first)."""
    with pytest.raises(UnknownModelError) as info:
        _lifecycle_book().resolve("retird", day("2030-01-15"))
    assert (
        str(info.value) == "unknown model 'retird'. Did you mean: retired (shut down 2030-01-10)?"
    )


def test_zero_input_image_rate_is_free_not_the_text_rate() -> None:
    """An explicit input-image rate of 0 prices input images at 0, not at the text rate."""
    card = _card(
        input_image_tokens={"typical": 1000, "max": 1000},
        modes={
            "standard": {
                "input_text_per_mtok": "1",
                "input_image_per_mtok": "0",
                "output_image_per_mtok": "30",
            }
        },
    )
    model = card.models[0]
    cost = price(model, "standard", "1K", None, one_request(prompt_bytes=0, input_images=1))
    assert cost == Cost(Decimal("0.03"), Decimal("0.03"))


def test_input_images_fall_back_to_text_rate_when_unset() -> None:
    """Without an input-image rate, input images are billed at the text input rate."""
    card = _card(
        input_image_tokens={"typical": 1000, "max": 2000},
        modes={"standard": {"input_text_per_mtok": "1", "output_image_per_mtok": "30"}},
    )
    model = card.models[0]
    cost = price(model, "standard", "1K", None, one_request(prompt_bytes=0, input_images=1))
    assert cost == Cost(Decimal("0.031"), Decimal("0.032"))


# estimate() ----------------------------------------------------------------------------------


def test_estimate_totals_are_none_when_a_group_cannot_be_batched(shipped_book: RateBook) -> None:
    """One unbatchable group makes the batch total (and the saving) None, not a partial sum."""
    grouped = {
        ("imagen-4.0-generate-001", "1K", None): one_request(prompt_bytes=8),
        ("gemini-2.5-flash-image", "1K", None): one_request(prompt_bytes=8),
    }
    result = estimate(grouped, shipped_book, day("2026-06-01"))
    assert result.totals["batch"] is None
    assert result.saving() is None
    standard = result.totals["standard"]
    # imagen 0.04 flat; 2.5 flash 0.0387 + prompt 2 (max 8) x $0.30/M
    assert standard == Cost(Decimal("0.0787006"), Decimal("0.0787024"))
    assert result.rate_cards == ["gemini/2026-05-28"]
    assert [g.model for g in result.groups] == [
        "gemini-2.5-flash-image",
        "imagen-4.0-generate-001",
    ]


def test_estimate_with_substitute_falls_back_to_default_size(shipped_book: RateBook) -> None:
    """`--compare` pricing moves sizes and qualities the substitute lacks to its defaults."""
    grouped = {
        ("gemini-3.1-flash-image", "4K", None): one_request(prompt_bytes=4),
        ("gemini-3.1-flash-image", "512", None): one_request(prompt_bytes=4),
    }
    result = estimate(grouped, shipped_book, day("2026-11-01"), substitute="gpt-image-2")
    assert len(result.groups) == 1
    group = result.groups[0]
    assert (group.model, group.size, group.quality) == ("gpt-image-2", "1024x1024", "medium")
    assert group.totals.requests == 2
    assert group.unit["standard"] == Decimal("0.05268")  # 1756 x $30/M


def test_model_before_its_providers_first_card_is_a_rate_card_gap(shipped_book: RateBook) -> None:
    """Before a provider's first card no card is in force: a rate-card error, not bad input."""
    with pytest.raises(RateCardError) as info:
        shipped_book.resolve("gpt-image-1", day("2025-10-05"))
    assert str(info.value) == (
        "no openai rate card is in force on 2025-10-05 (for 'gpt-image-1'); "
        "the first openai card is 2025-10-06"
    )
    assert info.value.exit_code == 4
