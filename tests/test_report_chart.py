"""The spend chart: a `SpendSeries` drawn as inline SVG, parsed back with xml.etree."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costguard.ledger import Activity, Run, SpendEntry
from costguard.report.chart import spend_chart
from costguard.report.spend import MAX_POINTS, SpendSeries, spend_series
from test_report_spend import run

SVG = "{http://www.w3.org/2000/svg}"
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
APR_1 = datetime(2026, 4, 1, tzinfo=UTC)


def day(n: int, hour: int = 0) -> datetime:
    """A moment in March 2026."""
    return datetime(2026, 3, n, hour, tzinfo=UTC)


def series_of(
    runs: list[Run],
    entries: list[tuple[datetime, str, str]],
    *,
    limit: str | None = "100",
    run_id: str | None = None,
    start: datetime = MAR_1,
    end: datetime = APR_1,
    window_end: datetime | None = None,
    budget: str | None = "default",
) -> SpendSeries:
    """The series of `runs` with spend `(moment, run id, amount)` over [start, end)."""
    found = Activity(
        budget=budget,
        since=start,
        until=end,
        runs=tuple(runs),
        spend=tuple(
            sorted(
                (SpendEntry(at, r, f"p{i}", Decimal(a)) for i, (at, r, a) in enumerate(entries)),
                key=lambda e: (e.recorded, e.run_id, e.part_id),
            )
        ),
        spent_before={},
    )
    return spend_series(
        found,
        start=start,
        end=end,
        limit=None if limit is None else Decimal(limit),
        run_id=run_id,
        window_end=window_end,
    )


def three_owners(**kwargs: Any) -> SpendSeries:
    """Ana, bob and cy spend in March; ana's second run is the report's."""
    runs = [
        run("a1", "20", day(2), settled=day(3)),
        run("b1", "30", day(4), owner="bob", settled=day(6)),
        run("c1", "10", day(5), owner="cy"),
        run("a2", "15", day(8)),
    ]
    entries = [
        (day(2, 5), "a1", "12"),
        (day(5, 2), "b1", "25"),
        (day(6), "c1", "4"),
        (day(9), "a2", "6.5"),
    ]
    return series_of(runs, entries, **kwargs)


def parse(svg: str) -> ET.Element:
    """The chart parsed (it must be well-formed XML)."""
    return ET.fromstring(svg)


def paths(root: ET.Element, cls: str) -> list[ET.Element]:
    """The `<path>` elements whose class list holds `cls`."""
    return [p for p in root.iter(f"{SVG}path") if cls in p.get("class", "").split()]


def texts(root: ET.Element) -> list[str]:
    """Every `<text>`'s content."""
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def y_ticks(root: ET.Element) -> dict[str, float]:
    """The y axis: each tick's label and its height."""
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "y-axis")
    return {t.text or "": float(t.get("y", "nan")) for t in axis.iter(f"{SVG}text")}


def limit_y(root: ET.Element) -> float:
    """The height of the limit line."""
    group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "limit")
    line = group.find(f"{SVG}line")
    assert line is not None
    assert line.get("y1") == line.get("y2")
    return float(line.get("y1", "nan"))


def test_the_chart_is_an_accessible_svg_that_scales() -> None:
    """A well-formed `<svg>` with a viewBox, role img, an aria-label and a title first."""
    root = parse(spend_chart(three_owners(run_id="a2")))
    assert root.tag == f"{SVG}svg"
    assert re.fullmatch(r"0 0 760 \d+", root.get("viewBox", ""))
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert label.startswith('Spend over time. Budget "default", March 2026 (UTC): $47.50 spent')
    assert root[0].tag == f"{SVG}title"
    assert root[0].text == label


def test_each_owner_has_one_area_named_in_its_title() -> None:
    """One path per owner who spent, each titled with the owner and the amount."""
    root = parse(spend_chart(three_owners()))
    owners = paths(root, "owner")
    assert len(owners) == 3
    titles = [p.findtext(f"{SVG}title") for p in owners]
    assert titles == ["bob: $25.00 spent", "ana: $18.50 spent", "cy: $4.00 spent"]
    assert len({p.get("fill") for p in owners}) == 3


def test_owners_beyond_six_are_grouped_as_others() -> None:
    """With nine owners the five largest are drawn alone and four as one "others" area."""
    runs = [run(f"r{i}", "5", day(2), owner=f"owner-{i}") for i in range(9)]
    entries = [(day(3 + i), f"r{i}", str(i + 1)) for i in range(9)]
    root = parse(spend_chart(series_of(runs, entries)))
    alone = [p for p in paths(root, "owner") if "others" not in p.get("class", "")]
    assert [p.findtext(f"{SVG}title") for p in alone] == [
        f"owner-{i}: ${i + 1}.00 spent" for i in range(8, 3, -1)
    ]
    (others,) = paths(root, "others")
    assert others.findtext(f"{SVG}title") == "4 other owners: $10.00 spent"
    assert "4 others: $10.00" in texts(root)


def test_the_limit_line_is_drawn_at_the_limit() -> None:
    """The dashed limit line sits on the y scale where the limit's amount is."""
    root = parse(spend_chart(three_owners(limit="100")))
    ticks = y_ticks(root)
    assert limit_y(root) == pytest.approx(ticks["$100.00"], abs=0.05)
    odd = parse(spend_chart(three_owners(limit="90")))
    ticks = y_ticks(odd)
    zero, top = ticks["$0.00"], ticks["$100.00"]
    assert limit_y(odd) == pytest.approx(zero + (top - zero) * 0.9, abs=0.1)
    assert "limit $90.00" in texts(odd)


def test_a_limit_of_none_draws_no_limit() -> None:
    """Without a limit there is no limit line, no over-limit zone, and the caption says so."""
    root = parse(spend_chart(three_owners(limit=None)))
    assert not [g for g in root.iter(f"{SVG}g") if g.get("class") == "limit"]
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "over-zone"]
    assert "$47.50 spent · $14.50 reserved · no limit" in texts(root)


def test_spend_above_the_limit_stays_on_the_scale_and_is_marked() -> None:
    """Over the limit the y scale still covers all spend, the part above the limit is drawn
    red, and the limit's label says by how much."""
    root = parse(spend_chart(three_owners(limit="30")))
    ticks = y_ticks(root)
    assert max(Decimal(t.strip("$").replace(",", "")) for t in ticks) >= Decimal("62")
    assert len(paths(root, "over")) == 1
    assert "limit $30.00 (over by $32.00)" in texts(root)
    assert "$47.50 spent · $14.50 reserved · $32.00 over the $30.00 limit" in texts(root)


def test_owner_names_are_escaped() -> None:
    """Markup, ampersands and characters XML cannot hold in an owner's name stay text."""
    name = "<script>alert('x')</script> & \x07co"
    series = series_of([run("r1", "5", day(2), owner=name)], [(day(3), "r1", "1")])
    svg = spend_chart(series)
    assert "<script" not in svg
    assert "\x07" not in svg
    root = parse(svg)
    (area,) = paths(root, "owner")
    assert area.findtext(f"{SVG}title") == "<script>alert('x')</script> & \ufffdco: $1.00 spent"
    assert "<script>alert('x')</scr…: $1.00" in texts(root)


def test_the_reports_run_is_outlined_and_in_the_legend() -> None:
    """The run's own share is outlined (solid when it counts) and named in the legend."""
    root = parse(spend_chart(three_owners(run_id="a2")))
    (outline,) = paths(root, "this-run")
    assert outline.get("stroke-dasharray") is None
    assert "this run: $6.50 spent, $8.50 reserved" in texts(root)
    assert [p.findtext(f"{SVG}title") for p in paths(root, "owner")][1] == (
        "ana: $12.00 spent (besides this run)"
    )


def test_a_rehearsal_is_drawn_on_top_and_labelled_not_counted() -> None:
    """A rehearsal's would-be spend sits above the real figures, dashed, labelled as such, and
    its share at the end is marked beside where the figures end."""
    runs = [
        run("real", "10", day(2)),
        run("sim", "20", day(3), owner="ana", rehearsal=True),
    ]
    series = series_of(runs, [(day(2, 1), "real", "4"), (day(4), "sim", "5")], run_id="sim")
    root = parse(spend_chart(series))
    (outline,) = paths(root, "this-run")
    assert outline.get("stroke-dasharray")
    (marker,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "this-run-end"]
    outline = marker.findall(f"{SVG}rect")[-1]
    assert float(outline.get("height", "0")) >= 4
    legend = "this run (rehearsal, not counted): $5.00 spent, $15.00 reserved"
    assert legend in texts(root)
    assert "$4.00 spent · $6.00 reserved · $90.00 left of $100.00" in texts(root)


def test_an_empty_window_draws_the_axes_the_limit_and_a_note() -> None:
    """No spend: no areas, but the y axis, the limit and a "no spend" note."""
    root = parse(spend_chart(series_of([], [], limit="75")))
    assert not list(root.iter(f"{SVG}path"))
    assert "no spend in this window" in texts(root)
    assert "$75.00" in " ".join(texts(root))
    ticks = y_ticks(root)
    zero, top = ticks["$0.00"], ticks["$100.00"]
    assert limit_y(root) == pytest.approx(zero + (top - zero) * 0.75, abs=0.1)


def test_a_single_point_is_drawn_without_areas() -> None:
    """A window of no length (start = end) still gives a chart."""
    series = series_of([run("r", "5", day(2))], [], start=day(2), end=day(2))
    assert len(series.points) == 1
    root = parse(spend_chart(series))
    assert not paths(root, "reserved")
    assert y_ticks(root)


@pytest.mark.parametrize(
    ("amount", "labels"),
    [
        ("0.0003", ["$0.00", "$0.00010", "$0.00020", "$0.00030", "$0.00040"]),
        (
            "900000000",
            [
                "$0.00",
                "$200,000,000.00",
                "$400,000,000.00",
                "$600,000,000.00",
                "$800,000,000.00",
                "$1,000,000,000.00",
            ],
        ),
    ],
)
def test_tiny_and_huge_amounts_get_dollar_ticks_by_the_display_rule(
    amount: str, labels: list[str]
) -> None:
    """The y ticks are round amounts shown by costguard.money's rule, however small or large."""
    series = series_of([run("r", amount, day(2))], [(day(3), "r", amount)], limit=None)
    assert list(y_ticks(parse(spend_chart(series)))) == labels


def x_labels(root: ET.Element) -> tuple[list[str], list[str]]:
    """The x axis' tick labels and their second lines (the date or year where it changes)."""
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "x-axis")
    lines = [(t.get("y"), t.text or "") for t in axis.iter(f"{SVG}text")]
    first_y = lines[0][0]
    return [t for y, t in lines if y == first_y], [t for y, t in lines if y != first_y]


@pytest.mark.parametrize(
    ("start", "end", "ticks", "dates"),
    [
        (
            day(15),
            day(16),
            ["00:00", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "00:00"],
            ["Mar 15", "Mar 16"],
        ),
        (MAR_1, APR_1, ["Mar 2", "Mar 9", "Mar 16", "Mar 23", "Mar 30"], ["2026"]),
        (
            day(2),
            day(9),
            ["Mar 2", "Mar 3", "Mar 4", "Mar 5", "Mar 6", "Mar 7", "Mar 8", "Mar 9"],
            ["2026"],
        ),
        (
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            ["Jan", "Mar", "May", "Jul", "Sep", "Nov", "Jan"],
            ["2026", "2027"],
        ),
        (
            day(15, 10),
            day(15, 10) + timedelta(seconds=90),
            ["10:00:00", "10:00:15", "10:00:30", "10:00:45", "10:01:00", "10:01:15", "10:01:30"],
            ["Mar 15"],
        ),
        (
            datetime(2001, 1, 1, tzinfo=UTC),
            datetime(2031, 1, 1, tzinfo=UTC),
            ["2005", "2010", "2015", "2020", "2025", "2030"],
            [],
        ),
        (day(15, 10), day(15, 10) + timedelta(milliseconds=300), ["10:00:00"], ["Mar 15"]),
    ],
)
def test_x_ticks_suit_the_windows_length(
    start: datetime, end: datetime, ticks: list[str], dates: list[str]
) -> None:
    """Hours for a day, weeks or days for a month or week, months for a year, seconds for a
    minute, years for decades; the date (or year) under the first tick and where it changes."""
    root = parse(spend_chart(series_of([], [], start=start, end=end)))
    assert x_labels(root) == (ticks, dates)


def test_the_current_window_marks_now() -> None:
    """When the figures stop before the window's end, a "now" line marks where."""
    root = parse(spend_chart(three_owners(end=day(20), window_end=APR_1)))
    assert "now" in texts(root)
    assert not parse(spend_chart(three_owners())).findall(f".//{SVG}g[@class='now']")


def test_a_long_series_is_drawn_with_at_most_the_bound_of_steps() -> None:
    """10,000 spend events give a chart of bounded size: each area at most MAX_POINTS steps."""
    runs = [run(f"r{i}", "40", day(1), owner=f"o{i}") for i in range(3)]
    entries = [(day(1) + timedelta(minutes=4 * k + 1), f"r{k % 3}", "0.01") for k in range(10_000)]
    series = series_of(runs, entries, run_id="r0")
    assert series.steps == 10_002
    svg = spend_chart(series)
    assert len(svg) < 400_000
    root = parse(svg)
    for path in root.iter(f"{SVG}path"):
        assert path.get("d", "").count("H") <= 2 * MAX_POINTS
    assert "$100.00 spent · $20.00 reserved · $20.00 over the $100.00 limit" in texts(root)


def test_the_same_series_always_gives_the_same_svg() -> None:
    """The chart is deterministic: the same input, the same text."""
    assert spend_chart(three_owners(run_id="a2")) == spend_chart(three_owners(run_id="a2"))


def test_ids_carry_the_prefix_and_every_reference_resolves() -> None:
    """Ids start with the (sanitised) prefix, so two charts can share a page."""
    root = parse(spend_chart(three_owners(limit="30", run_id="a2"), id_prefix="run 7/a"))
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    assert ids
    assert all(i.startswith("run-7-a-") for i in ids if i)
    refs = set(re.findall(r"url\(#([^)]+)\)", ET.tostring(root, encoding="unicode")))
    assert refs <= ids


def test_a_chart_too_small_to_read_is_refused() -> None:
    """Below 320 x 200 user units the chart refuses."""
    with pytest.raises(ValueError, match="at least 320 x 200"):
        spend_chart(three_owners(), width=200)
