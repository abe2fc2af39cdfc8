"""Output sizes: which a model accepts, and the tokens of sizes priced by a rule (pure).

Most models list their sizes. gpt-image-2 accepts any `WxH` within limits and bills output
tokens by a published rule whose parameters are card data (`ModelCard.any_size`).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from costguard.pricing.schema import ModelCard, SizeRule

_WXH = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


def parse_size(size: str) -> tuple[int, int] | None:
    """(width, height) of a `WxH` size, or None when it is not one."""
    match = _WXH.fullmatch(size)
    return (int(match.group(1)), int(match.group(2))) if match else None


def rule_problem(rule: SizeRule, size: str) -> str | None:
    """Why `size` breaks the rule (the first limit broken), or None when it is valid."""
    parsed = parse_size(size)
    if parsed is None:
        return "a size is WIDTHxHEIGHT in pixels (e.g. 1536x864)"
    width, height = parsed
    long, short = max(parsed), min(parsed)
    if width % rule.step or height % rule.step:
        return f"both edges must be multiples of {rule.step} px"
    if long > rule.max_edge:
        return f"the longest edge must be at most {rule.max_edge:,} px"
    if Fraction(long, short) > Fraction(rule.max_aspect_ratio):
        return f"the aspect ratio must be at most {rule.max_aspect_ratio}:1"
    if not rule.min_pixels <= width * height <= rule.max_pixels:
        return (
            f"the image must have {rule.min_pixels:,} to {rule.max_pixels:,} pixels "
            f"({width * height:,} asked)"
        )
    return None


def rule_tokens(rule: SizeRule, size: str, quality: str) -> int:
    """Output image tokens of one image at `size` and `quality` by the rule (exact integers)."""
    parsed = parse_size(size)
    assert parsed is not None, size
    width, height = parsed
    q = rule.quality_factors[quality]
    long, short = max(parsed), min(parsed)
    f = (2 * q * short + long) // (2 * long)
    numerator = q * f * (rule.base_pixels + width * height)
    return -(-numerator // rule.divisor)


def size_problem(model: ModelCard, size: str) -> str | None:
    """Why `model` refuses `size`, or None when it accepts it."""
    if size in model.sizes:
        return None
    if model.any_size is not None:
        problem = rule_problem(model.any_size, size)
        if problem is None:
            return None
        return f"{model.id} does not accept size {size!r}: {problem}"
    return f"{model.id} does not support size {size!r}; allowed: {', '.join(model.sizes)}"


def accepts(model: ModelCard, size: str) -> bool:
    """Whether `model` accepts `size` (listed, or valid under its rule)."""
    return size_problem(model, size) is None


def order(model: ModelCard, size: str) -> tuple[int, int]:
    """Sort key: listed sizes in card order, then other sizes by pixel count."""
    if size in model.sizes:
        return (model.sizes.index(size), 0)
    parsed = parse_size(size) or (0, 0)
    return (len(model.sizes), parsed[0] * parsed[1])


def smaller_sizes(
    model: ModelCard, size: str, *, tolerance: Fraction = Fraction(3, 100)
) -> list[str]:
    """Valid sizes with fewer pixels and (within `tolerance`) the same aspect ratio, largest
    first: what a cheaper image of the same shape could be. Empty for models with no rule."""
    rule, parsed = model.any_size, parse_size(size)
    if rule is None or parsed is None:
        return []
    width, height = parsed
    ratio = Fraction(width, height)
    found: dict[str, int] = {}
    # widths on the step grid; the height nearest to the same ratio, on the grid too
    for w in range(width - rule.step, 0, -rule.step):
        h = round(w / ratio / rule.step) * rule.step
        if h <= 0:
            break
        candidate = f"{w}x{h}"
        if abs(Fraction(w, h) / ratio - 1) > tolerance:
            continue
        if rule_problem(rule, candidate) is None:
            found[candidate] = w * h
        elif w * h < rule.min_pixels:
            break
    return sorted(found, key=lambda s: -found[s])
