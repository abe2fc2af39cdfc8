"""`costguard.money`: the one display rule for USD, and exact strings for machines."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest

from costguard.money import plain, usd, usd_exact, usd_together, usd_unit


def shown(text: str) -> Decimal:
    """The number a displayed amount says (`-$1,234.56` -> -1234.56)."""
    return Decimal(text.replace("$", "").replace(",", ""))


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        pytest.param("1234.5612", "$1,234.56", id="to-the-cent-with-separators"),
        pytest.param("1000000000", "$1,000,000,000.00", id="the-largest"),
        pytest.param("0.577245", "$0.58", id="half-up"),
        pytest.param("0.125", "$0.13", id="half-up-not-even"),
        pytest.param("70.61843675", "$70.62", id="status-was-$70.61843675"),
        pytest.param("0", "$0.00", id="zero"),
        pytest.param("0.01", "$0.01", id="a-cent"),
        pytest.param("0.0031", "$0.0031", id="below-a-cent-two-digits"),
        pytest.param("0.00294", "$0.0029", id="below-a-cent-rounded"),
        pytest.param("0.004", "$0.0040", id="below-a-cent-never-zero"),
        pytest.param("0.000001", "$0.0000010", id="a-millionth"),
        pytest.param("-1.2", "-$1.20", id="negative"),
        pytest.param("-0.0004", "-$0.00040", id="negative-below-a-cent"),
    ],
)
def test_one_amount(amount: str, text: str) -> None:
    """An amount is shown to the cent with separators; below a cent with two significant
    digits, never as $0.00."""
    assert usd(Decimal(amount)) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [("0.06", "+$0.06"), ("-0.06", "-$0.06"), ("0", "$0.00"), ("0.0001", "+$0.00010")],
)
def test_a_change_is_signed(amount: str, text: str) -> None:
    """`signed`: a change shows its sign; no change has none."""
    assert usd(Decimal(amount), signed=True) == text


@pytest.mark.parametrize(
    ("amounts", "given", "texts"),
    [
        pytest.param(
            ["0.577245", "0.30", "0.277245"],
            ["0.30"],
            ["$0.58", "$0.30", "$0.28"],
            id="over-budget-at-the-cent",
        ),
        pytest.param(
            ["50.0031", "50", "0.0031"],
            ["50"],
            ["$50.003", "$50.000", "$0.0031"],
            id="max-and-limit-would-look-equal",
        ),
        pytest.param(
            ["0.577245", "0.577244", "0.000001"],
            ["0.577244"],
            ["$0.577245", "$0.577244", "$0.0000010"],
            id="a-millionth-apart",
        ),
        pytest.param(
            ["0.1224", "0.1441"], [], ["$0.12", "$0.14"], id="expected-and-max-at-the-cent"
        ),
        pytest.param(
            ["0.1054", "0.1056"], [], ["$0.105", "$0.106"], id="expected-and-max-one-more-digit"
        ),
        pytest.param(["0.5412", "0.5412"], [], ["$0.54", "$0.54"], id="equal-amounts-look-equal"),
        pytest.param(["0.00996", "0.01"], [], ["$0.00996", "$0.01000"], id="a-cent-and-nearly"),
        pytest.param(["12.3454", "12.3456"], ["12.3456"], ["$12.3454", "$12.3456"], id="typed"),
        pytest.param(["0.5", "1"], ["1"], ["$0.50", "$1.00"], id="typed-whole"),
    ],
)
def test_amounts_shown_together(amounts: list[str], given: list[str], texts: list[str]) -> None:
    """Amounts shown together get the fewest decimals that tell different ones apart; an
    amount someone typed shows as typed, and those beside it with as many decimals."""
    values = [Decimal(a) for a in amounts]
    assert usd_together(*values, given=[Decimal(g) for g in given]) == texts


def test_different_amounts_never_look_equal_and_keep_their_order() -> None:
    """For 2,000 random sets of amounts (near each other, across magnitudes, below a cent, some
    typed): two amounts look equal only when they are, and never in the wrong order."""
    rng = random.Random(15)
    for _ in range(2000):
        base = Decimal(rng.choice(["0", "0.004", "0.0099", "0.5", "49.99", "50", "1234.5"]))
        values = [base + Decimal(rng.randint(-9, 9)).scaleb(-rng.randint(2, 8)) for _ in range(4)]
        values = [abs(v) for v in values]
        given = [values[0]] if rng.random() < 0.5 else []
        texts = usd_together(*values, given=given)
        for (a, ta), (b, tb) in itertools.combinations(zip(values, texts, strict=True), 2):
            assert (shown(ta) == shown(tb)) == (a == b), (values, texts)
            if a < b:
                assert shown(ta) < shown(tb), (values, texts)
        if given:
            assert shown(texts[0]) == values[0]  # the typed amount, exactly


@pytest.mark.parametrize(
    ("price", "text"),
    [
        pytest.param("0.039", "$0.039", id="as-published"),
        pytest.param("0.12", "$0.12", id="no-trailing-zeros"),
        pytest.param("0.02241", "$0.02241", id="five-digits"),
        pytest.param("0.033792", "$0.033792", id="five-significant"),
        pytest.param("0.198656", "$0.19866", id="six-rounded-to-five"),
        pytest.param("0.40026", "$0.40026", id="4k-high"),
        pytest.param("120", "$120.00", id="whole"),
        pytest.param("1.23456", "$1.2346", id="over-a-dollar"),
        pytest.param("0.000001234567", "$0.0000012346", id="tiny"),
        pytest.param("0", "$0.00", id="free"),
    ],
)
def test_unit_prices_have_five_significant_digits(price: str, text: str) -> None:
    """A per-image price: five significant digits, trailing zeros dropped past the cent."""
    assert usd_unit(Decimal(price)) == text


def test_exact_and_plain() -> None:
    """`usd_exact` is the amount as it is, at least to the cent; `plain` is for machines."""
    assert usd_exact(Decimal("1000000000")) == "$1,000,000,000.00"
    assert usd_exact(Decimal("12.345")) == "$12.345"
    assert usd_exact(Decimal("12.5")) == "$12.50"
    assert plain(Decimal("74.5580470")) == "74.558047"
    assert plain(Decimal("-0")) == "0"
    assert plain(Decimal("1E+3")) == "1000"
