"""Calibration: the usage real runs reported, turned into the allowances estimates price with.

Pure: no I/O, no clock. The ledger keeps one `Sample` per collected request that reported its
usage (`usage_samples`); what a sample teaches is an `Observation` (tokens over units), and
`calibrate` turns observations into per-key distributions (`Stats`). The engine prices with
`Calibration.allowances` where a distribution has enough samples, and with the card elsewhere.

Three uncertain parts of a request are learned, each only from requests that came back ok:

| fact | one observation | from requests that |
|---|---|---|
| `thinking` | output text tokens per request (all thinking) | asked for no text |
| `input_image` | input image tokens / input images | had input images |
| `prompt` | input text tokens / prompt bytes | had a prompt |

("asked for no text": `text_tokens_max == 0`, so every output text token was thinking.)

Keys: per model, and per (model, size, quality). A price uses the most specific key with at
least `MIN_SAMPLES` observations, else the card. From a distribution:

    expected = median
    maximum  = max(p99 x MAX_MARGIN, largest observed)   (p99: nearest rank)

so a request that overran the maximum widens the next calibration by itself. What calibration
never does: touch a fixed fact (output image tokens are billing facts, never calibrated);
lower a fact the card publishes as one figure (`typical == max` and not in its `assumed`,
like Gemini 3 Pro Image's 560 tokens per input image: it is raised to the largest value
observed, if larger, never lowered); raise the prompt's maximum past one token per byte (the
card's bound) unless more was observed. Ranges (thinking's 400 typical / 4,000 max) and facts
the card marks `assumed` are costguard's assumptions: calibration replaces them.
Thinking applies only to models whose card has a thinking allowance, input images only where
the card prices them (the engine's rules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal, NamedTuple

from costguard.money import plain
from costguard.pricing.schema import Allowance, ModelCard

Kind = Literal["thinking", "input_image", "prompt"]
KINDS: tuple[Kind, ...] = ("thinking", "input_image", "prompt")
UNITS: dict[Kind, str] = {
    "thinking": "tokens per request",
    "input_image": "tokens per input image",
    "prompt": "tokens per prompt byte",
}

MIN_SAMPLES = 30
"""Observations a key needs before its distribution replaces the card's allowance."""
PERCENTILE = 99
"""The maximum is set from this percentile of the observations (nearest rank) ..."""
MAX_MARGIN = Decimal("1.25")
"""... times this safety margin, and never below the largest observation."""
PER_BYTE = Decimal("0.000001")
"""Prompt tokens per byte are kept to this many places (medians half up, maxima up)."""
ASSUMED: dict[Kind, str] = {"thinking": "thinking_tokens", "input_image": "input_image_tokens"}
"""The card's name of each fact in `ModelCard.assumed` (the prompt rule is costguard's own)."""
CARD_PROMPT = (Decimal("0.25"), Decimal(1))
"""The card's prompt rule as tokens per byte: expected ceil(bytes / 4), maximum bytes."""


class Sample(NamedTuple):
    """One collected request: its priced quantities and the tokens its provider reported."""

    key: str
    provider: str
    model: str
    """The model's id on the card the request resolved to (aliases resolved)."""
    size: str
    quality: str | None
    status: str
    """The manifest status (`ok`, `refused`, ...); only `ok` requests teach calibration."""
    prompt_bytes: int
    input_images: int
    text_tokens_max: int
    """The text output the request allowed besides thinking (0: it asked for no text)."""
    input_text_tokens: int
    input_image_tokens: int
    output_text_tokens: int
    """Text output plus thinking, as reported."""
    output_image_tokens: int

    def observations(self) -> Iterator[Observation]:
        """What this sample teaches (see the module docstring); nothing unless it is ok."""
        if self.status != "ok":
            return
        where = (self.model, self.size, self.quality)
        if self.text_tokens_max == 0:
            yield Observation("thinking", *where, self.output_text_tokens, 1)
        if self.input_images > 0:
            yield Observation("input_image", *where, self.input_image_tokens, self.input_images)
        if self.prompt_bytes > 0:
            yield Observation("prompt", *where, self.input_text_tokens, self.prompt_bytes)


class Observation(NamedTuple):
    """`count` requests of one model, size and quality that each reported `tokens` for `per`
    units (1 request, its input images, its prompt bytes)."""

    kind: Kind
    model: str
    size: str
    quality: str | None
    tokens: int
    per: int
    n: int = 1


Key = tuple[Kind, str, str | None, str | None]
"""(fact, model, size, quality); size None: every size and quality of the model."""


@dataclass(frozen=True, slots=True)
class Stats:
    """One key's distribution: how many observations, their median, p99 and largest value."""

    samples: int
    median: Decimal
    p99: Decimal
    max: Decimal


@dataclass(frozen=True, slots=True)
class PerByte:
    """Prompt tokens per UTF-8 byte: expected and maximum."""

    typical: Decimal
    max: Decimal

    def tokens(self, prompt_bytes: int) -> tuple[int, int]:
        """Expected and maximum tokens of `prompt_bytes` bytes of prompt, rounded up."""
        return _ceil(self.typical * prompt_bytes), _ceil(self.max * prompt_bytes)


@dataclass(frozen=True, slots=True)
class Allowances:
    """What a price uses instead of the card, per part; None: the card's figure."""

    thinking: Allowance | None = None
    input_image: Allowance | None = None
    prompt: PerByte | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    """One calibrated figure a price uses: where it comes from, what was seen, what is used."""

    kind: Kind
    model: str
    size: str | None
    """None: learned from every size and quality of the model."""
    quality: str | None
    stats: Stats
    card: tuple[Decimal, Decimal]
    """The card's expected and maximum figure, in the same unit."""
    used: tuple[Decimal, Decimal]
    """The expected and maximum figure estimates use."""

    def as_json(self) -> dict[str, Any]:
        """For JSON output: figures as exact decimal strings."""
        return {
            "fact": self.kind,
            "unit": UNITS[self.kind],
            "model": self.model,
            "size": self.size,
            "quality": self.quality,
            "samples": self.stats.samples,
            "observed": {
                "median": plain(self.stats.median),
                "p99": plain(self.stats.p99),
                "max": plain(self.stats.max),
            },
            "card": {"expected": plain(self.card[0]), "max": plain(self.card[1])},
            "used": {"expected": plain(self.used[0]), "max": plain(self.used[1])},
        }


class Calibration:
    """Distributions learned from `requests` ok requests recorded since `since`."""

    def __init__(self, stats: Mapping[Key, Stats], *, requests: int, since: dt.date | None) -> None:
        self.stats = dict(stats)
        """Every key observed, enough samples or not (`costguard calibrate` shows them all)."""
        self.requests = requests
        self.since = since
        """The first day counted: the one asked for, else the day of the earliest sample."""
        self._cache: dict[tuple[str, str, str | None], Allowances] = {}

    def found(
        self, kind: Kind, model: str, size: str, quality: str | None
    ) -> tuple[Key, Stats] | None:
        """The most specific key with at least `MIN_SAMPLES` observations, or None."""
        for key in ((kind, model, size, quality), (kind, model, None, None)):
            stats = self.stats.get(key)
            if stats is not None and stats.samples >= MIN_SAMPLES:
                return key, stats
        return None

    def allowances(self, model: ModelCard, size: str, quality: str | None) -> Allowances:
        """What to price `model` at `size` and `quality` with, where calibration knows better."""
        where = (model.id, size, quality)
        cached = self._cache.get(where)
        if cached is None:
            facts = {f.kind: f for f in self.facts(model, size, quality)}
            cached = Allowances(
                thinking=_allowance(facts.get("thinking")),
                input_image=_allowance(facts.get("input_image")),
                prompt=PerByte(*facts["prompt"].used) if "prompt" in facts else None,
            )
            self._cache[where] = cached
        return cached

    def facts(self, model: ModelCard, size: str, quality: str | None) -> list[Fact]:
        """The calibrated figures a price of `model` at `size` and `quality` uses."""
        out = []
        for kind in KINDS:
            card = card_figures(kind, model)
            hit = self.found(kind, model.id, size, quality)
            if card is None or hit is None:
                continue
            (_, _, key_size, key_quality), stats = hit
            used = calibrated(kind, stats, card, fixed=is_fixed(kind, model))
            out.append(Fact(kind, model.id, key_size, key_quality, stats, card, used))
        return out

    def to_json(self) -> dict[str, Any]:
        """The distributions with enough samples (what pricing can use), for a run's journal."""
        return {
            "requests": self.requests,
            "since": None if self.since is None else self.since.isoformat(),
            "stats": [
                {
                    "fact": kind,
                    "model": model,
                    "size": size,
                    "quality": quality,
                    "samples": s.samples,
                    "median": plain(s.median),
                    "p99": plain(s.p99),
                    "max": plain(s.max),
                }
                for (kind, model, size, quality), s in sorted(self.stats.items(), key=_order)
                if s.samples >= MIN_SAMPLES
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """A calibration as `to_json` wrote it."""
        stats: dict[Key, Stats] = {}
        for row in data["stats"]:
            key: Key = (row["fact"], row["model"], row["size"], row["quality"])
            stats[key] = Stats(
                int(row["samples"]),
                Decimal(row["median"]),
                Decimal(row["p99"]),
                Decimal(row["max"]),
            )
        since = data.get("since")
        return cls(
            stats,
            requests=int(data["requests"]),
            since=None if since is None else dt.date.fromisoformat(since),
        )

    def summary(self) -> str:
        """`calibrated from N requests (since DATE)`: the line every calibrated output shows."""
        since = f" (since {self.since.isoformat()})" if self.since is not None else ""
        return f"calibrated from {self.requests:,} requests{since}"


def card_figures(kind: Kind, model: ModelCard) -> tuple[Decimal, Decimal] | None:
    """The card's expected and maximum figure for `kind`; None where the card prices none."""
    if kind == "prompt":
        return CARD_PROMPT
    allowance = model.thinking_tokens if kind == "thinking" else model.input_image_tokens
    if allowance is None:
        return None
    return Decimal(allowance.typical), Decimal(allowance.max)


def is_fixed(kind: Kind, model: ModelCard) -> bool:
    """Whether the card states `kind` as a published fact: one figure (`typical == max`) that
    its `assumed` does not list. Calibration never lowers such a figure."""
    figures = card_figures(kind, model)
    if kind == "prompt" or figures is None:
        return False
    return figures[0] == figures[1] and ASSUMED[kind] not in model.assumed


def calibrated(
    kind: Kind, stats: Stats, card: tuple[Decimal, Decimal], *, fixed: bool = False
) -> tuple[Decimal, Decimal]:
    """The expected and maximum figure a distribution gives (see the module docstring).

    Tokens per request or per image are whole tokens (the median half up, the maximum up);
    tokens per byte are kept to `PER_BYTE`. A `fixed` card figure (`is_fixed`) is a floor for
    both, raised only to what was observed (no margin on a fact).
    """
    widest = stats.max if fixed else max(stats.p99 * MAX_MARGIN, stats.max)
    if kind == "prompt":
        expected = stats.median.quantize(PER_BYTE, ROUND_HALF_UP)
        maximum = max(min(stats.p99 * MAX_MARGIN, card[1]), stats.max)
        maximum = maximum.quantize(PER_BYTE, ROUND_CEILING)
    else:
        expected = stats.median.to_integral_value(ROUND_HALF_UP)
        maximum = widest.to_integral_value(ROUND_CEILING)
    if fixed:
        expected, maximum = max(expected, card[0]), max(maximum, card[1])
    return expected, max(maximum, expected)


def calibrate(
    observations: Iterable[Observation], *, requests: int, since: dt.date | None
) -> Calibration:
    """Per model and per (model, size, quality), the distribution of each fact observed."""
    weighted: dict[Key, dict[Fraction, int]] = {}
    for o in observations:
        value = Fraction(o.tokens, o.per)
        for key in ((o.kind, o.model, o.size, o.quality), (o.kind, o.model, None, None)):
            counts = weighted.setdefault(key, {})
            counts[value] = counts.get(value, 0) + o.n
    return Calibration(
        {key: _stats(counts) for key, counts in weighted.items()}, requests=requests, since=since
    )


def calibrate_samples(samples: Iterable[Sample], *, since: dt.date | None = None) -> Calibration:
    """`calibrate` over samples in memory (the ledger groups its rows in SQL instead)."""
    observations: list[Observation] = []
    requests = 0
    for sample in samples:
        if sample.status == "ok":
            requests += 1
            observations += sample.observations()
    return calibrate(observations, requests=requests, since=since)


def _stats(counts: Mapping[Fraction, int]) -> Stats:
    values = sorted(counts.items())
    total = sum(counts.values())

    def at_rank(rank: int) -> Fraction:
        seen = 0
        for value, count in values:
            seen += count
            if seen >= rank:
                return value
        return values[-1][0]

    middle = (at_rank((total + 1) // 2) + at_rank(total // 2 + 1)) / 2
    p99 = at_rank(-(-total * PERCENTILE // 100))
    return Stats(total, _decimal(middle, ROUND_HALF_UP), _decimal(p99), _decimal(values[-1][0]))


def _decimal(value: Fraction, rounding: str = ROUND_CEILING) -> Decimal:
    """A Fraction as a Decimal: exact for whole and half tokens, else to `PER_BYTE` places."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    if value.denominator in (1, 2):
        return exact
    return exact.quantize(PER_BYTE, rounding)


def _allowance(fact: Fact | None) -> Allowance | None:
    if fact is None:
        return None
    return Allowance(typical=int(fact.used[0]), max=int(fact.used[1]))


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_CEILING))


def _order(item: tuple[Key, Stats]) -> tuple[str, str, str, str]:
    (kind, model, size, quality), _ = item
    return (model, size or "", quality or "", kind)
