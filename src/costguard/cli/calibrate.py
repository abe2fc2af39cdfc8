"""`costguard calibrate`: what real runs reported using, against the cards' allowances.

Reads the usage samples of the ledger named by `--ledger` (or the settings): with a shared
PostgreSQL ledger, every machine's runs. Per model (and per size and quality): how many requests,
the observed median, p99 and largest value of each calibrated fact, the card's figures and what
`estimate --calibrated` and `run --calibrated` would use. Nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from costguard.api.setup import load_rate_book
from costguard.cli.common import (
    AsOfOpt,
    LedgerOpt,
    PricingOpt,
    SinceOpt,
    SummaryOutput,
    WideOpt,
    load_calibration,
    open_calibration_ledger,
    parse_as_of,
)
from costguard.cli.output import emit

if TYPE_CHECKING:
    import datetime as dt
    from decimal import Decimal

    from costguard.pricing.calibration import Calibration, Key, Kind, Stats
    from costguard.pricing.engine import RateBook
    from costguard.pricing.schema import ModelCard


def calibrate(
    ledger: LedgerOpt = None,
    since: SinceOpt = None,
    as_of: AsOfOpt = None,
    output: Annotated[SummaryOutput, typer.Option(help="table or json.")] = SummaryOutput.table,
    pricing: PricingOpt = None,
    wide: WideOpt = False,
) -> None:
    """Show what real runs reported using against the cards, and what calibrated estimates use.

    Per model, and per size and quality: the requests observed, the median, p99 and largest
    thinking tokens, tokens per input image and prompt tokens per byte, the card's figures, and
    the figures `estimate --calibrated` and `run --calibrated` price with (a figure needs enough
    requests; until then the card's is used). Rehearsals (--simulate) never count.

    Example: costguard calibrate --since 90d
    """
    from costguard.pricing.calibration import MAX_MARGIN, MIN_SAMPLES, PERCENTILE

    at = parse_as_of(as_of)
    book = load_rate_book(pricing)
    with open_calibration_ledger(ledger) as opened:
        calibration = load_calibration(opened, since)
    rows = _rows(calibration, book, at)
    if output is SummaryOutput.json:
        emit(
            {
                "requests": calibration.requests,
                "since": None if calibration.since is None else str(calibration.since),
                "as_of": at.isoformat(),
                "min_samples": MIN_SAMPLES,
                "percentile": PERCENTILE,
                "margin": str(MAX_MARGIN),
                "facts": rows,
            }
        )
        return
    typer.echo(calibration.summary())
    if not rows:
        typer.echo(
            "no usage recorded yet: estimates use the cards until real runs (not --simulate) "
            "have collected requests"
        )
        return
    from costguard.cli.table import wrap

    typer.echo(_table(rows, wide=wide))
    rule = (
        f"a figure needs {MIN_SAMPLES} requests (else the model's, else the card's); expected = "
        f"median, max = the larger of p{PERCENTILE} x {MAX_MARGIN} and the largest seen; "
        "units: thinking tokens per request, input_image tokens per input image, prompt "
        "tokens per byte"
    )
    for line in wrap(rule, wide=wide):
        typer.echo(line)


def _table(rows: list[dict[str, Any]], *, wide: bool) -> str:
    """Observed figures against the card's and what estimates use. To fit 100 columns (unless
    --wide) where each figure comes from is left out first, then p99, then the card's figures."""
    from costguard.cli import table
    from costguard.cli.table import Column

    columns = [
        Column("model"),
        Column("size"),
        Column("fact"),
        Column("requests", right=True),
        Column("median", right=True),
        Column("p99", right=True, drop=2),
        Column("max", right=True),
        Column("card", right=True, drop=1),
        Column("estimates use", right=True),
        Column("from", drop=3),
    ]
    cells = [
        [
            r["model"],
            " ".join(x for x in (r["size"] or "all", r["quality"]) if x),
            r["fact"],
            f"{r['samples']:,}",
            r["observed"]["median"],
            r["observed"]["p99"],
            r["observed"]["max"],
            _pair(r["card"]),
            _pair(r["used"]),
            r["from"],
        ]
        for r in rows
    ]
    return table.render(columns, cells, wide=wide)


def _pair(figures: dict[str, str] | None) -> str:
    return "-" if figures is None else f"{figures['expected']} / {figures['max']}"


def _rows(calibration: Calibration, book: RateBook, at: dt.date) -> list[dict[str, Any]]:
    """One row per model (size, quality) and fact the card prices, model-wide rows first."""
    from costguard.errors import CostguardError
    from costguard.money import plain
    from costguard.pricing.calibration import UNITS, card_figures

    def order(item: tuple[Key, Stats]) -> tuple[str, int, str, str, str]:
        (kind, model, size, quality), _ = item
        return (model, 0 if size is None else 1, size or "", quality or "", kind)

    rows: list[dict[str, Any]] = []
    for (kind, model_id, size, quality), stats in sorted(calibration.stats.items(), key=order):
        try:
            model: ModelCard | None = book.resolve(model_id, at).model
        except CostguardError:  # no longer (or not yet) priced: shown without card figures
            model = None
        card = card_figures(kind, model) if model is not None else None
        if model is not None and card is None:
            continue  # the card prices no such part (thinking for a model that never thinks)
        used, source = _used(calibration, kind, model, size, quality, card)
        rows.append(
            {
                "fact": kind,
                "unit": UNITS[kind],
                "model": model_id,
                "size": size,
                "quality": quality,
                "samples": stats.samples,
                "observed": {
                    "median": plain(stats.median),
                    "p99": plain(stats.p99),
                    "max": plain(stats.max),
                },
                "card": None if card is None else _figures(card),
                "used": None if used is None else _figures(used),
                "from": source,
            }
        )
    return rows


def _used(
    calibration: Calibration,
    kind: Kind,
    model: ModelCard | None,
    size: str | None,
    quality: str | None,
    card: tuple[Decimal, Decimal] | None,
) -> tuple[tuple[Decimal, Decimal] | None, str]:
    """What an estimate for this key prices with, and where that comes from."""
    from costguard.pricing.calibration import MIN_SAMPLES, calibrated, is_fixed

    if model is None or card is None:
        return None, "no card in force prices this model"
    if size is None:
        stats = calibration.stats[(kind, model.id, None, None)]
        if stats.samples >= MIN_SAMPLES:
            return calibrated(kind, stats, card, fixed=is_fixed(kind, model)), "these requests"
        return card, f"card (fewer than {MIN_SAMPLES} requests)"
    for fact in calibration.facts(model, size, quality):
        if fact.kind == kind:
            return fact.used, "these requests" if fact.size is not None else "every size"
    return card, f"card (fewer than {MIN_SAMPLES} requests)"


def _figures(pair: tuple[Decimal, Decimal]) -> dict[str, str]:
    from costguard.money import plain

    return {"expected": plain(pair[0]), "max": plain(pair[1])}
