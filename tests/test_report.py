"""`costguard report` and the report written at the end of `run` / `collect`: facts and page.

Runs go to the in-process simulator (scenario files with a fast clock); the page is read with
the standard library's HTML parser, so what is checked is what a browser gets. The page in a
real browser is `test_report_browser.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.rundir import RunDir
from costguard.ledger import Ledger, open_ledger
from runkit import AS_OF, GEMINI_LINES, OPENAI_LINES, by_key, scenario_file, write_queue

MIXED = GEMINI_LINES + OPENAI_LINES
FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]


class Page(HTMLParser):
    """The parts of a report page the tests look at: tiles, their texts, meta tags, links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tiles: list[dict[str, Any]] = []
        self.meta: dict[str, str] = {}
        self.scripts = 0
        self.svg = 0
        self.external: list[str] = []
        self._tile: dict[str, Any] | None = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in ("src", "href"):
            if a.get(name, "").startswith(("http:", "https:", "//")):
                self.external.append(a[name])
        if tag == "meta" and "name" in a:
            self.meta[a["name"]] = a.get("content", "")
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.svg += 1
        if tag == "figure" and "tile" in a.get("class", "").split():
            self._tile = {"class": a["class"], "text": "", "img": None, "links": []}
            self._depth = 0
        if self._tile is not None:
            if tag == "figure":
                self._depth += 1
            if tag == "img":
                self._tile["img"] = a["src"]
            if tag == "a":
                self._tile["links"].append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if self._tile is not None and tag == "figure":
            self._depth -= 1
            if self._depth == 0:
                self.tiles.append(self._tile)
                self._tile = None

    def handle_data(self, data: str) -> None:
        if self._tile is not None:
            self._tile["text"] += data


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """COSTGUARD_HOME as the autouse fixture set it."""
    return tmp_path / "costguard-home"


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    """The ledger the CLI uses by default (`<home>/ledger.sqlite3`), opened by the test."""
    with open_ledger(home / "ledger.sqlite3") as opened:
        yield opened


def run_queue(
    tmp_path: Path,
    cli: Callable[..., Any],
    lines: list[dict[str, Any]],
    scenario: str = "succeeded",
    *extra: str,
    **overrides: Any,
) -> tuple[Any, Path, Path]:
    """Run `lines` on the simulator; returns the CLI result, the queue and the output folder."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, lines)
    sc = scenario_file(tmp_path / "sc", scenario, **overrides)
    out = tmp_path / "out"
    result = cli("run", queue, "--max-usd", "5", "--simulate", sc, "--out", out, *FAST, *extra)
    return result, queue, out


def run_id_of(out: Path) -> str:
    return (out / ".costguard-run").read_text(encoding="utf-8").split()[0]


def test_a_run_ends_with_a_report_that_shows_every_request(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """`run` writes report.html in the output folder, prints its path, one tile per request."""
    result, _, out = run_queue(tmp_path, cli, MIXED, "refusals")
    assert result.code == 7, result.err
    page_path = out / "report.html"
    assert f"report: {page_path}" in result.out.splitlines()
    page = Page(page_path.read_text(encoding="utf-8"))
    lines = by_key(out)
    assert len(lines) == len(MIXED)
    images = sum(len(line["files"]) for line in lines.values())
    not_ok = sum(1 for line in lines.values() if line["status"] != "ok")
    assert len(page.tiles) == images + not_ok, "a tile per image, and one per request without"
    assert page.meta["costguard-run"] == run_id_of(out)
    assert not page.external, "the page must not load anything from the network"
    refused = [t for t in page.tiles if "bad" in t["class"].split()]
    assert len(refused) == sum(1 for line in lines.values() if line["status"] == "refused") > 0
    for tile in refused:
        key = next(k for k in lines if k in tile["text"])
        assert lines[key]["reason"] in tile["text"]
    shown = set()
    for tile in (t for t in page.tiles if t not in refused):
        assert tile["img"] is not None
        assert (out / tile["img"]).is_file()
        shown.add(tile["links"][0].replace("%23", "#").replace("%20", " "))
    assert shown == {f for line in lines.values() for f in line["files"]}


def test_a_rehearsal_report_says_it_is_one(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """A run on the simulator is reported as a rehearsal: nothing was spent."""
    _, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:2])
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "Rehearsal." in text
    assert "no money was spent" in text
    assert "Would have cost" in text


def test_json_facts_are_what_the_page_shows(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """`report RUN --output json` gives the counts, groups and totals the page is made from."""
    _, _, out = run_queue(tmp_path, cli, MIXED, "refusals")
    result = cli("report", "last", "--output", "json")
    assert result.code == 0, result.err
    facts = json.loads(result.out)
    lines = by_key(out)
    statuses = [line["status"] for line in lines.values()]
    assert facts["counts"] == {s: statuses.count(s) for s in ("ok", "refused")}
    assert facts["collected"] == len(lines)
    assert facts["not_collected"] == 0
    assert {i["key"] for i in facts["images"]} == set(lines)
    prompts = {line["key"]: line["prompt"] for line in MIXED}
    assert all(i["prompt"] == prompts[i["key"]] for i in facts["images"])
    cost = facts["cost"]
    actual = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    assert Decimal(cost["actual_usd"]) == actual
    groups = cost["by_group"]
    assert sum(Decimal(g["actual_usd"]) for g in groups) == actual
    assert sum(Decimal(g["expected_usd"]) for g in groups) == Decimal(
        cost["estimate"]["expected_usd"]
    )
    assert sum(Decimal(g["max_usd"]) for g in groups) == Decimal(cost["estimate"]["max_usd"])
    assert sum(g["requests"] for g in groups) == len(MIXED)
    saving = cost["other_mode"]
    assert saving["mode"] == "sync"
    assert Decimal(saving["usd"]) - actual == Decimal(saving["saving_usd"]) > 0
    assert not (out / "thumbs.costguard-2").exists()


def test_the_retry_command_is_on_the_page(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """An expired run's report says how many requests are in retry.jsonl and how to send them."""
    result, _, out = run_queue(tmp_path, cli, MIXED, "expired", "--output", "json")
    summary = json.loads(result.out)
    assert summary["report"] == str(out / "report.html")
    facts = json.loads(cli("report", summary["run_id"], "--output", "json").out)
    assert facts["retry"]["count"] == summary["retry_count"] > 0
    assert facts["retry"]["command"] == summary["retry_command"]
    assert facts["retry"]["written"] is True
    text = (out / "report.html").read_text(encoding="utf-8")
    assert summary["retry_command"] in text


def test_no_report_writes_none(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """`--no-report` leaves no report.html and no thumbs/ behind."""
    result, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:2], "succeeded", "--no-report")
    assert result.code == 0, result.err
    assert not (out / "report.html").exists()
    assert not (out / "thumbs").exists()
    assert "report:" not in result.out


def test_a_users_report_and_thumbs_are_never_overwritten(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A report.html and thumbs/ costguard did not write stay as they are; its own go beside."""
    out = tmp_path / "out"
    (out / "thumbs").mkdir(parents=True)
    (out / "thumbs" / "mine.txt").write_text("the user's", encoding="utf-8")
    (out / "report.html").write_text("<p>my own report</p>", encoding="utf-8")
    result, _, _ = run_queue(tmp_path, cli, GEMINI_LINES[:2])
    assert result.code == 0, result.err
    assert (out / "report.html").read_text(encoding="utf-8") == "<p>my own report</p>"
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == ["mine.txt"]
    page = out / "report.costguard-2.html"
    assert f"report: {page}" in result.out.splitlines()
    assert "was not written by costguard for this run: left as it is" in result.err
    tiles = Page(page.read_text(encoding="utf-8")).tiles
    assert all(t["img"].startswith("thumbs.costguard-2/") for t in tiles)
    again = cli("report", "last")
    assert again.out.strip() == str(page), "the run's own page is found again and rewritten"


def test_report_rewrites_its_own_page_and_reuses_thumbnails(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """`costguard report` finds the run's page by its meta tag and writes it again in place."""
    _, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:3])
    thumbs = sorted((out / "thumbs").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in thumbs}
    result = cli("report", run_id_of(out)[:10])
    assert result.code == 0, result.err
    assert result.out.strip() == str(out / "report.html")
    assert sorted((out / "thumbs").iterdir()) == thumbs
    assert {p: p.stat().st_mtime_ns for p in thumbs} == stamps


def test_keys_prompts_and_reasons_are_escaped(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Text from the queue or the provider cannot inject markup or script into the page."""
    lines = [
        {
            "key": "<script>alert(1)</script>",
            "prompt": 'A "quoted" <b>bold</b> & <img src=x onerror=alert(2)> mug',
            "model": "gemini-3.1-flash-image",
        }
    ]
    _, _, out = run_queue(tmp_path, cli, lines)
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text
    assert "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = Page(text)
    assert page.scripts == 1
    assert len(page.tiles) == 1
    assert lines[0]["prompt"] in page.tiles[0]["text"]


def test_an_edited_queue_shows_no_prompts_and_says_why(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Prompts come back from the queue only while it is the file the run sent."""
    _, queue, out = run_queue(tmp_path, cli, GEMINI_LINES[:2])
    queue.write_text(queue.read_text(encoding="utf-8").replace("mug", "cup"), encoding="utf-8")
    facts = json.loads(cli("report", "last", "--output", "json").out)
    assert all(i["prompt"] is None for i in facts["images"])
    assert "changed since the run sent it" in facts["prompts"]
    assert cli("report", "last").code == 0
    assert "changed since the run sent it" in (out / "report.html").read_text(encoding="utf-8")


def test_the_journal_records_the_estimate_per_group(
    tmp_path: Path, cli: Callable[..., Any], home: Path
) -> None:
    """The run's journal keeps the estimate per model, size and quality (the report's basis)."""
    _, _, out = run_queue(tmp_path, cli, MIXED)
    journal = RunDir(home / "runs" / run_id_of(out)).load()
    groups = journal.estimate["groups"]
    assert sum(g["requests"] for g in groups) == len(MIXED)
    assert sum(Decimal(g["expected_usd"]) for g in groups) == Decimal(
        journal.estimate["expected_usd"]
    )


def test_the_cost_of_requests_that_think_is_shown_as_a_spread(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Where one group's requests cost different amounts (thinking), the report gives the spread."""
    lines = [
        {"key": f"p-{i}", "prompt": f"cover {i}", "model": "gemini-3-pro-image"} for i in range(8)
    ]
    _, _, out = run_queue(tmp_path, cli, lines, thinking_tokens={"median": 400, "max": 2000})
    facts = json.loads(cli("report", "last", "--output", "json").out)
    spread = facts["cost"]["spread"]
    assert len(spread) == 1
    row = spread[0]
    costs = sorted(Decimal(line["cost_usd"]) for line in by_key(out).values())
    assert (Decimal(row["min_usd"]), Decimal(row["max_usd"])) == (costs[0], costs[-1])
    assert sum(row["histogram"]) == len(lines)
    assert "Cost per image, where it varies" in (out / "report.html").read_text(encoding="utf-8")


def test_an_unknown_run_is_an_error_with_its_exit_code(cli: Callable[..., Any]) -> None:
    """`report` of a run that does not exist exits 5 and says so, as JSON too."""
    result = cli("report", "run-doesnotexist", "--output", "json")
    assert result.code == 5
    assert json.loads(result.out)["error"]["code"] == 5
    assert "run-doesnotexist" in result.err
    both = cli("report", "last", "--output", "json", "--open")
    assert both.code == 2
    assert "--open opens the page it writes" in both.err


def test_the_spend_section_names_the_budget(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """A rehearsal charged to a budget shows the budget's window in the spend section."""
    ledger.set_budget("team", usd=Decimal(20))
    result, _, _out = run_queue(tmp_path, cli, GEMINI_LINES[:2], "succeeded", "--budget", "team")
    assert result.code == 0, result.err
    facts = json.loads(cli("report", "last", "--output", "json").out)
    assert facts["spend"]["budget"] == "team"


def test_a_report_needs_the_output_folder(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """A run whose output folder is gone is refused with exit 9, and no folder is made."""
    import shutil

    _, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:1])
    shutil.rmtree(out)
    for extra in ([], ["--output", "json"]):
        result = cli("report", "last", *extra)
        assert result.code == 9
        assert "is not there" in result.err
        assert not out.exists()


def test_a_damaged_manifest_is_named_not_a_traceback(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A damaged manifest line stops `report` and `status` with file:line (exit 2) but not the
    `runs` listing; a torn last line is not yet a record and is left out."""
    _, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:3])
    manifest = out / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join([lines[0], b"garbage{\n", *lines[2:]]))
    for command in ("report", "status"):
        result = cli(command, "last")
        assert result.code == 2, (command, result.err)
        assert f"{manifest}:2: damaged line" in result.err
    listed = cli("runs")
    assert listed.code == 0, "one run's damaged manifest does not stop the listing"
    manifest.write_bytes(b"".join([*lines[:2], b'{"key": "x", "trunc\n']))
    facts = json.loads(cli("report", "last", "--output", "json").out)
    assert facts["collected"] == 2


def test_ctrl_c_while_the_report_is_written_exits_130_saying_the_run_is_done(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C during the end-of-run report exits 130 and says the run itself is done."""
    import costguard.report.build

    def interrupted(*args: object, **kwargs: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(costguard.report.build, "write_report", interrupted)
    result, _, out = run_queue(tmp_path, cli, GEMINI_LINES[:1])
    assert result.code == 130
    rid = run_id_of(out)
    assert f"run {rid} itself is done" in result.err
    assert f"`costguard report {rid}` writes the report" in result.err
    assert len(by_key(out)) == 1


def test_a_retry_is_refused_in_another_ledger_than_its_run(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """`run --retry` of a run admitted in another ledger exits 5 (its spend would be recorded
    apart from the run's), naming the fix; with that ledger it goes."""
    other = tmp_path / "other.sqlite3"
    cli("ledger", "migrate", "--ledger", other)
    result, _, _ = run_queue(tmp_path, cli, MIXED, "expired", "--ledger", str(other))
    assert result.code == 7, result.err
    refused = cli("run", "--retry", "last", "--max-usd", "5", *FAST)
    assert refused.code == 5
    assert "is not the ledger run" in refused.err
    assert "--ledger or COSTGUARD_LEDGER_URL" in refused.err
    went = cli("run", "--retry", "last", "--max-usd", "5", "--ledger", other, *FAST)
    assert went.code in (0, 7), went.err
