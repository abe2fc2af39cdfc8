"""`estimate QUEUE --diff-base OLD_QUEUE`: what a change to a queue adds or saves, as a table,
JSON or Markdown (a pull-request comment for a CI cost gate).

Per model, size and quality and in total: requests, images, expected and maximum cost before
and after, and the change. The table and Markdown show one mode (`--mode`, or with both the
`--budget-mode` one: what `run` would send and `--max-usd` checks); the JSON has both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costguard.cli import render, table
from costguard.cli.render import estimate_json
from costguard.cli.table import Column
from costguard.money import ZERO, usd, usd_together
from costguard.pricing.engine import Cost
from costguard.pricing.schema import MODES, Mode
from costguard.queue.document import CLI_MODE, cost_json

if TYPE_CHECKING:
    from costguard.pricing.engine import Estimate, Group, RateBook
    from costguard.queue.estimate import Advice, QueueDiff, QueueEstimate

NA = render.NA
ARROW = " -> "


def show(
    change: QueueDiff,
    book: RateBook,
    output: str,
    mode: Mode,
    budget: Advice | None,
    budget_mode: Mode,
    wide: bool,
) -> str:
    """The change in `output` (table, json or markdown)."""
    if output == "json":
        return estimate_json(
            change.after,
            budget=budget,
            budget_mode=budget_mode,
            extra={"diff": diff_json(change)},
        )
    if output == "markdown":
        return diff_markdown(change, mode, budget=budget, budget_mode=budget_mode)
    return diff_table(change, book, mode, wide=wide)


def diff_table(change: QueueDiff, book: RateBook, mode: Mode, *, wide: bool = False) -> str:
    """The change per group and in total, then where each side was priced and the notes of
    the new queue (warnings, calibration, assumed figures)."""
    columns, rows = _rows(change, mode, wide=wide)
    lines = [table.render(columns, [*rows[:-1], table.RULE, rows[-1]], wide=wide), ""]
    after = change.after
    notes = _sources(change)
    notes += [line for line in render.source_lines(after, book) if line.startswith("Rate card")]
    notes += render.calibration_lines(after)
    notes += [f"warning: {w}" for w in after.warnings]
    if after.estimate.assumption_line:
        notes.append(after.estimate.assumption_line)
    lines += [part for note in notes for part in table.wrap(note, wide=wide)]
    return "\n".join(lines)


def diff_markdown(
    change: QueueDiff, mode: Mode, *, budget: Advice | None, budget_mode: Mode
) -> str:
    """The change as GitHub-flavoured Markdown: the totals before, after and the change; the
    groups (folded); then the budget check and the new queue's notes."""
    name = CLI_MODE[mode]
    before, after = change.before.estimate, change.after.estimate
    cells = _money_cells(before.total(mode), after.total(mode))
    expected, maximum = cells["expected"].split(ARROW), cells["max"].split(ARROW)
    if len(expected) == 1:  # not sold in this mode
        expected, maximum = [NA, NA], [NA, NA]
    summary = [
        Column(""),
        Column("requests", right=True),
        Column("images", right=True),
        Column(f"{name} expected", right=True),
        Column(f"{name} max", right=True),
    ]
    rows = [
        ["before", f"{before.requests:,}", f"{before.images:,}", expected[0], maximum[0]],
        ["after", f"{after.requests:,}", f"{after.images:,}", expected[1], maximum[1]],
        [
            "**change**",
            f"**{_signed(after.requests - before.requests)}**",
            f"**{_signed(after.images - before.images)}**",
            f"**{cells['expected_change']}**",
            f"**{cells['max_change']}**",
        ],
    ]
    columns, groups = _rows(change, mode, wide=True)
    moved = sum(1 for g in change.groups if g.changed)
    fold = (
        f"<details><summary>Per model, size and quality ({moved} of {len(change.groups)} changed)"
    )
    parts = [
        f"### costguard estimate: what this change costs ({name})",
        table.markdown(summary, rows),
        "\n".join(f"- {table.escape(line)}" for line in _sources(change)),
        "\n".join(
            [
                fold + "</summary>",
                "",
                table.markdown(
                    columns, [*groups[:-1], [f"**{c}**" if c else "" for c in groups[-1]]]
                ),
                "",
                "</details>",
            ]
        ),
    ]
    parts += render.markdown_notes(change.after, budget=budget, budget_mode=budget_mode)
    return "\n\n".join(parts) + "\n"


def diff_json(change: QueueDiff) -> dict[str, Any]:
    """The `diff` object of `estimate --output json --diff-base`: the base queue, the change in
    total, and per group before, after and change (money as exact decimal strings)."""
    before, after = change.before, change.after
    return {
        "base": {
            "queue": str(before.path),
            "format": before.format,
            "as_of": before.estimate.as_of.isoformat(),
            "rate_cards": before.estimate.rate_cards,
            "requests": before.estimate.requests,
            "images": before.estimate.images,
            "totals": _totals_json(before.estimate),
        },
        "change": {
            "requests": after.estimate.requests - before.estimate.requests,
            "images": after.estimate.images - before.estimate.images,
            "totals": {
                CLI_MODE[m]: cost_json(_delta(before.estimate.total(m), after.estimate.total(m)))
                for m in MODES
            },
        },
        "groups": [
            {
                "provider": g.provider,
                "model": g.model,
                "size": g.size,
                "quality": g.quality,
                "before": _group_json(g.before),
                "after": _group_json(g.after),
                "change": {
                    "requests": _count(g.after, "requests") - _count(g.before, "requests"),
                    "images": _count(g.after, "images") - _count(g.before, "images"),
                    **{
                        CLI_MODE[m]: cost_json(_delta(_cost(g.before, m), _cost(g.after, m)))
                        for m in MODES
                    },
                },
            }
            for g in change.groups
        ],
    }


def _rows(change: QueueDiff, mode: Mode, *, wide: bool) -> tuple[list[Column], list[list[str]]]:
    """Columns and rows (groups, then TOTAL) of the change in `mode`."""
    name = CLI_MODE[mode]
    layout = [
        ("provider", Column("provider", wide=True)),
        ("model", Column("model")),
        ("size", Column("size")),
        ("quality", Column("quality")),
        ("requests", Column("requests", right=True)),
        ("images", Column("images", right=True, wide=True)),
        ("expected", Column(f"{name} expected\nbefore -> after", right=True, drop=1)),
        ("expected_change", Column("expected\nchange", right=True, wide=True)),
        ("max", Column(f"{name} max\nbefore -> after", right=True)),
        ("max_change", Column("max\nchange", right=True)),
    ]
    rows = []
    for g in change.groups:
        row = {
            "provider": g.provider,
            "model": g.model,
            "size": g.size,
            "quality": g.quality or "-",
            "requests": _arrow(_count(g.before, "requests"), _count(g.after, "requests")),
            "images": _arrow(_count(g.before, "images"), _count(g.after, "images")),
        }
        rows.append(row | _money_cells(_cost(g.before, mode), _cost(g.after, mode)))
    before, after = change.before.estimate, change.after.estimate
    first = "provider" if wide else "model"  # TOTAL in the first column shown
    total = dict.fromkeys(("provider", "model", "size", "quality"), "") | {first: "TOTAL"}
    total |= {
        "requests": _arrow(before.requests, after.requests),
        "images": _arrow(before.images, after.images),
    }
    rows.append(total | _money_cells(before.total(mode), after.total(mode)))
    return [c for _, c in layout], [[row[key] for key, _ in layout] for row in rows]


def _money_cells(before: Cost | None, after: Cost | None) -> dict[str, str]:
    """Each cell's amounts formatted together: `$0.045 -> $0.049`, never `$0.05 -> $0.05`."""
    if before is None or after is None:
        return dict.fromkeys(("expected", "expected_change", "max", "max_change"), NA)
    return {
        "expected": ARROW.join(usd_together(before.expected, after.expected)),
        "expected_change": usd(after.expected - before.expected, signed=True),
        "max": ARROW.join(usd_together(before.max, after.max)),
        "max_change": usd(after.max - before.max, signed=True),
    }


def _signed(count: int) -> str:
    """A change of a count: `+2`, `-1`, `0`."""
    return f"{count:+,}" if count else "0"


def _arrow(before: int, after: int) -> str:
    return f"{before:,}{ARROW}{after:,}"


def _count(group: Group | None, what: str) -> int:
    if group is None:
        return 0
    return int(group.totals.requests if what == "requests" else group.totals.images)


def _cost(group: Group | None, mode: Mode) -> Cost | None:
    """A group's cost in `mode`; nothing (zero) for a group that queue does not have."""
    return Cost(ZERO, ZERO) if group is None else group.cost[mode]


def _delta(before: Cost | None, after: Cost | None) -> Cost | None:
    if before is None or after is None:
        return None
    return Cost(after.expected - before.expected, after.max - before.max)


def _totals_json(estimate: Estimate) -> dict[str, dict[str, str] | None]:
    return {CLI_MODE[m]: cost_json(estimate.total(m)) for m in MODES}


def _group_json(group: Group | None) -> dict[str, Any] | None:
    if group is None:
        return None
    return {
        "rate_card": group.card_id,
        "requests": group.totals.requests,
        "images": group.totals.images,
        **{CLI_MODE[m]: cost_json(group.cost[m]) for m in MODES},
    }


def _sources(change: QueueDiff) -> list[str]:
    """`before: PATH (FORMAT format), priced as of DATE (rate cards ...)`, and after."""
    return [_source("before", change.before), _source("after", change.after)]


def _source(side: str, queue: QueueEstimate) -> str:
    est = queue.estimate
    cards = ", ".join(est.rate_cards) or "none: the queue is empty"
    where = f"{queue.path} ({queue.format} format)"
    return f"{side}: {where}, priced as of {est.as_of} (rate cards {cards})"
