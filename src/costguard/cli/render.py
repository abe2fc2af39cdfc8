"""Tables, JSON and CSV for the CLI. Money is rounded here, and only here, for display."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any, Literal

from tabulate import tabulate

from costguard.money import plain, usd, usd_exact
from costguard.pricing.calibration import MIN_SAMPLES, UNITS
from costguard.pricing.engine import (
    Cost,
    Estimate,
    Group,
    RateBook,
    image_unit_price,
    output_image_tokens,
)
from costguard.pricing.schema import MODES, Mode, ModelCard, RateCard
from costguard.queue.estimate import Advice, QueueEstimate

Output = Literal["table", "json", "csv"]
ModeChoice = Literal["batch", "sync", "both"]
CLI_MODE: dict[Mode, str] = {"standard": "sync", "batch": "batch"}


def modes_for(choice: ModeChoice) -> list[Mode]:
    """Card modes for a CLI `--mode` choice."""
    return {"batch": ["batch"], "sync": ["standard"], "both": ["batch", "standard"]}[choice]  # type: ignore[return-value]


def _money(value: Decimal | None, places: int = 4) -> str:
    return "n/a" if value is None else usd(value, places)


def _cost_cells(cost: Cost | None) -> list[str]:
    if cost is None:
        return ["n/a", "n/a"]
    return [usd(cost.expected), usd(cost.max)]


def estimate_table(
    queue: QueueEstimate,
    book: RateBook,
    modes: list[Mode],
    *,
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
) -> str:
    """The grouped table, totals, cards used and warnings."""
    est = queue.estimate
    headers = ["provider", "model", "size", "quality", "requests", "images"]
    for mode in modes:
        name = CLI_MODE[mode]
        headers += [f"{name} $/image", f"{name} expected", f"{name} max"]
    show_saving = "batch" in modes and "standard" in modes
    if show_saving:
        headers.append("batch saves")
    rows = [_group_row(g, modes, show_saving) for g in est.groups]
    total_row: list[str] = ["TOTAL", "", "", "", f"{est.requests:,}", f"{est.images:,}"]
    for mode in modes:
        total_row += ["", *_cost_cells(est.total(mode))]
    if show_saving:
        saving = est.saving()
        total_row.append(_money(saving.expected if saving else None))
    rows.append(total_row)
    lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    if comparisons:
        lines.append("")
    lines += [_comparison_line(other, modes) for other in comparisons]
    lines += ["", f"{queue.path} ({queue.format} format), priced as of {est.as_of}"]
    lines += [
        f"Rate card {card_id}: {book.origins.get(card_id, '(in memory)')}"
        for card_id in est.rate_cards
    ]
    lines += calibration_lines(queue)
    lines += [f"warning: {w}" for w in queue.warnings]
    if est.assumption_line:
        lines.append(est.assumption_line)
    return "\n".join(lines)


def calibration_lines(queue: QueueEstimate) -> list[str]:
    """`calibrated from N requests (since DATE)` and each calibrated figure the prices use."""
    if queue.calibration is None:
        return []
    lines = [queue.calibration.summary()]
    for fact in queue.facts:
        where = " ".join(x for x in (fact.size, fact.quality) if x) or "all sizes"
        lines.append(
            f"  {fact.kind} on {fact.model} ({where}): expected {plain(fact.used[0])}, "
            f"max {plain(fact.used[1])} {UNITS[fact.kind]} from {fact.stats.samples:,} "
            f"requests (card {plain(fact.card[0])}, {plain(fact.card[1])})"
        )
    if not queue.facts:
        lines.append(
            f"  no model in the queue has {MIN_SAMPLES} requests to learn from yet: "
            "every figure is the card's"
        )
    return lines


def _group_row(group: Group, modes: list[Mode], show_saving: bool) -> list[str]:
    row = [
        group.provider,
        group.model,
        group.size,
        group.quality or "-",
        f"{group.totals.requests:,}",
        f"{group.totals.images:,}",
    ]
    for mode in modes:
        row += [_money(group.unit[mode], 5), *_cost_cells(group.cost[mode])]
    if show_saving:
        batch, sync = group.cost["batch"], group.cost["standard"]
        row.append(_money(sync.expected - batch.expected if batch and sync else None))
    return row


def _comparison_line(other: Estimate, modes: list[Mode]) -> str:
    models = ", ".join(sorted({g.model for g in other.groups}))
    parts = []
    for mode in modes:
        total = other.total(mode)
        shown = f"expected {usd(total.expected)}, max {usd(total.max)}" if total else "n/a"
        parts.append(f"{CLI_MODE[mode]} {shown}")
    return f"compare {models}: " + "; ".join(parts)


def advice_lines(advice: Advice, mode: Mode) -> list[str]:
    """Why a queue does not fit, and what would."""
    d = advice.decision
    name = CLI_MODE[mode]
    if d.needed.is_finite():
        head = (
            f"over budget: the {name} maximum {usd(d.needed)} passes --max-usd "
            f"{usd_exact(d.limit)} by {usd_exact(d.shortfall)}"
        )
    else:  # a model in the queue is not sold in this mode (Imagen 4 has no batch tier)
        head = (
            f"over budget: the queue has no {name} price (a model in it is not sold in {name} "
            f"mode), so it cannot fit --max-usd {usd_exact(d.limit)} as a {name}; "
            "check it with --budget-mode sync"
        )
    out = [head]
    if advice.first_requests and advice.first_requests_cost is not None:
        out.append(
            f"  would fit: the first {advice.first_requests:,} requests "
            f"(max {usd(advice.first_requests_cost)})"
        )
    if advice.cheapest_settings is not None and advice.cheapest_settings <= d.limit:
        out.append(
            "  would fit: the same queue at each model's cheapest size and quality "
            f"(max {usd(advice.cheapest_settings)})"
        )
    out += [
        f"  would fit: the same queue on {model} (max {usd(cost)}; --compare {model})"
        for model, cost in advice.cheaper_models
    ]
    out += [
        f"  would fit: {s.model}{f' {s.quality}' if s.quality else ''} images at {s.instead} "
        f"instead of {s.size} (the same shape; max {usd(s.max_cost)})"
        for s in advice.smaller_sizes
    ]
    return out


def _cost_json(cost: Cost | None) -> dict[str, str] | None:
    if cost is None:
        return None
    return {"expected_usd": plain(cost.expected), "max_usd": plain(cost.max)}


def estimate_json(
    queue: QueueEstimate,
    *,
    budget: Advice | None = None,
    budget_mode: Mode = "batch",
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
) -> str:
    """Machine-readable estimate; money as exact decimal strings."""
    document = estimate_document(
        queue, budget=budget, budget_mode=budget_mode, comparisons=comparisons
    )
    return json.dumps(document, indent=2)


def estimate_document(
    queue: QueueEstimate,
    *,
    budget: Advice | None = None,
    budget_mode: Mode = "batch",
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """The estimate as a JSON document (`estimate --output json`)."""
    est = queue.estimate
    payload: dict[str, Any] = {
        "queue": str(queue.path),
        "format": queue.format,
        "requests": est.requests,
        "images": est.images,
        "as_of": est.as_of.isoformat(),
        "rate_cards": est.rate_cards,
        "totals": {CLI_MODE[m]: _cost_json(est.total(m)) for m in MODES},
        "batch_saving": _cost_json(est.saving()),
        "groups": [_group_json(g) for g in est.groups],
        "warnings": queue.warnings,
        "assumptions": [
            {"model": a.model, "fact": a.fact, "assumed": a.assumed} for a in est.assumptions
        ],
    }
    if queue.calibration is not None:
        payload["calibration"] = queue.calibration_json()
    if comparisons:
        payload["compare"] = [
            {
                "models": sorted({g.model for g in other.groups}),
                "totals": {CLI_MODE[m]: _cost_json(other.total(m)) for m in MODES},
            }
            for other in comparisons
        ]
    if budget is not None:
        d = budget.decision
        payload["budget"] = {
            "max_usd": plain(d.limit),
            "mode": CLI_MODE[budget_mode],
            "fits": d.fits,
            "needed_usd": plain(d.needed) if d.needed.is_finite() else None,
            "shortfall_usd": plain(d.shortfall) if d.shortfall.is_finite() else None,
            "first_requests_that_fit": budget.first_requests,
            "cheaper_models": [{"model": m, "max_usd": plain(c)} for m, c in budget.cheaper_models],
            "smaller_sizes": [
                {
                    "model": s.model,
                    "size": s.size,
                    "quality": s.quality,
                    "instead": s.instead,
                    "max_usd": plain(s.max_cost),
                }
                for s in budget.smaller_sizes
            ],
        }
    return payload


def _group_json(group: Group) -> dict[str, Any]:
    return {
        "provider": group.provider,
        "model": group.model,
        "size": group.size,
        "quality": group.quality,
        "rate_card": group.card_id,
        "requests": group.totals.requests,
        "images": group.totals.images,
        "prompt_tokens": group.totals.prompt_tokens,
        "prompt_tokens_max": group.totals.prompt_tokens_max,
        "input_images": group.totals.input_images,
        "unit_usd": {
            CLI_MODE[m]: (plain(u) if (u := group.unit[m]) is not None else None) for m in MODES
        },
        "batch": _cost_json(group.cost["batch"]),
        "sync": _cost_json(group.cost["standard"]),
    }


def estimate_csv(queue: QueueEstimate) -> str:
    """One row per group, money as exact decimal strings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "provider",
            "model",
            "size",
            "quality",
            "rate_card",
            "requests",
            "images",
            "sync_unit_usd",
            "sync_expected_usd",
            "sync_max_usd",
            "batch_unit_usd",
            "batch_expected_usd",
            "batch_max_usd",
        ]
    )
    for g in queue.estimate.groups:
        row: list[str | int] = [
            g.provider,
            g.model,
            g.size,
            g.quality or "",
            g.card_id,
            g.totals.requests,
            g.totals.images,
        ]
        for mode in MODES:
            unit, cost = g.unit[mode], g.cost[mode]
            row += [
                plain(unit) if unit is not None else "",
                plain(cost.expected) if cost else "",
                plain(cost.max) if cost else "",
            ]
        writer.writerow(row)
    return buffer.getvalue()


# prices -----------------------------------------------------------------------------------


def price_rows(
    card: RateCard,
    model: ModelCard,
    *,
    sizes: list[str] | None = None,
    qualities: list[str | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per size and quality (default: the card's): output tokens (None: priced per
    image) and per-image price (image part only) in each mode (None: no such tier)."""
    rows = []
    for quality in qualities or list(model.qualities) or [None]:
        for size in sizes or model.sizes:
            row: dict[str, Any] = {
                "provider": card.provider,
                "model": model.id,
                "size": size,
                "quality": quality,
                "tokens": output_image_tokens(model, size, quality) or None,
            }
            for mode in MODES:
                unit = image_unit_price(model, mode, size, quality) if mode in model.modes else None
                row[CLI_MODE[mode]] = plain(unit) if unit is not None else None
            rows.append(row)
    return rows


def prices_table(rows: list[dict[str, Any]], output: Output) -> str:
    """Render price (or diff) rows: JSON keeps their values (None as null, token counts as
    numbers); the table and CSV show a missing price as `n/a`, anything else missing as `-`."""
    if output == "json":
        return json.dumps(rows, indent=2)
    shown = [{key: _cell(key, value) for key, value in r.items()} for r in rows]
    if output == "csv":
        buffer = io.StringIO()
        if shown:
            writer = csv.DictWriter(buffer, fieldnames=list(shown[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(shown)
        return buffer.getvalue()
    shown = [{key: _display_price(key, value) for key, value in r.items()} for r in shown]
    return tabulate(shown, headers="keys", tablefmt="simple", disable_numparse=True)


def _cell(column: str, value: object) -> str:
    """A row value as text: None as `n/a` (prices) or `-`, a list comma-separated."""
    if value is None:
        return "n/a" if column in ("sync", "batch") else "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _display_price(column: str, value: str) -> str:
    if column not in ("sync", "batch") or value == "n/a":
        return value
    return usd(Decimal(value), 5)
