"""The spend-over-time chart: a `SpendSeries` drawn as an inline SVG (pure: no I/O, no clock).

What it shows, bottom to top: spent per owner as stacked step areas (the largest spenders in
a colour-blind-safe palette, the rest as "others"), then what open runs hold (reserved,
hatched); the limit as a dashed line with its amount (the zone above it tinted, the total
drawn red where it passes it); the report's run outlined in its own colour: inside the stack
when it counts, on top of it (dashed outline) when it is a rehearsal, whose spend never
counts. The y axis is in dollars by `costguard.money`'s display rule; the x axis has UTC ticks
fitted to the window (hours for a day, days or weeks for a month, months for a year).

The SVG has a `viewBox` (it scales with its CSS width), `role="img"`, an `aria-label` and
`<title>` elements; every text is escaped. The same series always gives the same text; a
series of any length is drawn with at most `MAX_POINTS` steps per area.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Literal

from costguard.money import ZERO, usd_together
from costguard.report.spend import MAX_POINTS, SpendPoint, SpendSeries

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442")
"""Owners' colours: Okabe & Ito's colour-blind-safe set, less vermillion (the run's) and black."""
OTHERS = "#A6A6A6"
RUN = "#D55E00"
"""The report's run: vermillion, in no owner's palette."""
RUN_EDGE = "#6E2A00"
RESERVED = "#8A8A8A"
OVER = "#B2182B"
INK = "#222222"
MUTED = "#5F5F5F"
GRID = "#E6E6E6"
AXIS = "#9A9A9A"
MAX_OWNERS = 6
"""Owners drawn one by one; with more, the five largest and "N others"."""
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
_TICK_FONT = 11
_LEGEND_FONT = 12
_CAPTION_FONT = 13
_NAME_CHARS = 24
_DASH = "\u2013"
_ROW = 22
_TICK_SPACING = 84
"""Least room per x tick label, in user units."""

Unit = Literal["s", "min", "h", "d", "w", "mo", "y"]
_UNIT_SECONDS: dict[Unit, float] = {
    "s": 1,
    "min": 60,
    "h": 3600,
    "d": 86_400,
    "w": 7 * 86_400,
    "mo": 30.44 * 86_400,
    "y": 365.25 * 86_400,
}
_TICK_STEPS: tuple[tuple[Unit, int], ...] = (
    *(("s", n) for n in (1, 2, 5, 10, 15, 30)),
    *(("min", n) for n in (1, 2, 5, 10, 15, 30)),
    *(("h", n) for n in (1, 2, 3, 6, 12)),
    ("d", 1),
    ("d", 2),
    ("w", 1),
    *(("mo", n) for n in (1, 2, 3, 6)),
    *(("y", n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)),
)


@dataclass(frozen=True, slots=True)
class _Band:
    """One stacked area: its value at each point, its fill, its legend text and title."""

    key: str
    values: list[Decimal]
    fill: str
    title: str


@dataclass(frozen=True, slots=True)
class _Item:
    """One legend entry."""

    swatch: str
    """A colour, or `reserved`, `run`, `limit`."""
    text: str
    title: str


def spend_chart(
    series: SpendSeries, *, width: int = 760, height: int = 360, id_prefix: str = "spend"
) -> str:
    """The chart of `series`: an `<svg>` element (no XML declaration), `width` units wide and
    about `height` high (taller when the legend needs more rows); `id_prefix` keeps its ids
    unique when one page holds several charts.

    Raises:
        ValueError: `width` below 320 or `height` below 200.
    """
    if width < 320 or height < 200:
        msg = f"the chart needs at least 320 x 200, got {width} x {height}"
        raise ValueError(msg)
    return _Chart(series.downsampled(MAX_POINTS), width, height, _ident(id_prefix)).svg()


class _Chart:
    """One drawing: the layout worked out once, then the SVG elements in paint order."""

    def __init__(self, series: SpendSeries, width: int, height: int, ident: str) -> None:
        self.series = series
        self.width = width
        self.ident = ident
        self.axis_end = series.window_end or series.end
        self.span = max((self.axis_end - series.start).total_seconds(), 1.0)
        self.bands, self.legend = _bands(series, ident)
        count = len(series.points)
        self.stack_top = [sum((b.values[i] for b in self.bands), ZERO) for i in range(count)]
        self.counted = [p.spent + p.reserved for p in series.points]
        limit = series.limit if series.limit is not None else ZERO
        self.y_ticks = _y_ticks(max([*self.stack_top, *self.counted, limit]))
        self.y_max = self.y_ticks[-1]
        self.y_labels = usd_together(*self.y_ticks)
        self.title = _window_title(series, self.axis_end)
        self.figures = _figures(series)
        self.caption = _caption_lines(self.title, self.figures, width - 16)
        self.top = 26 + 18 * len(self.caption)
        self.left = round(max(_text_width(t, _TICK_FONT) for t in self.y_labels) + 18)
        self.right = width - 20
        self.rows = self._legend_rows()
        below = 50 + _ROW * len(self.rows)
        self.bottom = self.top + max(height - self.top - below, 120)
        self.height = self.bottom + below
        fit = max(int((self.right - self.left) / _TICK_SPACING), 2)
        self.x_ticks = _x_ticks(series.start, self.axis_end, fit)

    # -- scales -----------------------------------------------------------------------------

    def x(self, at: datetime) -> float:
        share = (at - self.series.start).total_seconds() / self.span
        return self.left + min(max(share, 0.0), 1.0) * (self.right - self.left)

    def y(self, amount: Decimal) -> float:
        return self.bottom - float(amount / self.y_max) * (self.bottom - self.top)

    # -- the drawing, in paint order --------------------------------------------------------

    def svg(self) -> str:
        summary = _summary(self.series, self.title)
        parts = [
            (
                f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} '
                f'{self.height}" width="{self.width}" height="{self.height}" role="img" '
                f'class="spend-chart" aria-label="{_esc(summary)}" font-family="{_esc(FONT)}" '
                f'font-size="{_TICK_FONT}" style="max-width:100%;height:auto">'
            ),
            f"<title>{_esc(summary)}</title>",
            self._defs(),
            f'<rect width="{self.width}" height="{self.height}" fill="#FFFFFF"/>',
            self._caption(),
            self._over_zone(),
            self._run_span(),
            self._grid(),
            self._areas(),
            self._total_line(),
            self._run_outline(),
            self._limit(),
            self._now(),
            self._x_axis(),
            self._empty_note(),
            self._legend(),
            "</svg>",
        ]
        return "\n".join(p for p in parts if p) + "\n"

    def _defs(self) -> str:
        i = self.ident
        clip = (
            f'<clipPath id="{i}-plot"><rect x="{_n(self.left)}" y="{_n(self.top)}" '
            f'width="{_n(self.right - self.left)}" height="{_n(self.bottom - self.top + 1)}"/>'
            "</clipPath>"
        )
        if self.series.limit is not None:
            clip += (
                f'<clipPath id="{i}-over"><rect x="{_n(self.left)}" y="{_n(self.top - 2)}" '
                f'width="{_n(self.right - self.left)}" '
                f'height="{_n(self.y(self.series.limit) - self.top + 2)}"/></clipPath>'
            )
        return (
            f"<defs>{_hatch(f'{i}-reserved', '#EFEFEF', RESERVED)}"
            f"{_hatch(f'{i}-run-reserved', '#FADBC8', RUN)}{clip}</defs>"
        )

    def _caption(self) -> str:
        """The window's title (bold) and the end figures: beside it when both fit on one
        line, else below it, over as many lines as they need."""
        title = f'<text x="8" y="20" font-weight="600" fill="{INK}">{_esc(self.title)}</text>'
        if self.caption == [self.title]:
            figures = (
                f'<text x="{self.width - 8}" y="20" text-anchor="end" fill="{MUTED}">'
                f"{_esc(self.figures)}</text>"
            )
        else:
            figures = "".join(
                f'<text x="8" y="{20 + 18 * k}" fill="{MUTED}">{_esc(line)}</text>'
                for k, line in enumerate(self.caption[1:], start=1)
            )
        return f'<g class="caption" font-size="{_CAPTION_FONT}">{title}{figures}</g>'

    def _over_zone(self) -> str:
        """The zone above the limit, faintly tinted."""
        limit = self.series.limit
        if limit is None or limit >= self.y_max:
            return ""
        return (
            f'<rect class="over-zone" x="{_n(self.left)}" y="{_n(self.top)}" '
            f'width="{_n(self.right - self.left)}" height="{_n(self.y(limit) - self.top)}" '
            f'fill="{OVER}" fill-opacity="0.05"><title>above the limit</title></rect>'
        )

    def _run_span(self) -> str:
        """When the report's run was active in the window, faintly tinted top to bottom."""
        points = self.series.points
        before = [ZERO, *(p.run_spent for p in points)]
        active = [
            i
            for i in range(len(points) - 1)
            if points[i].run_reserved or points[i].run_spent != before[i]
        ]
        if not active:
            return ""
        x0, x1 = self.x(points[active[0]].at), self.x(points[active[-1] + 1].at)
        if x1 - x0 < 4:
            x0, x1 = x0 - 2, x1 + 2
        return (
            f'<rect class="run-span" x="{_n(x0)}" y="{_n(self.top)}" width="{_n(x1 - x0)}" '
            f'height="{_n(self.bottom - self.top)}" fill="{RUN}" fill-opacity="0.07">'
            f"<title>{_esc(_run_name(self.series))}: while it ran</title></rect>"
        )

    def _grid(self) -> str:
        out = ['<g class="y-axis">']
        for amount, label in zip(self.y_ticks, self.y_labels, strict=True):
            y = _n(self.y(amount))
            out.append(
                f'<line x1="{_n(self.left)}" x2="{_n(self.right)}" y1="{y}" y2="{y}" '
                f'stroke="{GRID}"/><text x="{_n(self.left - 8)}" y="{y}" dy="0.35em" '
                f'text-anchor="end" fill="{MUTED}">{_esc(label)}</text>'
            )
        out.append("</g>")
        return "".join(out)

    def _areas(self) -> str:
        out = [f'<g class="areas" clip-path="url(#{self.ident}-plot)">']
        lower = [ZERO] * len(self.series.points)
        for band in self.bands:
            upper = [a + b for a, b in zip(lower, band.values, strict=True)]
            path = self._area(lower, upper)
            if path:
                out.append(
                    f'<path class="{band.key}" d="{path}" fill="{band.fill}">'
                    f"<title>{_esc(band.title)}</title></path>"
                )
            lower = upper
        out.append("</g>")
        return "".join(out)

    def _total_line(self) -> str:
        """The edge of what counts (spent + reserved), red where it is above the limit."""
        line = self._line(self.counted)
        if not line or not any(self.counted):
            return ""
        out = (
            f'<path class="total" d="{line}" fill="none" stroke="{INK}" stroke-width="1.25" '
            'stroke-linejoin="round"/>'
        )
        limit = self.series.limit
        if limit is not None and any(v > limit for v in self.counted):
            out += (
                f'<path class="over" d="{line}" fill="none" stroke="{OVER}" stroke-width="3" '
                f'stroke-linejoin="round" clip-path="url(#{self.ident}-over)">'
                "<title>above the limit</title></path>"
            )
        return out

    def _run_outline(self) -> str:
        """The report's run: its spent and reserved areas outlined as one."""
        series = self.series
        if series.run_id is None:
            return ""
        lower = [ZERO] * len(series.points)
        for band in self.bands:
            if band.key == "run-spent":
                break
            lower = [a + b for a, b in zip(lower, band.values, strict=True)]
        upper = [
            a + p.run_spent + p.run_reserved for a, p in zip(lower, series.points, strict=True)
        ]
        path = self._area(lower, upper)
        if not path:
            return ""
        dash = "" if series.counted else ' stroke-dasharray="5 3"'
        title = f"<title>{_esc(_run_text(series))}</title>"
        return (
            f'<path class="this-run" d="{path}" fill="none" stroke="{RUN_EDGE}" '
            f'stroke-width="1.75" stroke-linejoin="round"{dash}>{title}</path>'
            f"{self._run_marker(lower[-1], series.points[-1], title)}"
        )

    def _run_marker(self, lower: Decimal, last: SpendPoint, title: str) -> str:
        """The run's share at the end (spent solid, reserved hatched) as a short bar beside
        where the figures end: seen even when the run was too short to show as an area."""
        if not (last.run_spent or last.run_reserved):
            return ""
        x = _n(self.x(self.series.end) + 3)
        bottom = self.y(lower)
        middle = self.y(lower + last.run_spent)
        top = min(self.y(lower + last.run_spent + last.run_reserved), bottom - 4)
        dash = "" if self.series.counted else ' stroke-dasharray="2 1.5"'
        parts = [f'<g class="this-run-end">{title}']
        if last.run_spent:
            parts.append(
                f'<rect x="{x}" y="{_n(max(middle, top))}" width="6" '
                f'height="{_n(bottom - max(middle, top))}" fill="{RUN}"/>'
            )
        if last.run_reserved:
            parts.append(
                f'<rect x="{x}" y="{_n(top)}" width="6" height="{_n(min(middle, bottom) - top)}" '
                f'fill="url(#{self.ident}-run-reserved)"/>'
            )
        parts.append(
            f'<rect x="{x}" y="{_n(top)}" width="6" height="{_n(bottom - top)}" fill="none" '
            f'stroke="{RUN_EDGE}" stroke-width="1"{dash}/></g>'
        )
        return "".join(parts)

    def _limit(self) -> str:
        series = self.series
        if series.limit is None:
            return ""
        y = self.y(series.limit)
        label = _limit_text(series)
        anchor, text_x, text_y = self._limit_place(label, y)
        return (
            f'<g class="limit"><line x1="{_n(self.left)}" x2="{_n(self.right)}" y1="{_n(y)}" '
            f'y2="{_n(y)}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="7 4">'
            f"<title>{_esc(label)}</title></line>"
            f'<text x="{_n(text_x)}" y="{_n(text_y)}" text-anchor="{anchor}" '
            f'font-size="{_LEGEND_FONT}" font-weight="600" fill="{INK}" stroke="#FFFFFF" '
            f'stroke-width="4" stroke-linejoin="round" paint-order="stroke">{_esc(label)}</text>'
            "</g>"
        )

    def _limit_place(self, label: str, line: float) -> tuple[str, float, float]:
        """Where the limit's label goes: (text-anchor, x, baseline y). Above the line where
        nothing drawn reaches it, else below it where nothing is drawn, else at the right."""
        width = _text_width(label, _LEGEND_FONT, bold=True) + 8
        room = self.right - self.left - width
        spots = [self.right - width, float(self.left)]
        spots += [self.left + room * k / 8 for k in range(7, 0, -1)]
        above, below = line - 6, line + 16
        can_above = line - 18 >= self.top - 6
        for baseline in ([above] if can_above else []) + [below]:
            for x0 in spots:
                if self._clear(x0, x0 + width, baseline + 4):
                    return "start", x0 + 4, baseline
        return "end", self.right - 4, above if can_above else below

    def _clear(self, x0: float, x1: float, y1: float) -> bool:
        """Whether nothing drawn (the stack from the axis up, the now line) reaches the box
        from `x0` to `x1` whose lower edge is `y1`."""
        if y1 > self.bottom:
            return False
        points = self.series.points
        if self.series.window_end is not None and x0 <= self.x(self.series.end) <= x1:
            return False
        for i in range(len(points) - 1):
            left, right = self.x(points[i].at), self.x(points[i + 1].at)
            if right < x0 or left > x1:
                continue
            if self.y(max(self.stack_top[i], self.counted[i])) < y1:
                return False
        return True

    def _now(self) -> str:
        """Where the figures stop in the current window (the rest of it is still to come)."""
        if self.series.window_end is None:
            return ""
        x = _n(self.x(self.series.end))
        return (
            f'<g class="now"><line x1="{x}" x2="{x}" y1="{_n(self.top)}" y2="{_n(self.bottom)}" '
            f'stroke="{MUTED}" stroke-dasharray="2 3"/><text x="{x}" y="{_n(self.top - 5)}" '
            f'text-anchor="middle" fill="{MUTED}">now</text></g>'
        )

    def _x_axis(self) -> str:
        bottom = self.bottom
        out = [
            (
                f'<g class="x-axis"><line x1="{_n(self.left)}" x2="{_n(self.right)}" '
                f'y1="{_n(bottom)}" y2="{_n(bottom)}" stroke="{AXIS}"/>'
            )
        ]
        for at, first, second in self.x_ticks:
            x = _n(self.x(at))
            out.append(
                f'<line x1="{x}" x2="{x}" y1="{_n(bottom)}" y2="{_n(bottom + 5)}" '
                f'stroke="{AXIS}"/><text x="{x}" y="{_n(bottom + 18)}" text-anchor="middle" '
                f'fill="{MUTED}">{_esc(first)}</text>'
            )
            if second:
                out.append(
                    f'<text x="{x}" y="{_n(bottom + 32)}" text-anchor="middle" '
                    f'fill="{MUTED}">{_esc(second)}</text>'
                )
        out.append("</g>")
        return "".join(out)

    def _empty_note(self) -> str:
        if not self.series.empty:
            return ""
        x = _n((self.left + self.right) / 2)
        y = _n((self.top + self.bottom) / 2)
        return (
            f'<text class="empty" x="{x}" y="{y}" text-anchor="middle" '
            f'font-size="{_CAPTION_FONT}" font-style="italic" fill="{MUTED}">'
            "no spend in this window</text>"
        )

    # -- legend -----------------------------------------------------------------------------

    def _legend_rows(self) -> list[list[tuple[float, _Item]]]:
        rows: list[list[tuple[float, _Item]]] = []
        x = float(self.right)
        for item in self.legend:
            width = 20 + _text_width(item.text, _LEGEND_FONT)
            if not rows or x + width > self.right:
                rows.append([])
                x = float(self.left)
            rows[-1].append((x, item))
            x += width + 18
        return rows

    def _legend(self) -> str:
        out = [f'<g class="legend" font-size="{_LEGEND_FONT}">']
        for r, row in enumerate(self.rows):
            y = self.bottom + 56 + _ROW * r
            for x, item in row:
                out.append(
                    f"<g><title>{_esc(item.title)}</title>{self._swatch(item.swatch, x, y)}"
                    f'<text x="{_n(x + 20)}" y="{_n(y)}" dy="0.35em" fill="{INK}">'
                    f"{_esc(item.text)}</text></g>"
                )
        out.append("</g>")
        return "".join(out)

    def _swatch(self, kind: str, x: float, y: float) -> str:
        box = f'x="{_n(x)}" y="{_n(y - 6)}" width="14" height="12"'
        if kind == "limit":
            return (
                f'<line x1="{_n(x)}" x2="{_n(x + 14)}" y1="{_n(y)}" y2="{_n(y)}" '
                f'stroke="{INK}" stroke-width="1.5" stroke-dasharray="4 2"/>'
            )
        if kind == "run":
            dash = "" if self.series.counted else ' stroke-dasharray="3 2"'
            return (
                f'<rect x="{_n(x)}" y="{_n(y - 6)}" width="7" height="12" fill="{RUN}"/>'
                f'<rect x="{_n(x + 7)}" y="{_n(y - 6)}" width="7" height="12" '
                f'fill="url(#{self.ident}-run-reserved)"/>'
                f'<rect {box} fill="none" stroke="{RUN_EDGE}" stroke-width="1.5"{dash}/>'
            )
        if kind == "reserved":
            return f'<rect {box} fill="url(#{self.ident}-reserved)" stroke="{RESERVED}"/>'
        return f'<rect {box} fill="{kind}"/>'

    # -- paths ------------------------------------------------------------------------------

    def _steps(self, values: list[Decimal], first: int, last: int) -> list[tuple[str, str, str]]:
        """(x from, x to, y) of steps `first` to `last` as drawn, neighbours drawn alike
        merged (step i holds from point i to point i + 1)."""
        points = self.series.points
        out: list[tuple[str, str, str]] = []
        for i in range(first, last + 1):
            x0, x1, y = (
                _n(self.x(points[i].at)),
                _n(self.x(points[i + 1].at)),
                _n(self.y(values[i])),
            )
            if out and (out[-1][2] == y or out[-1][0] == out[-1][1]):
                out[-1] = (out[-1][0], x1, y)
            else:
                out.append((x0, x1, y))
        return out

    def _area(self, lower: list[Decimal], upper: list[Decimal]) -> str:
        """The step area between two edges: one closed shape per stretch where they differ;
        "" when they are equal throughout."""
        d: list[str] = []
        steps = len(self.series.points) - 1
        first = 0
        while first < steps:
            if upper[first] == lower[first]:
                first += 1
                continue
            last = first
            while last + 1 < steps and upper[last + 1] != lower[last + 1]:
                last += 1
            top = self._steps(upper, first, last)
            d.append(f"M{top[0][0]} {top[0][2]}")
            d.extend(f"V{y}H{x1}" for _x0, x1, y in top)
            d.extend(f"V{y}H{x0}" for x0, _x1, y in reversed(self._steps(lower, first, last)))
            d.append("Z")
            first = last + 1
        return "".join(d)

    def _line(self, values: list[Decimal]) -> str:
        steps = self._steps(values, 0, len(self.series.points) - 2)
        if not steps:
            return ""
        return f"M{steps[0][0]} {steps[0][2]}" + "".join(f"V{y}H{x1}" for _x0, x1, y in steps)


# --- what is drawn -------------------------------------------------------------------------


def _bands(series: SpendSeries, ident: str) -> tuple[list[_Band], list[_Item]]:
    """The stacked areas bottom first (owners' spent, the run's, the reserved), and the
    legend's entries."""
    points = series.points
    names = [o.owner for o in series.owners]
    run_inside = series.run_id is not None and series.counted
    run_owner = series.run_owner if run_inside else None

    def spent_of(index: int) -> list[Decimal]:
        """The owner's spent, less the run's when the run is drawn apart inside the stack."""
        if names[index] != run_owner:
            return [p.by_owner[index] for p in points]
        return [p.by_owner[index] - p.run_spent for p in points]

    drawn = [spent_of(i)[-1] for i in range(len(names))]
    spenders = sorted(
        (i for i in range(len(names)) if any(spent_of(i))), key=lambda i: (-drawn[i], names[i])
    )
    alone = spenders if len(spenders) <= MAX_OWNERS else spenders[: MAX_OWNERS - 1]
    rest = spenders[len(alone) :]
    run_reserved_end = series.run_reserved
    reserved_end = series.reserved - (run_reserved_end if run_inside else ZERO)
    shown_amounts = [drawn[i] for i in alone]
    rest_total = sum((drawn[i] for i in rest), ZERO)
    money = usd_together(
        *shown_amounts, rest_total, reserved_end, series.run_spent, run_reserved_end
    )
    *owner_money, rest_money, reserved_money, run_spent_money, run_reserved_money = money
    bands: list[_Band] = []
    items: list[_Item] = []
    for rank, i in enumerate(alone):
        colour = PALETTE[rank]
        name = names[i]
        note = " (besides this run)" if name == run_owner else ""
        title = f"{name}: {owner_money[rank]} spent{note}"
        bands.append(_Band(f"owner owner-{rank}", spent_of(i), colour, title))
        items.append(_Item(colour, f"{_short(name)}: {owner_money[rank]}", title))
    if rest:
        summed = [sum((spent_of(i)[k] for i in rest), ZERO) for k in range(len(points))]
        title = f"{len(rest)} other owners: {rest_money} spent"
        bands.append(_Band("owner others", summed, OTHERS, title))
        items.append(_Item(OTHERS, f"{len(rest)} others: {rest_money}", title))
    whose = "other open runs" if run_inside and any(p.run_reserved for p in points) else "open runs"
    reserved_title = f"reserved by {whose}: {reserved_money} at the end"
    reserved_values = [p.reserved - (p.run_reserved if run_inside else ZERO) for p in points]
    reserved = _Band("reserved", reserved_values, f"url(#{ident}-reserved)", reserved_title)
    run_title = _run_text(series, run_spent_money, run_reserved_money)
    run_bands = [
        _Band("run-spent", [p.run_spent for p in points], RUN, run_title),
        _Band(
            "run-reserved",
            [p.run_reserved for p in points],
            f"url(#{ident}-run-reserved)",
            run_title,
        ),
    ]
    if series.run_id is None:
        bands.append(reserved)
    elif run_inside:
        bands += [*run_bands, reserved]
    else:
        bands += [reserved, *run_bands]
    if any(reserved_values):
        items.append(_Item("reserved", f"reserved by {whose}", reserved_title))
    if series.run_id is not None:
        items.append(_Item("run", run_title, run_title))
    if series.limit is not None:
        items.append(_Item("limit", _limit_text(series), _limit_text(series)))
    return bands, items


def _run_name(series: SpendSeries) -> str:
    if series.rehearsal:
        return "this run (rehearsal, not counted)"
    if not series.counted:
        return "this run (another budget, not counted)"
    return "this run"


def _run_text(series: SpendSeries, spent: str | None = None, reserved: str | None = None) -> str:
    if spent is None or reserved is None:
        spent, reserved = usd_together(series.run_spent, series.run_reserved)
    if series.run_reserved:
        return f"{_run_name(series)}: {spent} spent, {reserved} reserved"
    return f"{_run_name(series)}: {spent} spent"


def _limit_text(series: SpendSeries) -> str:
    assert series.limit is not None
    what = "limit" if series.budget is not None else "--max-usd"
    remaining = series.remaining
    if remaining is not None and remaining < 0:
        limit, over = usd_together(series.limit, -remaining, given=[series.limit])
        return f"{what} {limit} (over by {over})"
    (limit,) = usd_together(series.limit, given=[series.limit])
    return f"{what} {limit}"


def _figures(series: SpendSeries) -> str:
    """The end figures for the caption: spent, reserved and what is left of the limit."""
    if series.limit is None or series.remaining is None:
        spent, reserved = usd_together(series.spent, series.reserved)
        return f"{spent} spent · {reserved} reserved · no limit"
    spent, reserved, left, limit = usd_together(
        series.spent, series.reserved, abs(series.remaining), series.limit, given=[series.limit]
    )
    if series.remaining < 0:
        return f"{spent} spent · {reserved} reserved · {left} over the {limit} limit"
    return f"{spent} spent · {reserved} reserved · {left} left of {limit}"


def _summary(series: SpendSeries, title: str) -> str:
    """The chart in one sentence, for screen readers (`aria-label`, `<title>`)."""
    text = f"Spend over time. {title}: {_figures(series)}."
    if series.run_id is not None:
        text += f" {_run_text(series)[0].upper()}{_run_text(series)[1:]}."
    if series.empty:
        text += " No spend in this window."
    return text


def _caption_lines(title: str, figures: str, room: float) -> list[str]:
    """The caption's lines: [title] when the figures fit beside it, else the title and the
    figures' parts (`a · b · c`) packed into lines of at most `room`."""
    if (
        _text_width(title, _CAPTION_FONT, bold=True) + 24 + _text_width(figures, _CAPTION_FONT)
        <= room
    ):
        return [title]
    lines = [title, ""]
    for part in figures.split(" · "):
        joined = f"{lines[-1]} · {part}" if lines[-1] else part
        if lines[-1] and _text_width(joined, _CAPTION_FONT) > room:
            lines.append(part)
        else:
            lines[-1] = joined
    return lines


def _window_title(series: SpendSeries, end: datetime) -> str:
    what = (
        f'Budget "{series.budget}"'
        if series.budget is not None
        else f'Run "{series.run_id}" (no budget)'
        if series.run_id is not None
        else "Spend"
    )
    return f"{what}, {_window_text(series.start, end)} (UTC)"


def _window_text(start: datetime, end: datetime) -> str:
    """`March 2026`, `March 15, 2026`, `week of March 9, 2026`, or a range."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    midnight = start == _day(start) and end == _day(end)
    if midnight and start.day == 1 and end == _add_months(start, 1):
        return f"{_LONG_MONTHS[start.month - 1]} {start.year}"
    if midnight and end - start == timedelta(days=1):
        return f"{_LONG_MONTHS[start.month - 1]} {start.day}, {start.year}"
    if midnight and end - start == timedelta(days=7) and start.weekday() == 0:
        return f"week of {_LONG_MONTHS[start.month - 1]} {start.day}, {start.year}"
    if midnight:
        last = end - timedelta(days=1)
        first = f"{_MONTHS[start.month - 1]} {start.day}"
        if start.year != last.year:
            first += f", {start.year}"
        return f"{first} {_DASH} {_MONTHS[last.month - 1]} {last.day}, {last.year}"
    first = f"{_MONTHS[start.month - 1]} {start.day}, {start.year} {start:%H:%M}"
    if end.date() == start.date():
        return f"{first} {_DASH} {end:%H:%M}"
    return f"{first} {_DASH} {_MONTHS[end.month - 1]} {end.day}, {end.year} {end:%H:%M}"


# --- scales --------------------------------------------------------------------------------


def _y_ticks(highest: Decimal) -> list[Decimal]:
    """Round dollar ticks from 0 to a little above `highest`: steps of 1, 2, 2.5 or 5 x 10^k."""
    target = (highest if highest > 0 else Decimal(1)) * Decimal("1.08")
    rough = target / 5
    base = Decimal(1).scaleb(rough.adjusted())
    step = base * 10
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5)):
        if base * factor * 5 >= target:
            step = base * factor
            break
    count = int((target / step).to_integral_value(rounding=ROUND_CEILING))
    return [step * k for k in range(count + 1)]


def _x_ticks(start: datetime, end: datetime, fit: int) -> list[tuple[datetime, str, str]]:
    """Ticks on round UTC moments, at most about `fit` of them: (moment, label, second line:
    the date or year where it changes)."""
    span = max((end - start).total_seconds(), 1.0)
    unit, size = next(
        ((u, n) for u, n in _TICK_STEPS if span / (_UNIT_SECONDS[u] * n) <= fit), _TICK_STEPS[-1]
    )
    moments = _tick_moments(start, end, unit, size)
    if not moments:
        return [(start, *_labels(start, unit, None))]
    ticks = []
    previous: datetime | None = None
    for moment in moments:
        ticks.append((moment, *_labels(moment, unit, previous)))
        previous = moment
    return ticks


def _tick_moments(start: datetime, end: datetime, unit: Unit, size: int) -> list[datetime]:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    moments: list[datetime] = []
    try:
        if unit in ("s", "min", "h"):
            step = timedelta(seconds=_UNIT_SECONDS[unit] * size)
            day = _day(start)
            at = day + step * -((day - start) // step)
            while at <= end:
                moments.append(at)
                at += step
        elif unit in ("d", "w"):
            at = _day(start) if start == _day(start) else _day(start) + timedelta(days=1)
            while at <= end:
                if (unit == "d" and at.toordinal() % size == 0) or (
                    unit == "w" and at.weekday() == 0
                ):
                    moments.append(at)
                at += timedelta(days=1)
        else:
            months = 12 * size if unit == "y" else size
            at = datetime(start.year, start.month, 1, tzinfo=UTC)
            if at < start:
                at = _add_months(at, 1)
            while at <= end:
                index = at.year * 12 + at.month - 1
                if index % months == 0:
                    moments.append(at)
                at = _add_months(at, 1 if months < 12 else 12 - (at.month - 1))
    except OverflowError:
        pass
    return moments


def _labels(at: datetime, unit: Unit, previous: datetime | None) -> tuple[str, str]:
    """A tick's label and its second line (the date, or year, when it changed)."""
    date = f"{_MONTHS[at.month - 1]} {at.day}"
    if unit in ("s", "min", "h"):
        clock = f"{at:%H:%M:%S}" if unit == "s" else f"{at:%H:%M}"
        new_day = previous is None or previous.date() != at.date()
        return clock, date if new_day else ""
    new_year = previous is None or previous.year != at.year
    if unit in ("d", "w"):
        return date, str(at.year) if new_year else ""
    if unit == "mo":
        return _MONTHS[at.month - 1], str(at.year) if new_year else ""
    return str(at.year), ""


def _day(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def _add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return at.replace(year=index // 12, month=index % 12 + 1, day=1)


# --- text ----------------------------------------------------------------------------------


def _esc(text: str) -> str:
    """Text for XML content or a double-quoted attribute: markup escaped, characters XML
    cannot hold replaced."""
    return html.escape(_NOT_XML.sub("\ufffd", text), quote=True)


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _text_width(text: str, size: int, *, bold: bool = False) -> float:
    """About how wide `text` is drawn in a sans-serif font of `size`, erring wide (DejaVu
    Sans, a common fallback, is among the widest); no font is read."""
    ems = sum(_char_width(c) for c in text)
    return size * ems * (1.08 if bold else 1.0)


def _char_width(char: str) -> float:
    """A character's width in ems, by kind."""
    if char in "il.,:;'!|·":
        return 0.3
    if char in " ()-[]jft":
        return 0.38
    if char in "mwMW@%":
        return 0.95
    if char.isupper():
        return 0.72
    return 0.62


def _ident(prefix: str) -> str:
    cleaned = _NOT_ID.sub("-", prefix)
    return cleaned if cleaned[:1].isalpha() else f"c-{cleaned}"


def _n(value: float) -> str:
    """A coordinate: one decimal at most, no `-0`."""
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def _hatch(ident: str, ground: str, ink: str) -> str:
    """A diagonal hatch fill (what is reserved, not spent)."""
    return (
        f'<pattern id="{ident}" patternUnits="userSpaceOnUse" width="6" height="6" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{ground}"/>'
        f'<rect width="2" height="6" fill="{ink}"/></pattern>'
    )
