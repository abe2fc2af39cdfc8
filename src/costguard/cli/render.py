"""The estimate and prices as tables, JSON, CSV and Markdown. Money is rounded for display only
(by `costguard.money`); JSON and CSV carry exact decimal strings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from costguard.cli import table
from costguard.cli.table import Column
from costguard.money import plain, usd, usd_exact, usd_together, usd_unit
from costguard.pricing.calibration import MIN_SAMPLES, UNITS
from costguard.pricing.engine import (
    FACT_NAMES,
    Cost,
    Estimate,
    RateBook,
    image_unit_price,
    output_image_tokens,
)
from costguard.pricing.schema import MODES, Mode, ModelCard, RateCard
from costguard.queue.document import CLI_MODE, estimate_document
from costguard.queue.estimate import Advice, QueueEstimate

Output = Literal["table", "json", "csv"]
ModeChoice = Literal["batch", "sync", "both"]
NA = "n/a"


def modes_for(choice: ModeChoice) -> list[Mode]:
    """Card modes for a CLI `--mode` choice."""
    return {"batch": ["batch"], "sync": ["standard"], "both": ["batch", "standard"]}[choice]  # type: ignore[return-value]


def _unit(value: Decimal | None) -> str:
    return NA if value is None else usd_unit(value)


def _estimate_columns(modes: list[Mode], wide: bool) -> list[tuple[str, Column]]:
    """(key, column) of the estimate table. By default it fits 100 columns: with both modes,
    each mode's expected and maximum cost in one cell (`$0.12-$0.14`), and the provider, the
    unit prices and the per-group saving only with --wide; with one mode, its unit price,
    expected and maximum cost. Values too long for that (a 30-character model name) leave out
    the images, then the unit price or the second mode, and the table says so."""
    both = len(modes) > 1
    columns = [
        ("provider", Column("provider", wide=True)),
        ("model", Column("model")),
        ("size", Column("size")),
        ("quality", Column("quality")),
        ("requests", Column("requests", right=True)),
        ("images", Column("images", right=True, drop=2)),
    ]
    for i, mode in enumerate(modes):
        name = CLI_MODE[mode]
        columns.append((f"{mode}:unit", Column(f"{name}\n$/image", right=True, wide=both, drop=1)))
        if both and not wide:  # the second mode's range goes last, and only when nothing else fits
            column = Column(f"{name}\nexpected-max", right=True, drop=i)
            columns.append((f"{mode}:range", column))
        else:
            columns.append((f"{mode}:expected", Column(f"{name}\nexpected", right=True)))
            columns.append((f"{mode}:max", Column(f"{name}\nmax", right=True)))
    if both:
        columns.append(("saves", Column("batch\nsaves", right=True, wide=True)))
    return columns


def _estimate_cells(
    modes: list[Mode],
    costs: dict[Mode, Cost | None],
    units: dict[Mode, Decimal | None],
    saving: Decimal | None,
) -> dict[str, str]:
    """The money cells of one estimate row, by column key: each mode's expected and maximum
    formatted together (they never look equal unless they are)."""
    cells: dict[str, str] = {"saves": NA if saving is None else usd(saving)}
    for mode in modes:
        cost = costs[mode]
        cells[f"{mode}:unit"] = _unit(units.get(mode))
        if cost is None:
            cells[f"{mode}:expected"] = cells[f"{mode}:max"] = cells[f"{mode}:range"] = NA
            continue
        expected, maximum = usd_together(cost.expected, cost.max)
        cells[f"{mode}:expected"], cells[f"{mode}:max"] = expected, maximum
        cells[f"{mode}:range"] = f"{expected}-{maximum}"
    return cells


def _saving_of(batch: Cost | None, sync: Cost | None) -> Decimal | None:
    return sync.expected - batch.expected if batch is not None and sync is not None else None


def estimate_rows(
    queue: QueueEstimate, modes: list[Mode], *, wide: bool
) -> tuple[list[Column], list[list[str]]]:
    """The estimate table's columns and rows (groups, then TOTAL), for text or Markdown."""
    est = queue.estimate
    layout = _estimate_columns(modes, wide)
    rows: list[dict[str, str]] = []
    for g in est.groups:
        row = {
            "provider": g.provider,
            "model": g.model,
            "size": g.size,
            "quality": g.quality or "-",
            "requests": f"{g.totals.requests:,}",
            "images": f"{g.totals.images:,}",
        }
        saving = _saving_of(g.cost["batch"], g.cost["standard"])
        row |= _estimate_cells(modes, g.cost, g.unit, saving)
        rows.append(row)
    first = "provider" if wide else "model"  # TOTAL in the first column shown
    total = dict.fromkeys(("provider", "model", "size", "quality"), "") | {first: "TOTAL"}
    total |= {"requests": f"{est.requests:,}", "images": f"{est.images:,}"}
    overall = est.saving()
    totals = {m: est.total(m) for m in MODES}
    total |= _estimate_cells(modes, totals, {}, overall.expected if overall else None)
    total |= {f"{m}:unit": "" for m in modes}
    rows.append(total)
    columns = [column for _, column in layout]
    return columns, [[row[key] for key, _ in layout] for row in rows]


def estimate_table(
    queue: QueueEstimate,
    book: RateBook,
    modes: list[Mode],
    *,
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
    wide: bool = False,
) -> str:
    """The grouped table (fit to 100 columns unless `wide`), totals, cards used and warnings."""
    est = queue.estimate
    columns, rows = estimate_rows(queue, modes, wide=wide)
    lines = [table.render(columns, [*rows[:-1], table.RULE, rows[-1]], wide=wide)]
    notes: list[str] = []
    saving = est.saving()
    batch, sync = est.total("batch"), est.total("standard")
    if len(modes) > 1 and not wide and saving is not None and batch and sync:
        saves, paid, full = usd_together(saving.expected, batch.expected, sync.expected)
        notes.append(f"batch saves {saves} against sync ({paid} instead of {full}, expected)")
    notes += [_comparison_line(other, modes) for other in comparisons]
    notes += source_lines(queue, book)
    notes += calibration_lines(queue)
    notes += [f"warning: {w}" for w in queue.warnings]
    if est.assumption_line:
        notes.append(est.assumption_line)
    lines += [""] + [part for note in notes for part in table.wrap(note, wide=wide)]
    return "\n".join(lines)


def source_lines(queue: QueueEstimate, book: RateBook) -> list[str]:
    """Which queue, priced as of when, from which cards."""
    est = queue.estimate
    lines = [f"{shown_path(queue.path)} ({queue.format} format), priced as of {est.as_of}"]
    lines += [
        f"Rate card {card_id}: {_card_origin(book.origins.get(card_id))}"
        for card_id in est.rate_cards
    ]
    return lines


def shown_path(path: Path | str) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _card_origin(origin: str | None) -> str:
    """Where a card came from: shipped with costguard (named by its place in `pricing/`), or
    the user's file."""
    from costguard.pricing.loader import shipped_dir

    if origin is None:
        return "(in memory)"
    try:
        inside = Path(origin).resolve().relative_to(shipped_dir().resolve())
    except (ValueError, OSError):
        return shown_path(origin)
    return f"shipped with costguard (pricing/{inside.as_posix()})"


def estimate_markdown(
    queue: QueueEstimate,
    modes: list[Mode],
    *,
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
    budget: Advice | None = None,
    budget_mode: Mode = "batch",
) -> str:
    """The estimate as GitHub-flavoured Markdown, for a pull-request comment: every column of
    the table with its totals, the budget check, then warnings and assumed figures."""
    est = queue.estimate
    columns, rows = estimate_rows(queue, modes, wide=True)
    rows[-1] = [f"**{cell}**" if cell else "" for cell in rows[-1]]
    cards = ", ".join(est.rate_cards) or "none"
    where = (
        f"`{queue.path}` ({queue.format} format): {est.requests:,} requests, "
        f"{est.images:,} images, priced as of {est.as_of} (rate cards {cards})."
    )
    parts = ["### costguard estimate", where, table.markdown(columns, rows)]
    parts += markdown_notes(
        queue,
        budget=budget,
        budget_mode=budget_mode,
        more=[_comparison_line(other, modes) for other in comparisons],
    )
    return "\n\n".join(parts) + "\n"


def markdown_notes(
    queue: QueueEstimate,
    *,
    budget: Advice | None,
    budget_mode: Mode,
    more: list[str] = (),  # type: ignore[assignment]
) -> list[str]:
    """The Markdown blocks under a table: the budget verdict, other notes, calibration,
    warnings (a GitHub alert) and assumed figures (folded)."""
    parts = []
    if budget is not None:
        if budget.decision.fits:
            line = budget_line(budget, budget_mode).removeprefix("within budget: ")
            parts.append("**Within budget**: " + table.escape(line))
        else:
            head, *ways = advice_lines(budget, budget_mode)
            parts.append(
                "\n".join(
                    ["**Over budget**: " + table.escape(head.removeprefix("over budget: "))]
                    + [f"- {table.escape(way.strip())}" for way in ways]
                )
            )
    if more:
        parts.append("\n".join(f"- {table.escape(line)}" for line in more))
    calibration = calibration_lines(queue)
    if calibration:
        head, *facts = calibration
        parts.append(
            "\n".join([table.escape(head), *(f"- {table.escape(f.strip())}" for f in facts)])
        )
    if queue.warnings:
        parts.append(
            "\n".join(["> [!WARNING]", *(f"> - {table.escape(w)}" for w in queue.warnings)])
        )
    assumptions = queue.estimate.assumptions
    if assumptions:
        facts = [
            f"- {table.escape(f'{a.model} {FACT_NAMES[a.fact]}: {a.assumed}')}" for a in assumptions
        ]
        parts.append(
            "\n".join(
                [
                    (
                        "<details><summary>Assumed: these figures rest on card facts "
                        "no source publishes</summary>"
                    ),
                    "",
                    *facts,
                    "",
                    "</details>",
                ]
            )
        )
    return parts


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


def _comparison_line(other: Estimate, modes: list[Mode]) -> str:
    models = ", ".join(sorted({g.model for g in other.groups}))
    parts = []
    for mode in modes:
        total = other.total(mode)
        if total is None:
            parts.append(f"{CLI_MODE[mode]} n/a")
            continue
        expected, maximum = usd_together(total.expected, total.max)
        parts.append(f"{CLI_MODE[mode]} expected {expected}, max {maximum}")
    return f"compare {models}: " + "; ".join(parts)


def budget_line(advice: Advice, mode: Mode) -> str:
    """`within budget: the batch maximum $0.58 fits --max-usd $1.00`."""
    d = advice.decision
    needed, limit = usd_together(d.needed, d.limit, given=[d.limit])
    return f"within budget: the {CLI_MODE[mode]} maximum {needed} fits --max-usd {limit}"


def advice_lines(advice: Advice, mode: Mode) -> list[str]:
    """Why a queue does not fit, and what would."""
    d = advice.decision
    name = CLI_MODE[mode]
    if d.needed.is_finite():
        needed, limit, short = usd_together(d.needed, d.limit, d.shortfall, given=[d.limit])
        head = f"over budget: the {name} maximum {needed} passes --max-usd {limit} by {short}"
    else:  # a model in the queue is not sold in this mode (Imagen 4 has no batch tier)
        head = (
            f"over budget: the queue has no {name} price (a model in it is not sold in {name} "
            f"mode), so it cannot fit --max-usd {usd_exact(d.limit)} as a {name}; "
            "check it with --budget-mode sync"
        )
    out = [head]

    def fits(cost: Decimal) -> str:
        return usd_together(cost, d.limit, given=[d.limit])[0]

    if advice.first_requests and advice.first_requests_cost is not None:
        out.append(
            f"  would fit: the first {advice.first_requests:,} requests "
            f"(max {fits(advice.first_requests_cost)})"
        )
    if advice.cheapest_settings is not None and advice.cheapest_settings <= d.limit:
        out.append(
            "  would fit: the same queue at each model's cheapest size and quality "
            f"(max {fits(advice.cheapest_settings)})"
        )
    out += [
        f"  would fit: the same queue on {model} (max {fits(cost)}; --compare {model})"
        for model, cost in advice.cheaper_models
    ]
    out += [
        f"  would fit: {s.model}{f' {s.quality}' if s.quality else ''} images at {s.instead} "
        f"instead of {s.size} (the same shape; max {fits(s.max_cost)})"
        for s in advice.smaller_sizes
    ]
    return out


def estimate_json(
    queue: QueueEstimate,
    *,
    budget: Advice | None = None,
    budget_mode: Mode = "batch",
    comparisons: list[Estimate] = (),  # type: ignore[assignment]
    extra: dict[str, Any] | None = None,
) -> str:
    """Machine-readable estimate; money as exact decimal strings. `extra`: more top-level keys
    (`diff` with --diff-base)."""
    document = estimate_document(
        queue, budget=budget, budget_mode=budget_mode, comparisons=comparisons, extra=extra
    )
    return json.dumps(document, indent=2)


def estimate_csv(queue: QueueEstimate, modes: Sequence[Mode] = MODES) -> str:
    """One row per group, money as exact decimal strings; the columns of `modes` only."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    shown = [m for m in MODES if m in modes]  # sync columns first, as always
    header = ["provider", "model", "size", "quality", "rate_card", "requests", "images"]
    for mode in shown:
        name = CLI_MODE[mode]
        header += [f"{name}_unit_usd", f"{name}_expected_usd", f"{name}_max_usd"]
    writer.writerow(header)
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
        for mode in shown:
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


def prices_table(rows: list[dict[str, Any]], output: Output, *, wide: bool = False) -> str:
    """Render price rows (or the rows of a diff between two dates): JSON keeps their values
    (None as null, token counts as numbers); the table and CSV show a missing price as `n/a`,
    anything else missing as `-`."""
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
    keys = list(shown[0]) if shown else []
    columns = [Column(key, right=key in ("tokens", "sync", "batch")) for key in keys]
    cells = [[_display_price(key, r[key]) for key in keys] for r in shown]
    return table.render(columns, cells, wide=wide)


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
    return usd_unit(Decimal(value))
