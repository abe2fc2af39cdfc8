"""Decimal USD helpers. Money is Decimal end to end; rounding happens only for display.

The display rule, the one every table and message uses (JSON and CSV carry `plain`, exact):

- An amount is shown to the cent with thousands separators: `$1,234.56`, `$0.54`, `$0.00`.
- An amount below a cent is never shown as `$0.00`: it gets two significant digits (`$0.0031`).
- Amounts shown together (a message; a range or a before -> after; a budget's or a run's row)
  never look equal unless they are: `usd_together` gives all of them more decimals, the fewest
  that tell them apart
  (`$50.003 passes --max-usd $50.000`, not `$50.00 passes --max-usd $50.00`).
- An amount someone typed (a limit: `--max-usd`, `budget set --usd`) is shown as typed, at
  least to the cent (`$12.345`), and the amounts beside it with as many decimals: rounding a
  limit would show another limit than the one in force.
- A unit price (per image) has five significant digits, trailing zeros dropped past the cent
  (`$0.039`, `$0.12`, `$0.02241`, `$0.40026`): it is multiplied by every image of a group.
- A change is signed (`+$0.06`, `-$1.20`); a negative amount is `-$1.20`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
CENT = Decimal("0.01")
MAX_USD = Decimal(1_000_000_000)
"""The largest amount costguard takes anywhere (a budget, --max-usd, a ledger entry): USD 1e9.

Anything larger is refused as bad input rather than stored: no real image queue costs more, and
an amount like 1e309 would be stored exactly but break every sum and display that follows.
"""
UNIT_DIGITS = 5
"""Significant digits of a unit price (all but 6 of the 856 per-image prices of the shipped
cards are shown exactly; those within 0.003%)."""
_SUBCENT_DIGITS = 2
_CENTS = 2


def per_mtok(tokens: int, rate_per_million: Decimal) -> Decimal:
    """Exact cost of `tokens` at `rate_per_million` USD per 1M tokens."""
    return Decimal(tokens) * rate_per_million / MILLION


def usd(amount: Decimal, *, signed: bool = False) -> str:
    """One amount for display: `$1,234.56`; below a cent `$0.0031`. Never feed it back into
    arithmetic. `signed`: a change, `+$0.06` / `-$0.06`."""
    return usd_together(amount, signed=signed)[0]


def usd_together(
    *amounts: Decimal, given: Iterable[Decimal] = (), signed: bool = False
) -> list[str]:
    """Amounts shown together (a message, a range, a before -> after, a row), in order: by `usd`'s
    rule, with more decimals for all of them when two different amounts would look equal.

    `given`: amounts someone typed (limits): shown exactly, and every other amount with at
    least as many decimals, so none looks larger or smaller than it is next to them.
    """
    exact = max((_decimals(a) for a in amounts), default=_CENTS)
    places = max((_CENTS, *(_decimals(g) for g in given)))
    while True:
        rounded = [_round(a, _places(a, places)) for a in amounts]
        if places >= exact or _distinct(amounts, rounded):
            return [_text(r, signed) for r in rounded]
        places += 1


def usd_unit(amount: Decimal) -> str:
    """A unit price (per image): five significant digits, no trailing zeros past the cent."""
    if not amount:
        return _text(_round(ZERO, _CENTS), signed=False)
    rounded = _round(amount, max(UNIT_DIGITS - 1 - amount.adjusted(), 0))
    return _text(_round(rounded, max(_decimals(rounded), _CENTS)), signed=False)


def usd_exact(amount: Decimal) -> str:
    """`$` and the exact amount, at least to the cent, with thousands separators (an amount
    someone typed, or a bound: `$1,000,000,000.00`)."""
    return _text(_round(amount, max(_decimals(amount), _CENTS)), signed=False)


def plain(amount: Decimal) -> str:
    """Exact decimal string for machine output (JSON, CSV), normalised without exponent."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def _decimals(amount: Decimal) -> int:
    """Decimal places of `amount` written exactly (trailing zeros dropped)."""
    exponent = amount.normalize().as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def _places(amount: Decimal, at_least: int) -> int:
    """Places `amount` is shown with: `at_least`, more below a cent (two significant digits)."""
    if amount and abs(amount) < CENT:
        return max(at_least, _SUBCENT_DIGITS - 1 - amount.adjusted())
    return at_least


def _round(amount: Decimal, places: int) -> Decimal:
    """`amount` rounded half up to `places` decimals (the exponent keeps them: `0.50`)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _text(rounded: Decimal, signed: bool) -> str:
    places = max(-int(rounded.as_tuple().exponent), 0)
    sign = "-" if rounded < 0 else ("+" if signed and rounded > 0 else "")
    return f"{sign}${abs(rounded):,.{places}f}"


def _distinct(amounts: tuple[Decimal, ...], rounded: list[Decimal]) -> bool:
    """Different amounts are shown as different numbers (`$0.0100` and `$0.01` are not)."""
    seen: dict[Decimal, Decimal] = {}
    for amount, shown in zip(amounts, rounded, strict=True):
        if seen.setdefault(shown, amount) != amount:
            return False
    return True
