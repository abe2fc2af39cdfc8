"""Calibration (pure): samples into distributions, distributions into the allowances prices use."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from costguard.pricing.calibration import (
    MIN_SAMPLES,
    Allowances,
    Calibration,
    Observation,
    PerByte,
    Sample,
    Stats,
    calibrate,
    calibrate_samples,
    calibrated,
)
from costguard.pricing.engine import RateBook, Totals, estimate, price
from costguard.pricing.schema import Allowance, ModelCard

AS_OF = dt.date(2026, 11, 1)
PRO = "gemini-3-pro-image"
MTOK = Decimal(1_000_000)


def sample(**kw: Any) -> Sample:
    """A Gemini 3 Pro Image 1K request that came back ok, asked for no text, had a prompt."""
    fields: dict[str, Any] = {
        "key": "k",
        "provider": "gemini",
        "model": PRO,
        "size": "1K",
        "quality": None,
        "status": "ok",
        "prompt_bytes": 100,
        "input_images": 0,
        "text_tokens_max": 0,
        "input_text_tokens": 25,
        "input_image_tokens": 0,
        "output_text_tokens": 400,
        "output_image_tokens": 1120,
    }
    fields.update(kw)
    return Sample(**fields)


def thinking(values: list[int], *, size: str = "1K", model: str = PRO) -> list[Observation]:
    """One thinking observation per value."""
    return [Observation("thinking", model, size, None, v, 1) for v in values]


def pro(book: RateBook) -> ModelCard:
    """Gemini 3 Pro Image's card on AS_OF."""
    return book.resolve(PRO, AS_OF).model


def one(prompt_bytes: int = 100, input_images: int = 0) -> Totals:
    """Totals of one request."""
    totals = Totals()
    totals.add_request(n=1, prompt_bytes=prompt_bytes, input_images=input_images)
    return totals


# --- distributions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "median", "p99", "largest"),
    [
        pytest.param(list(range(1, 101)), "50.5", "99", "100", id="1-100"),
        pytest.param(list(range(1, 102)), "51", "100", "101", id="1-101-odd"),
        pytest.param([7] * 29 + [1000], "7", "1000", "1000", id="p99-of-30-is-the-largest"),
        pytest.param([100] * 198 + [5000, 5000], "100", "100", "5000", id="p99-of-200"),
    ],
)
def test_stats_are_the_median_the_nearest_rank_p99_and_the_largest(
    values: list[int], median: str, p99: str, largest: str
) -> None:
    """Each key's distribution: median (mean of the middle two), p99 by nearest rank, max."""
    stats = calibrate(thinking(values), requests=len(values), since=None).stats
    expected = Stats(len(values), Decimal(median), Decimal(p99), Decimal(largest))
    assert stats[("thinking", PRO, "1K", None)] == expected
    assert stats[("thinking", PRO, None, None)] == expected


def test_observations_carry_counts_and_ratios_stay_exact() -> None:
    """A grouped observation counts `n` times; tokens per unit are exact fractions."""
    grouped = [
        Observation("prompt", PRO, "1K", None, 1, 3, 2),
        Observation("prompt", PRO, "1K", None, 2, 3, 1),
    ]
    stats = calibrate(grouped, requests=3, since=None).stats[("prompt", PRO, "1K", None)]
    assert stats == Stats(3, Decimal("0.333333"), Decimal("0.666667"), Decimal("0.666667"))


def test_a_sample_teaches_only_when_ok_and_thinking_only_without_text() -> None:
    """Refused requests teach nothing; text-asking requests teach no thinking; zero units none."""
    assert list(sample(status="refused").observations()) == []
    kinds = [o.kind for o in sample(text_tokens_max=500, input_images=2).observations()]
    assert kinds == ["input_image", "prompt"]
    assert [o.kind for o in sample(prompt_bytes=0).observations()] == ["thinking"]
    calibration = calibrate_samples([sample(), sample(status="failed")])
    assert calibration.requests == 1


# --- allowances ----------------------------------------------------------------------------


def test_too_few_requests_leave_every_figure_to_the_card(shipped_book: RateBook) -> None:
    """Below MIN_SAMPLES nothing is calibrated; the price is the card's exactly."""
    calibration = calibrate(thinking([900] * (MIN_SAMPLES - 1)), requests=29, since=None)
    model = pro(shipped_book)
    assert calibration.allowances(model, "1K", None) == Allowances()
    assert calibration.facts(model, "1K", None) == []
    assert price(model, "batch", "1K", None, one(), calibration=calibration) == price(
        model, "batch", "1K", None, one()
    )


def test_thinking_is_priced_from_the_median_and_p99_with_margin(shipped_book: RateBook) -> None:
    """30 requests thinking 600..890: expected 745 (median), max ceil(890 x 1.25) = 1113."""
    values = [600 + 10 * i for i in range(30)]
    calibration = calibrate(thinking(values), requests=30, since=None)
    model = pro(shipped_book)
    assert calibration.allowances(model, "1K", None).thinking == Allowance(typical=745, max=1113)
    rate = model.modes["batch"].output_text_per_mtok
    assert rate is not None
    card = price(model, "batch", "1K", None, one())
    learned = price(model, "batch", "1K", None, one(), calibration=calibration)
    assert card is not None
    assert learned is not None
    assert learned.expected - card.expected == (745 - 400) * rate / MTOK
    assert learned.max - card.max == (1113 - 4000) * rate / MTOK


def test_the_maximum_is_never_below_the_largest_observed(shipped_book: RateBook) -> None:
    """One overrun among 200 is above p99 x margin: the maximum becomes that overrun."""
    values = [100] * 198 + [3000, 5000]
    calibration = calibrate(thinking(values), requests=200, since=None)
    assert calibration.allowances(pro(shipped_book), "1K", None).thinking == Allowance(
        typical=100, max=5000
    )


def test_the_most_specific_key_with_enough_requests_wins(shipped_book: RateBook) -> None:
    """(model, size, quality) with 30 requests wins; a size with fewer falls back to the model."""
    observations = thinking([1000] * 30, size="4K") + thinking([200] * 10, size="1K")
    calibration = calibrate(observations, requests=40, since=None)
    model = pro(shipped_book)
    at_4k = calibration.facts(model, "4K", None)
    at_1k = calibration.facts(model, "1K", None)
    assert [(f.size, f.used) for f in at_4k] == [("4K", (Decimal(1000), Decimal(1250)))]
    assert [(f.size, f.stats.samples) for f in at_1k] == [(None, 40)]  # every size of the model
    assert at_1k[0].used == (Decimal(1000), Decimal(1250))


def test_a_fact_the_card_states_as_one_figure_is_never_lowered(shipped_book: RateBook) -> None:
    """Gemini's 560 tokens per input image is a floor: 500 observed keeps 560; 600 raises it
    to 600 (what was seen: no margin on a fact)."""
    model = pro(shipped_book)
    assert model.input_image_tokens == Allowance(typical=560, max=560)
    low = [Observation("input_image", PRO, "1K", None, 1000, 2)] * 30
    high = [Observation("input_image", PRO, "1K", None, 600, 1)] * 30
    assert calibrate(low, requests=30, since=None).allowances(
        model, "1K", None
    ).input_image == Allowance(typical=560, max=560)
    assert calibrate(high, requests=30, since=None).allowances(
        model, "1K", None
    ).input_image == Allowance(typical=600, max=600)


def test_output_image_tokens_are_never_calibrated(shipped_book: RateBook) -> None:
    """Image output is a billing fact: a calibrated price keeps the card's image part."""
    model = pro(shipped_book)
    calibration = calibrate(thinking([0] * 30), requests=30, since=None)
    learned = price(model, "batch", "1K", None, one(prompt_bytes=0), calibration=calibration)
    rates = model.modes["batch"]
    assert rates.output_image_per_mtok is not None
    image = 1120 * rates.output_image_per_mtok / MTOK
    assert learned is not None
    assert learned.expected == learned.max == image  # no prompt, thinking 0: the image alone


@pytest.mark.parametrize(
    ("ratios", "expected", "maximum"),
    [
        pytest.param([(1, 4)] * 30, "0.25", "0.3125", id="p99-times-margin"),
        pytest.param([(9, 10)] * 30, "0.9", "1", id="capped-at-a-token-a-byte"),
        pytest.param([(1, 4)] * 29 + [(3, 2)], "0.25", "1.5", id="unless-more-was-seen"),
    ],
)
def test_prompt_tokens_per_byte(ratios: list[tuple[int, int]], expected: str, maximum: str) -> None:
    """Prompt maxima are p99 x margin, at most a token per byte unless more was observed."""
    observations = [Observation("prompt", PRO, "1K", None, t, b) for t, b in ratios]
    stats = calibrate(observations, requests=30, since=None).stats[("prompt", PRO, "1K", None)]
    card = (Decimal("0.25"), Decimal(1))
    assert calibrated("prompt", stats, card) == (Decimal(expected), Decimal(maximum))


def test_prompts_are_priced_per_byte_of_the_group(shipped_book: RateBook) -> None:
    """A calibrated prompt costs ceil(bytes x tokens per byte) at the input text rate."""
    model = pro(shipped_book)
    observations = [Observation("prompt", PRO, "1K", None, 1, 5)] * 30  # 0.2 a byte
    calibration = calibrate(observations, requests=30, since=None)
    assert calibration.allowances(model, "1K", None).prompt == PerByte(
        Decimal("0.2"), Decimal("0.25")
    )
    rate = model.modes["batch"].input_text_per_mtok
    assert rate is not None
    card = price(model, "batch", "1K", None, one(prompt_bytes=1001))
    learned = price(model, "batch", "1K", None, one(prompt_bytes=1001), calibration=calibration)
    assert card is not None
    assert learned is not None
    assert card.expected - learned.expected == (251 - 201) * rate / MTOK  # ceil(1001/4) vs 200.2
    assert card.max - learned.max == (1001 - 251) * rate / MTOK


def test_thinking_applies_only_where_the_card_has_a_thinking_allowance(
    shipped_book: RateBook,
) -> None:
    """An OpenAI model's output text is not thinking: its price ignores such a distribution."""
    model = shipped_book.resolve("gpt-image-1.5", AS_OF).model
    assert model.thinking_tokens is None
    calibration = calibrate(
        thinking([5000] * 30, size="1024x1024", model=model.id), requests=30, since=None
    )
    assert calibration.facts(model, "1024x1024", "low") == []


def test_a_calibration_survives_the_journal(shipped_book: RateBook) -> None:
    """to_json keeps what pricing uses; from_json gives the same allowances and summary."""
    observations = thinking([600 + i for i in range(40)]) + thinking([5] * 3, size="2K")
    calibration = calibrate(observations, requests=43, since=dt.date(2026, 10, 1))
    again = Calibration.from_json(calibration.to_json())
    model = pro(shipped_book)
    for size in ("1K", "2K", "4K"):
        assert again.allowances(model, size, None) == calibration.allowances(model, size, None)
    assert again.summary() == "calibrated from 43 requests (since 2026-10-01)"
    assert [s["size"] for s in calibration.to_json()["stats"]] == [None, "1K"]  # 2K has 3


def test_estimate_without_calibration_is_unchanged(shipped_book: RateBook) -> None:
    """Without a calibration the estimate is the card's; with one, only learned parts move."""
    totals = one(prompt_bytes=400)
    grouped = {(PRO, "1K", None): totals}
    plain = estimate(grouped, shipped_book, AS_OF)
    assert estimate(grouped, shipped_book, AS_OF, calibration=None) == plain
    calibration = calibrate(thinking([400] * 30), requests=30, since=None)
    learned = estimate(grouped, shipped_book, AS_OF, calibration=calibration)
    assert learned.totals["batch"] is not None
    assert plain.totals["batch"] is not None
    assert learned.totals["batch"].expected == plain.totals["batch"].expected  # median = card
    assert learned.totals["batch"].max < plain.totals["batch"].max  # 500 max, not 4000


def test_an_assumed_fact_is_calibrated_like_a_range(shipped_book: RateBook) -> None:
    """3.1 Flash's 1,120 tokens per input image is marked assumed on the 2026-11-26 card: no
    floor, so 560 observed prices 560 expected and 700 max."""
    model = shipped_book.resolve("gemini-3.1-flash-image", dt.date(2026, 11, 26)).model
    assert model.input_image_tokens == Allowance(typical=1120, max=1120)
    assert "input_image_tokens" in model.assumed
    seen = [Observation("input_image", model.id, "1K", None, 560, 1)] * 30
    assert calibrate(seen, requests=30, since=None).allowances(
        model, "1K", None
    ).input_image == Allowance(typical=560, max=700)
