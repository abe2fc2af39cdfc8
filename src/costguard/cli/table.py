"""Tables: for the terminal, fit to 100 columns (`--wide`: every column), and in Markdown.

Every table costguard prints goes through here, so they all look alike: a header of one or two
lines (`batch\\n$/image`, bottom-aligned), a rule of dashes, columns two spaces apart, numbers and
money right-aligned, and a rule before a totals row. A table fits `WIDTH` columns by design:
columns marked `wide` show only with `--wide`; if long values (a model name, a path) still make
it wider, columns marked `drop` are left out (highest first, and a note says which), then
`shrink` columns are cut from the left (`...les/catalog.jsonl`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 100
"""What a table and the notes around it fit in unless `--wide` is given."""
GAP = "  "
RULE = None
"""A row that is a rule (before a totals row)."""
_MIN_SHRUNK = 12

Row = Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header (a `\\n` splits it over two lines) and how it fits."""

    header: str
    right: bool = False
    """Right-aligned (counts and money)."""
    wide: bool = False
    """Shown only with `--wide` (and in Markdown)."""
    drop: int = 0
    """Above 0: may be left out to fit, the highest first."""
    shrink: bool = False
    """May be cut from the left to fit (a path)."""

    @property
    def name(self) -> str:
        """The header on one line (for notes and Markdown)."""
        return " ".join(self.header.split("\n"))


def render(columns: Sequence[Column], rows: Sequence[Row], *, wide: bool = False) -> str:
    """The table as text: fit to `WIDTH` unless `wide` (every column, nothing cut)."""
    shown = [i for i, c in enumerate(columns) if wide or not c.wide]
    natural = {i: _width(columns[i], rows, i) for i in shown}
    widths = dict(natural)
    left_out: list[str] = []
    if not wide:
        _shrink(columns, natural, widths)
        droppable = sorted((i for i in shown if columns[i].drop), key=lambda i: -columns[i].drop)
        dropped: list[int] = []
        while _total(widths) > WIDTH and droppable:
            i = droppable.pop(0)
            dropped.append(i)
            del widths[i]
            _shrink(columns, natural, widths)
        for i in reversed(dropped[:-1]):  # one dropped later may have made room for it
            widths[i] = natural[i]
            _shrink(columns, natural, widths)
            if _total(widths) > WIDTH:
                del widths[i]
                _shrink(columns, natural, widths)
        shown = sorted(widths)
        left_out = [columns[i].name for i in dropped if i not in widths]
    lines = _header(columns, shown, widths)
    lines.append(GAP.join("-" * widths[i] for i in shown))
    for row in rows:
        if row is RULE:
            lines.append(GAP.join("-" * widths[i] for i in shown))
            continue
        cells = [_cell(row[i], widths[i], columns[i]) for i in shown]
        lines.append(GAP.join(cells).rstrip())
    if left_out:
        lines.append(
            f"(left out to fit {WIDTH} columns: {', '.join(left_out)}; --wide shows every column)"
        )
    return "\n".join(lines)


def markdown(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table of every column (`$` and `|` escaped in cells)."""
    lines = [
        "| " + " | ".join(escape(c.name) for c in columns) + " |",
        "|" + "|".join("--:" if c.right else "---" for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows if row]
    return "\n".join(lines)


def escape(text: str) -> str:
    """Markdown text as itself: `\\$` (GitHub reads `$...$` as math) and `\\|` (cell ends)."""
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("|", "\\|")


def wrap(line: str, *, wide: bool = False, indent: str = "    ") -> list[str]:
    """A note as lines of at most `WIDTH`, unless `wide`: continued lines are indented four
    spaces more than the note (two-space indents start notes of their own, as under
    `calibrated from ...`). Words are never broken: a path longer than the width stays whole."""
    if wide or len(line) <= WIDTH:
        return [line]
    lead = indent + " " * (len(line) - len(line.lstrip(" ")))
    return textwrap.wrap(
        line,
        WIDTH,
        subsequent_indent=lead,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _shrink(columns: Sequence[Column], natural: dict[int, int], widths: dict[int, int]) -> None:
    """Give `shrink` columns their natural width, then cut them (down to a minimum) until the
    table fits."""
    for i in widths:
        widths[i] = natural[i]
    for i in widths:
        over = _total(widths) - WIDTH
        if over > 0 and columns[i].shrink:
            widths[i] = max(natural[i] - over, _MIN_SHRUNK, len(columns[i].name))


def _width(column: Column, rows: Sequence[Row], i: int) -> int:
    cells = [len(row[i]) for row in rows if row is not RULE]
    return max([*cells, *(len(part) for part in column.header.split("\n"))])


def _total(widths: dict[int, int]) -> int:
    return sum(widths.values()) + len(GAP) * (len(widths) - 1)


def _header(columns: Sequence[Column], shown: list[int], widths: dict[int, int]) -> list[str]:
    parts = {i: columns[i].header.split("\n") for i in shown}
    height = max((len(p) for p in parts.values()), default=1)
    lines = []
    for level in range(height):
        cells = []
        for i in shown:
            offset = level - (height - len(parts[i]))
            text = parts[i][offset] if offset >= 0 else ""
            cells.append(_cell(text, widths[i], columns[i]))
        lines.append(GAP.join(cells).rstrip())
    return lines


def _cell(text: str, width: int, column: Column) -> str:
    if len(text) > width:  # a shrunk column: keep the end, which tells values apart
        text = "..." + text[len(text) - width + 3 :]
    return text.rjust(width) if column.right else text.ljust(width)
