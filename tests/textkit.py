"""Test helper (not a test module): CLI text read back as a person reads it."""

from __future__ import annotations

import itertools
import re

CONTINUED = "    "
"""Notes longer than 100 columns go on in lines indented four spaces more (`table.wrap`)."""


def unwrap(text: str) -> list[str]:
    """The lines of `text` with every wrapped note joined back into one line."""
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if lines and stripped and indent >= _indent(lines[-1]) + len(CONTINUED):
            lines[-1] += " " + stripped
        else:
            lines.append(line)
    return lines


def widest(text: str) -> int:
    """The longest line of `text`."""
    return max((len(line) for line in text.splitlines()), default=0)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first table in `text`: its column names (a two-line header joined with a space) and
    its rows, cut at the columns the rule of dashes under the header marks (rules and the
    lines after the table left out)."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rule])]

    def cells(line: str) -> list[str]:
        last = len(spans) - 1
        return [
            line[start : (end if i < last else None)].strip()
            for i, (start, end) in enumerate(spans)
        ]

    inside = {i for start, end in spans for i in range(start, end)}
    top = rule - 1
    above = lines[top - 1] if top > 0 else ""
    if above.strip() and all(c == " " or i in inside for i, c in enumerate(above)):
        top -= 1  # a two-line header
    parts = zip(*(cells(line) for line in lines[top:rule]), strict=True)
    header = [" ".join(filter(None, column)) for column in parts]
    gaps = {i for (_, end), (start, _) in itertools.pairwise(spans) for i in range(end, start)}
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip() or any(i < len(line) and line[i] != " " for i in gaps):
            break  # the table ended: a blank line or prose
        if not any(cells(line)[1:]):
            break  # prose short enough to fit the first column
        if set(line) <= {"-", " "}:
            continue
        rows.append(cells(line))
    return header, rows
