"""`costguard.cli.table`: tables fit to 100 columns (or all with --wide), Markdown, notes."""

from __future__ import annotations

from costguard.cli import table
from costguard.cli.table import Column


def test_two_line_headers_right_alignment_and_a_rule_before_totals() -> None:
    """Headers split on `\\n` sit bottom-aligned; numbers are right-aligned; RULE is a rule."""
    columns = [Column("model"), Column("batch\nmax", right=True)]
    text = table.render(columns, [["a", "$1.00"], table.RULE, ["TOTAL", "$12.00"]])
    assert text.splitlines() == [
        "        batch",
        "model     max",
        "-----  ------",
        "a       $1.00",
        "-----  ------",
        "TOTAL  $12.00",
    ]


def test_wide_only_columns_show_with_wide() -> None:
    """A `wide` column is left out by default, without a note, and shown with --wide."""
    columns = [Column("a"), Column("b", wide=True)]
    assert table.render(columns, [["1", "2"]]).splitlines()[0] == "a"
    assert table.render(columns, [["1", "2"]], wide=True).splitlines()[0] == "a  b"


def test_droppable_columns_make_room_and_the_table_says_so() -> None:
    """Too wide: the highest `drop` goes first, a column it made room for comes back, and a
    note names what was left out; --wide keeps everything."""
    columns = [
        Column("name"),
        Column("small", drop=2),
        Column("big", drop=1),
    ]
    rows = [["n" * 40, "s" * 10, "b" * 60]]
    text = table.render(columns, rows)
    assert all(len(line) <= table.WIDTH for line in text.splitlines())
    assert text.splitlines()[0].split() == ["name", "small"]
    assert text.splitlines()[-1] == "(left out to fit 100 columns: big; --wide shows every column)"
    assert table.render(columns, rows, wide=True).splitlines()[0].split() == [
        "name",
        "small",
        "big",
    ]


def test_shrinkable_columns_are_cut_from_the_left() -> None:
    """A path column too long to fit keeps its end, which tells paths apart."""
    columns = [Column("run"), Column("queue", shrink=True)]
    path = "/very/long/path/" + "x" * 100 + "/catalog.jsonl"
    line = table.render(columns, [["run-1", path]]).splitlines()[-1]
    assert len(line) == table.WIDTH
    assert line.endswith("/catalog.jsonl")
    assert "..." in line


def test_markdown_escapes_dollars_and_pipes() -> None:
    """GitHub would read `$...$` as math and `|` as a cell end: both are escaped."""
    columns = [Column("model"), Column("batch\nmax", right=True)]
    text = table.markdown(columns, [["a|b", "$0.12-$0.14"], table.RULE])
    assert text.splitlines() == [
        "| model | batch max |",
        "|---|--:|",
        "| a\\|b | \\$0.12-\\$0.14 |",
    ]


def test_notes_wrap_at_100_columns_unless_wide() -> None:
    """A long note wraps, continued lines four spaces in; words and paths are never cut."""
    note = "warning: " + " ".join(["word"] * 40) + " /a/" + "p" * 120
    lines = table.wrap(note)
    assert all(len(line) <= table.WIDTH for line in lines[:-1])
    assert lines[-1] == "    /a/" + "p" * 120
    assert all(line.startswith("    ") for line in lines[1:])
    assert table.wrap(note, wide=True) == [note]
    assert table.wrap("  indented " + "x " * 60)[1].startswith("      x")
