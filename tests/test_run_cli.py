"""`costguard run / collect / status / cancel / runs` through the CLI, in-process and as processes.

In-process calls go through `costguard.cli.app.run([...])` (the `cli` fixture); a few go through the
installed console script or `python -m costguard` in a subprocess, with `COSTGUARD_HOME` in tmp.
Simulated runs use scenario files written to tmp with a fast clock.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.execution.options import RunOptions, run_id_for
from costguard.execution.rundir import RunDir
from costguard.ledger import Ledger, open_ledger
from costguard.money import usd, usd_together
from costguard.pricing.engine import RateBook
from costguard.queue.reader import NO_DEFAULTS
from costguard.resources import home_dir
from costguard.simulator import simulate
from runkit import (
    AS_OF,
    GEMINI_LINES,
    LINES,
    OPENAI_LINES,
    SCENARIOS,
    by_key,
    cli_env,
    expected_statuses,
    finish,
    manifest,
    read_json,
    scenario_file,
    start,
    token_price,
    wait_until,
    write_queue,
)
from sim_cli import serve_process

MIXED = GEMINI_LINES + OPENAI_LINES
FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]
EXIT = {s: 7 if s in ("refusals", "expired", "cancelled", "failed") else 0 for s in SCENARIOS}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """COSTGUARD_HOME as the autouse fixture set it."""
    return tmp_path / "costguard-home"


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    """The ledger the CLI uses by default (`<home>/ledger.sqlite3`), opened by the test."""
    with open_ledger(home / "ledger.sqlite3") as opened:
        yield opened


def run_id(queue: Path, scenario: str | None = None, mode: str = "batch") -> str:
    """The run id `costguard run QUEUE [--simulate SCENARIO] [--mode MODE]` gets."""
    opts = RunOptions(queue, Decimal(0), mode=mode, defaults=NO_DEFAULTS, simulate=scenario)  # type: ignore[arg-type]
    return run_id_for(opts)


def runs_dirs(home: Path) -> list[Path]:
    """Every run folder under the home."""
    root = home / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


def saving_line(out: Path, book: RateBook, actual: Decimal) -> str:
    """The `batch saved` line the report must print for a batch run's manifest."""
    sync = sum((token_price(book, line, "standard") for line in manifest(out)), Decimal(0))
    saved, full = usd_together(sync - actual, sync)
    return f"batch saved {saved}: sync would have cost {full} for the same requests"


def cost_line(cli: Callable[..., Any], run: str, actual: Decimal) -> str:
    """The `cost:` line the report must print: actual, expected and max shown together."""
    estimate = json.loads(cli("status", run, "--output", "json").out)["estimate"]
    shown = usd_together(actual, Decimal(estimate["expected_usd"]), Decimal(estimate["max_usd"]))
    return f"cost: actual {shown[0]} against an estimate of {shown[1]} expected, {shown[2]} max"


# --- every scenario, both providers in one queue --------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_reports_exit_code_cost_and_saving_per_scenario(
    scenario: str,
    tmp_path: Path,
    cli: Callable[..., Any],
    ledger: Ledger,
    shipped_book: RateBook,
) -> None:
    """A mixed Gemini + OpenAI queue ends 0 or 7 per scenario, with reconciled cost and saving."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    sc = scenario_file(tmp_path / "sc", scenario)
    out = tmp_path / "out"
    result = cli("run", queue, "--max-usd", "5", "--simulate", sc, "--out", out, *FAST)
    assert result.code == EXIT[scenario], result.err
    expected = {
        **expected_statuses(GEMINI_LINES, scenario, "gemini"),
        **expected_statuses(OPENAI_LINES, scenario, "openai"),
    }
    lines = by_key(out)
    assert {k: v["status"] for k, v in lines.items()} == expected
    actual = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    rid = run_id(queue, str(sc))
    run = ledger.run(rid)
    assert run is not None
    assert (run.spent, run.parts, run.status) == (actual, 4, "collected")
    counts = ", ".join(
        f"{s} {list(expected.values()).count(s)}" for s in sorted(set(expected.values()))
    )
    assert f"run {rid}: {counts}" in result.out
    assert cost_line(cli, rid, actual) in result.out.splitlines()
    if actual:
        assert saving_line(out, shipped_book, actual) in result.out
    retried = [k for k, s in expected.items() if s not in ("ok", "refused")]
    if retried:
        assert f"{len(retried):,} requests to retry: {out / 'retry.jsonl'}" in result.out
    else:
        assert "to retry" not in result.out


def test_json_summary_matches_the_ledger(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """`--output json` reports the actual cost the ledger recorded and each part's job."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    sc = scenario_file(tmp_path / "sc", "expired")
    result = cli(
        "run", queue, "--max-usd", "5", "--simulate", sc, "--out", tmp_path / "o",
        "--output", "json", *FAST,
    )  # fmt: skip
    assert result.code == 7
    summary = json.loads(result.out)
    run = ledger.run(summary["run_id"])
    assert run is not None
    assert Decimal(summary["actual_usd"]) == run.spent
    assert sum(Decimal(p["cost_usd"]) for p in summary["parts"]) == run.spent
    assert all(p["job_state"] == "terminal:expired" for p in summary["parts"])
    assert summary["retry_count"] == 9


def test_a_wholly_expired_run_is_retried_as_a_new_run_with_the_printed_command(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """Every job expired, so retry.jsonl is the queue byte for byte: the summary prints
    `costguard run --retry RUN --max-usd X`, which sends it as a new run (its own id, folder
    and ledger row), with the first run's options; running it again resumes that new run."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES[:3])  # an expired Gemini job returns nothing at all
    expired = scenario_file(tmp_path / "sc", "expired")
    first = cli("run", queue, "--max-usd", "5", "--simulate", expired, "--out", tmp_path / "o1",
                *FAST)  # fmt: skip
    assert first.code == 7
    rid = run_id(queue, str(expired))
    assert (tmp_path / "o1" / "retry.jsonl").read_bytes() == queue.read_bytes()
    command = f"costguard run --retry {rid} --max-usd 5"
    assert f"to retry them as a new run: {command}" in first.out.splitlines()
    succeeded = scenario_file(tmp_path / "sc", "succeeded")
    retried = cli("run", "--retry", rid, "--max-usd", "5", "--simulate", succeeded,
                  "--out", tmp_path / "o2", *FAST)  # fmt: skip
    assert retried.code == 0, retried.err
    new = json.loads(cli("status", "--output", "json", _new_run_id(retried.err)).out)
    assert new["run_id"] != rid
    assert {line["status"] for line in manifest(tmp_path / "o2")} == {"ok"}
    assert len(manifest(tmp_path / "o2")) == 3
    assert len(ledger.runs()) == 2
    again = cli("run", "--retry", rid, "--max-usd", "5", "--simulate", succeeded,
                "--out", tmp_path / "o2", *FAST)  # fmt: skip
    assert again.code == 0
    assert "is already complete; nothing was sent" in again.err
    assert len(ledger.runs()) == 2


def _new_run_id(err: str) -> str:
    """The id in the `new run RUN: ...` line `run --retry` / `--new-run` prints."""
    match = re.search(r"^new run (run-[0-9a-f]{12}):", err, re.MULTILINE)
    assert match, err
    return match[1]


def test_new_run_sends_a_queue_that_already_ran_again(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """The same command resumes (nothing sent); with --new-run it is a new run that sends."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    args = ("run", queue, "--max-usd", "5", "--simulate", *FAST)
    assert cli(*args, "--out", tmp_path / "o1").code == 0
    same = cli(*args)
    assert (
        "already complete; nothing was sent (to send the same queue again as a new run, "
        "add --new-run)" in same.err
    )
    fresh = cli(*args, "--new-run", "--out", tmp_path / "o2")
    assert fresh.code == 0, fresh.err
    assert _new_run_id(fresh.err) != run_id(queue, "succeeded")
    assert len(manifest(tmp_path / "o2")) == 2
    assert len(ledger.runs()) == 2


def test_a_users_file_in_the_way_is_refused_before_anything_is_reserved(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path
) -> None:
    """--out already holding `<key>.png` (not costguard's): exit 2 naming it, the file left as
    it was, nothing sent or reserved."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:3])
    out = tmp_path / "out"
    out.mkdir()
    mine = out / f"{OPENAI_LINES[0]['key']}.png"
    mine.write_bytes(b"my own picture")
    result = cli("run", queue, "--max-usd", "5", "--simulate", "--out", out, *FAST)
    assert result.code == 2
    assert result.err.splitlines() == [
        (
            f"error: {out} already holds 1 file(s) this run would write: {mine.name}; "
            "costguard never overwrites or reports a file it did not write: move them or choose "
            "another --out (nothing was sent)"
        )
    ]
    assert mine.read_bytes() == b"my own picture"
    assert ledger.runs() == []
    assert runs_dirs(home) == []


def test_a_manifest_cut_mid_line_is_collected_again_not_reported_short(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """manifest.jsonl cut in the middle of a line after a finished run: running the same
    command again collects the lost results from the finished jobs (images recognised, not
    rewritten), so the summary and the ledger agree with what was paid for."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    out = tmp_path / "out"
    args = ("run", queue, "--max-usd", "5", "--simulate", "--out", out, "--output", "json", *FAST)
    first = cli(*args)
    assert first.code == 0, first.err
    before = json.loads(first.out)
    manifest_file = out / "manifest.jsonl"
    whole = manifest_file.read_bytes()
    manifest_file.write_bytes(whole[: len(whole) // 2 + 7])
    again = cli(*args)
    assert again.code == 0, again.err
    assert "collecting them again from the finished job" in again.err
    after = json.loads(again.out)
    assert after["counts"] == before["counts"]
    assert after["actual_usd"] == before["actual_usd"]
    lines = manifest(out)
    assert sorted(line["key"] for line in lines) == sorted(line["key"] for line in MIXED)
    assert all((out / name).is_file() for line in lines for name in line["files"])
    assert not list(out.glob("*.costguard-[0-9]*"))
    (run,) = ledger.runs()
    assert str(run.spent) == after["actual_usd"] or run.spent == Decimal(after["actual_usd"])


def test_a_manifest_damaged_before_its_last_line_is_refused(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A damaged line in the middle of manifest.jsonl is named (file:line) and refused, never
    dropped together with every result recorded after it."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:3])
    out = tmp_path / "out"
    args = ("run", queue, "--max-usd", "5", "--simulate", "--out", out, *FAST)
    assert cli(*args).code == 0
    lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    (out / "manifest.jsonl").write_bytes(lines[0] + b"garbage\n" + b"".join(lines[2:]))
    result = cli(*args)
    assert result.code == 2
    assert f"error: {out / 'manifest.jsonl'}:2: damaged line" in result.err
    assert len((out / "manifest.jsonl").read_bytes().splitlines()) == 3


def test_a_wrong_api_key_exits_8_and_releases_what_was_not_accepted(
    tmp_path: Path, ledger: Ledger, home: Path
) -> None:
    """A provider that refuses the key (401): one line without the key, exit 8, the run's
    reservation released; with the right key the same command is admitted again and runs."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    ledger.set_budget(usd=Decimal("50"), period="month")
    with serve_process("--api-key", "sk-right-key-0123456789") as (base_url, _):

        def attempt(key: str) -> tuple[int, str, str]:
            env = cli_env(home, OPENAI_API_KEY=key, OPENAI_BASE_URL=f"{base_url}/v1")
            env["COSTGUARD_LEDGER"] = ledger.location
            args = ["run", str(queue), "--max-usd", "5", "--out", str(tmp_path / "o"), *FAST]
            return finish(start(args, env, tmp_path))

        code, _, err = attempt("sk-wrong-key-9876543210")
        assert code == 8, err
        (line,) = err.splitlines()
        assert line.startswith("error: OpenAI answered 401: ")
        assert "the provider accepted nothing" in line
        assert "sk-wrong" not in err
        (run,) = ledger.runs()
        assert (run.status, run.spent) == ("released", 0)
        assert ledger.status(at=run.created).reserved == 0
        code, out, err = attempt("sk-right-key-0123456789")
        assert code == 0, err
        assert "ok 2" in out
    (run,) = ledger.runs()
    assert run.status == "collected"


@pytest.mark.parametrize("where", ["file", "inside-a-file"])
def test_an_out_that_cannot_be_a_folder_exits_2_before_anything_is_reserved(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path, where: str
) -> None:
    """--out naming a file (or a path under one): exit 2, one line, nothing reserved."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:2])
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "images"
    result = cli("run", queue, "--max-usd", "5", "--simulate", "--out", out, *FAST)
    assert result.code == 2
    assert result.err == (
        f"error: --out {out}: {blocker} is a file, not a folder; choose another --out\n"
    )
    assert ledger.runs() == []
    assert runs_dirs(home) == []


def test_an_input_image_past_the_providers_limit_is_refused_before_pricing(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """A 200 MB edit image (sparse: no disk used) is refused by estimate and run alike, with
    file:line and field, without reading it and before anything is reserved."""
    big = tmp_path / "huge.png"
    with big.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, [dict(OPENAI_LINES[0], images=["huge.png"])])
    for command in (("estimate", queue), ("run", queue, "--max-usd", "5", "--simulate", *FAST)):
        result = cli(*command)
        assert result.code == 2
        assert (
            f"error: {queue}:1: images[0]: input image {big} is 200.0 MB; openai takes at most "
            "50 MB per image"
        ) in result.err
    assert ledger.runs() == []


def test_sync_mode_says_what_batch_would_have_saved(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, shipped_book: RateBook
) -> None:
    """`--mode sync` pays standard prices and reports the batch price of the same usage."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES[:2] + OPENAI_LINES[:2])
    sc = scenario_file(tmp_path / "sc", "succeeded")
    out = tmp_path / "out"
    result = cli(
        "run", queue, "--max-usd", "5", "--mode", "sync", "--simulate", sc, "--out", out, *FAST
    )
    assert result.code == 0, result.err
    lines = manifest(out)
    actual = sum((token_price(shipped_book, line, "standard") for line in lines), Decimal(0))
    batch = sum((token_price(shipped_book, line, "batch") for line in lines), Decimal(0))
    assert batch * 2 == actual  # the cards price batch at half the standard rates
    shown, paid = usd_together(batch, actual)
    assert f"batch would have cost {shown} (half of the {paid} paid)" in result.out.splitlines()
    assert "batch saved" not in result.out
    run = ledger.run(run_id(queue, str(sc), mode="sync"))
    assert run is not None
    assert run.spent == actual
    state = read_json(home_of(tmp_path) / "runs" / run.run_id / "simulator.json")
    assert state["jobs"] == []


def home_of(tmp_path: Path) -> Path:
    """COSTGUARD_HOME for a test (set by the autouse fixture)."""
    return tmp_path / "costguard-home"


# --- the budget guard ---------------------------------------------------------------------


def test_over_max_usd_exits_3_and_sends_nothing(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path
) -> None:
    """Over --max-usd: exit 3 with the shortfall; no run folder, simulator call or ledger row."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    sc = scenario_file(tmp_path / "sc", "succeeded")
    result = cli("run", queue, "--max-usd", "0.05", "--simulate", sc, *FAST)
    assert result.code == 3
    assert re.search(
        r"over budget: the batch maximum \$[\d.]+ passes --max-usd \$0\.05 by \$0\.\d+",
        result.err,
    )
    assert "nothing was sent" in result.err
    assert runs_dirs(home) == []
    assert ledger.runs() == []


@pytest.mark.parametrize("max_usd", ["1e999999", "1000000000.5", "-1", "lots"])
def test_an_amount_past_the_maximum_exits_2_and_sends_nothing(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path, max_usd: str
) -> None:
    """--max-usd outside 0 to the documented maximum: one line, exit 2, nothing recorded."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    result = cli("run", queue, "--max-usd", max_usd, "--simulate", *FAST)
    assert result.code == 2
    assert result.err == (
        f"error: --max-usd: {max_usd!r} is not an amount in USD; give one from 0 to "
        "$1,000,000,000.00, like 500 or 12.50\n"
    )
    assert runs_dirs(home) == []
    assert ledger.runs() == []


@pytest.mark.parametrize(
    "location",
    [
        "postgresql:/cg:s3cret@db/cg",
        "postgresq://cg:s3cret@db/cg",
        "postgres//cg:s3cret@db/cg",
        "sqlite:///tmp/ledger.db",
        "postgresql://cg:s3cret@/cg",
    ],
    ids=["one-slash", "scheme-typo", "no-colon", "other-scheme", "no-host"],
)
def test_a_ledger_url_that_is_not_valid_exits_5_and_creates_nothing(
    tmp_path: Path,
    cli: Callable[..., Any],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    location: str,
) -> None:
    """A mistyped ledger URL is refused (exit 5, password hidden), never a new local ledger."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("COSTGUARD_LEDGER_URL", location)
    result = cli("run", queue, "--max-usd", "5", "--simulate", *FAST)
    assert result.code == 5
    assert result.err.startswith("error: ledger ")
    assert len(result.err.splitlines()) == 1
    assert "s3cret" not in result.err
    assert list(work.iterdir()) == []
    assert runs_dirs(home) == []


def test_a_relative_ledger_path_must_name_an_existing_ledger(
    tmp_path: Path, cli: Callable[..., Any], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--ledger team.db` where no such file is: exit 5 naming the absolute path to use."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    monkeypatch.chdir(tmp_path)
    result = cli("run", queue, "--max-usd", "5", "--simulate", "--ledger", "team.db", *FAST)
    assert result.code == 5
    assert f"a new ledger is created only at an absolute path (e.g. {tmp_path / 'team.db'})" in (
        result.err
    )
    assert not (tmp_path / "team.db").exists()
    absolute = cli("budget", "set", "--usd", "5", "--ledger", tmp_path / "team.db")
    assert absolute.code == 0
    again = cli("run", queue, "--max-usd", "5", "--simulate", "--ledger", "team.db", *FAST)
    assert again.code == 0, again.err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_budget_named_but_not_set_exits_5_naming_those_that_are(
    tmp_path: Path,
    cli: Callable[..., Any],
    ledger: Ledger,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """`--budget defualt` (or COSTGUARD_BUDGET): exit 5 listing the budgets; nothing reserved."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    ledger.set_budget(usd=Decimal("50"), period="month")
    ledger.set_budget(usd=Decimal("10"), period="day", name="team")
    args: tuple[str, ...] = ()
    if how == "flag":
        args = ("--budget", "defualt")
    else:
        monkeypatch.setenv("COSTGUARD_BUDGET", "defualt")
    result = cli("run", queue, "--max-usd", "5", "--simulate", *args, *FAST)
    assert result.code == 5
    assert result.err.splitlines() == [
        (
            f"error: ledger {ledger.location}: no budget named 'defualt' (budgets set: "
            "'default', 'team'); set it with `costguard budget set --name defualt --usd AMOUNT` "
            "or name another"
        )
    ]
    assert runs_dirs(home) == []
    assert ledger.runs() == []


def test_the_implicit_default_budget_may_be_absent_and_the_summary_says_so(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """No --budget and no budget set: --max-usd alone caps the run, and the summary says so."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    result = cli("run", queue, "--max-usd", "5", "--simulate", "--out", tmp_path / "o", *FAST)
    assert result.code == 0, result.err
    assert (
        "budget: admitted: no budget named 'default' is set, so only max_usd caps this run "
        "(max_usd $5.00); a rehearsal: nothing real is reserved or spent"
    ) in result.out.splitlines()


def test_a_rehearsal_exercises_the_guard_but_never_counts_as_real_money(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """`run --simulate` is admitted against the real budget, but `budget show` and the finance
    export do not see it; history lists it as a rehearsal."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    ledger.set_budget(usd=Decimal("500"), period="month")
    result = cli("run", queue, "--max-usd", "5", "--simulate", "--out", tmp_path / "o", *FAST)
    assert result.code == 0, result.err
    assert "a rehearsal: nothing real is reserved or spent" in result.out
    (run,) = ledger.runs()
    assert run.rehearsal
    assert run.spent > 0
    assert run.meta["simulate"] == "succeeded"
    status = ledger.status(at=run.created)
    assert (status.reserved, status.spent, status.remaining) == (0, 0, Decimal("500"))
    shown = cli("budget", "show", "--output", "json")
    assert (
        json.loads(shown.out)["budgets"][0]["spent"],
        json.loads(shown.out)["budgets"][0]["reserved"],
    ) == ("0", "0")
    exported = cli("ledger", "export")
    assert exported.out.splitlines()[1:] == []
    runs_csv = cli("ledger", "export", "--what", "runs")
    assert runs_csv.out.splitlines()[1:] == []
    history = cli("ledger", "history")
    assert "collected (rehearsal)" in history.out
    assert "0 runs (and 1 rehearsal, not counted); estimated $0.00" in history.out


def test_ledger_budget_short_exits_3_with_the_shortfall(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path
) -> None:
    """A ledger budget with less left than the maximum refuses the run (exit 3) by how much."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    sc = scenario_file(tmp_path / "sc", "succeeded")
    ledger.set_budget(usd=Decimal("0.05"), period="none")
    result = cli("run", queue, "--max-usd", "5", "--simulate", sc, *FAST)
    assert result.code == 3
    estimate = json.loads(cli("estimate", queue, "--output", "json").out)
    needed = Decimal(estimate["totals"]["batch"]["max_usd"])
    limit = Decimal("0.05")
    shown = usd_together(needed, limit, limit, needed - limit, given=[limit])
    assert (
        f"needs {shown[0]}, but budget 'default' ({shown[1]}) has {shown[2]} left in total; "
        f"short by {shown[3]}"
    ) in result.err
    assert runs_dirs(home) == []
    assert [(r.status, r.counted) for r in ledger.runs()] == [("refused", 0)]


# --- racing processes ---------------------------------------------------------------------


@pytest.mark.slow
def test_racing_rehearsals_never_reserve_past_the_budget(
    tmp_path: Path, ledger: Ledger, home: Path, shipped_book: RateBook
) -> None:
    """Six `run --simulate --detach` race for a budget that fits three: three in, three exit 3.

    Rehearsals take the decision a real run would, and see each other's open reservations;
    none of it counts as real money (real runs racing: tests/test_team.py).
    """
    from costguard.queue.estimate import price_queue

    n, k = 6, 3
    sc = scenario_file(tmp_path / "sc", "slow", name="slow-held", time_scale=1)  # still open
    queues = []
    for i in range(n):
        queue = tmp_path / f"q{i}.jsonl"
        write_queue(queue, [dict(OPENAI_LINES[5], key=f"race-{i}", prompt=f"Racer {i:02d}")])
        queues.append(queue)
    maxima = {price_queue(q, shipped_book, AS_OF).estimate.total("batch").max for q in queues}  # type: ignore[union-attr]
    assert len(maxima) == 1
    (each,) = maxima
    budget = each * k + each / 2
    ledger.set_budget(usd=budget, period="none")
    env = cli_env(home)
    procs = [
        start(
            [
                "run",
                str(q),
                "--max-usd",
                "1",
                "--simulate",
                str(sc),
                "--out",
                str(tmp_path / f"o{i}"),
                "--detach",
                *FAST,
            ],
            env,
            tmp_path,
        )
        for i, q in enumerate(queues)
    ]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] * k + [3] * (n - k), [err for _, _, err in results]
    for code, _, err in results:
        if code == 3:
            assert "short by" in err
    runs = ledger.runs()
    admitted = [r for r in runs if r.status != "refused"]
    assert len(admitted) == k
    assert sum((r.estimate for r in admitted), Decimal(0)) <= budget
    assert all(r.rehearsal and r.open for r in admitted)
    status = ledger.status(at=admitted[0].created)
    assert (status.reserved, status.spent, status.remaining) == (0, 0, budget)


# --- bad input ------------------------------------------------------------------------------

BAD = {
    "invalid-json": [b'{"key": "a", "prompt": "x", "model": "gpt-image-2"}', b'{"key": "b",'],
    "unknown-model": [{"key": "a", "prompt": "x", "model": "gpt-image-9000"}],
    "duplicate-key": [
        {"key": "a", "prompt": "x", "model": "gpt-image-2"},
        {"key": "a", "prompt": "y", "model": "gemini-3.1-flash-image"},
    ],
}


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_bad_input_creates_no_job_no_run_and_reserves_nothing(
    bad: str,
    tmp_path: Path,
    cli: Callable[..., Any],
    ledger: Ledger,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad queue exits 2 before any provider call, run folder or reservation (real-key mode)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-key")
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, BAD[bad])
    with simulate("succeeded") as sim:
        result = cli("run", queue, "--max-usd", "5", *FAST)
    assert result.code == 2
    assert "nothing was priced" in result.err
    assert sim.calls.count() == 0
    assert sim.jobs == []
    assert runs_dirs(home) == []
    assert ledger.runs() == []


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_bad_input_under_simulate_leaves_no_run_folder(
    bad: str, tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path
) -> None:
    """With --simulate a bad queue exits 2 and leaves no run folder or simulator state."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, BAD[bad])
    result = cli("run", queue, "--max-usd", "5", "--simulate", "succeeded", *FAST)
    assert result.code == 2
    assert runs_dirs(home) == []
    assert ledger.runs() == []


# --- detach, timeout, status, runs, cancel, collect -------------------------------------------


@pytest.fixture
def slow(tmp_path: Path) -> Path:
    """A scenario whose jobs take about a wall second from creation."""
    return scenario_file(
        tmp_path / "sc", "slow", name="slow-1s", time_scale=15000,
        pending_s=7200, running_s=7200, finalizing_s=600,
    )  # fmt: skip


def test_detach_then_status_runs_and_collect(
    tmp_path: Path, cli: Callable[..., Any], slow: Path, ledger: Ledger
) -> None:
    """--detach exits 0 after submitting; status and runs show it; collect finishes it."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    out = tmp_path / "out"
    rid = run_id(queue, str(slow))
    result = cli(
        "run", queue, "--max-usd", "5", "--simulate", slow, "--out", out, "--detach", *FAST
    )
    assert result.code == 0, result.err
    assert f"detached: run {rid} keeps running" in result.err
    assert f"costguard collect {rid}" in result.err
    assert manifest(out) == []

    shown = cli("status", rid, "--wide")  # job ids: wider than 100 columns with the rest
    assert shown.code == 0
    assert f"run {rid}: submitted (batch, simulated {slow})" in shown.out
    assert "collected: nothing yet" in shown.out
    journal = RunDir(home_of(tmp_path) / "runs" / rid).load()
    for part in journal.parts:
        assert part.job_id is not None
        assert part.job_id in shown.out
        assert part.id in shown.out
    listed = cli("runs")
    assert listed.code == 0
    assert rid in listed.out
    assert "batch (sim)" in listed.out
    assert json.loads(cli("runs", "--output", "json").out)[0]["status"] == "submitted"
    run = ledger.run(rid)
    assert run is not None
    assert run.open
    assert run.reserved == Decimal(journal.estimate["max_usd"])

    done = cli("collect", rid, "--poll-interval", "0.05")
    assert done.code == 0, done.err
    assert f"run {rid}: ok 12" in done.out
    assert len(by_key(out)) == 12
    shown = cli("status", rid, "--output", "json")
    assert json.loads(shown.out)["status"] == "collected"
    assert json.loads(shown.out)["collected"] == {"ok": 12}
    assert "collected: ok 12" in cli("status", rid).out
    run = ledger.run(rid)
    assert run is not None
    assert (run.status, run.parts) == ("collected", 4)


def test_runs_lists_ok_and_not_ok_counts_and_the_actual_cost(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """`costguard runs` shows per run how many requests came back ok and not ok (a run whose
    jobs all failed is `collected` with 0 ok) and what it cost (the ledger's spend), within
    100 columns; the JSON has the same as `ok`, `not_ok` and `actual_usd`."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    ran = {}
    for scenario in ("refusals", "failed"):
        sc = scenario_file(tmp_path / "sc", scenario)
        out = tmp_path / scenario
        result = cli("run", queue, "--max-usd", "5", "--simulate", sc, "--out", out, *FAST)
        assert result.code == 7, result.err
        ran[run_id(queue, str(sc))] = manifest(out)
    listed = cli("runs")
    assert listed.code == 0
    assert textkit.widest(listed.out) <= 100
    wide = cli("runs", "--wide")
    header, _ = textkit.table(wide.out)
    assert header == [
        "run",
        "created (UTC)",
        "status",
        "mode",
        "requests",
        "ok",
        "not ok",
        "actual",
        "max",
        "queue",
    ]
    header, table = textkit.table(listed.out)
    shown = ["run", "status", "mode", "requests", "ok", "not ok", "actual", "max"]
    rows = [[row[header.index(name)] for name in shown] for row in table]
    as_json = {r["run"]: r for r in json.loads(cli("runs", "--output", "json").out)}
    for row in rows:
        lines = ran[row[0]]
        ok = sum(1 for line in lines if line["status"] == "ok")
        run = ledger.run(row[0])
        assert run is not None
        assert row[1:6] == ["collected", "batch (sim)", "12", f"{ok}", f"{12 - ok}"]
        maximum = Decimal(as_json[row[0]]["max_usd"])
        assert row[6:8] == usd_together(run.spent, maximum)
        assert (as_json[row[0]]["ok"], as_json[row[0]]["not_ok"]) == (ok, 12 - ok)
        assert Decimal(as_json[row[0]]["actual_usd"]) == run.spent
    failed = next(row for row in rows if row[4] == "0")
    assert (failed[1], failed[5]) == ("collected", "12")


def test_status_shows_money_by_the_display_rule(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """`status` shows the estimate and each part's cost as every other command does (to the
    cent, never two different amounts alike), not the journal's exact strings; within 100
    columns the job id is left out (--wide shows it); the provider's own state only with
    --verbose."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    sc = scenario_file(tmp_path / "sc", "succeeded")
    result = cli("run", queue, "--max-usd", "5", "--simulate", sc, "--out", tmp_path / "o", *FAST)
    assert result.code == 0, result.err
    rid = run_id(queue, str(sc))
    journal = RunDir(home_of(tmp_path) / "runs" / rid).load()
    shown = cli("status", rid)
    expected, maximum = usd_together(
        Decimal(journal.estimate["expected_usd"]), Decimal(journal.estimate["max_usd"])
    )
    assert f"estimate: expected {expected}, max {maximum}" in shown.out.splitlines()
    header, rows = textkit.table(shown.out)
    assert header == ["part", "requests", "state", "done", "failed", "cost"]
    assert [row[-1] for row in rows] == [usd(Decimal(p.cost_usd or "0")) for p in journal.parts]
    assert {row[2] for row in rows} == {"collected"}
    assert "(left out to fit 100 columns: job; --wide shows every column)" in shown.out
    wide = cli("status", rid, "--wide", "--verbose")
    header, rows = textkit.table(wide.out)
    assert header == [
        "part",
        "requests",
        "job",
        "state",
        "provider state",
        "done",
        "failed",
        "cost",
    ]
    assert {row[4] for row in rows} == {"completed", "JOB_STATE_SUCCEEDED"}


def test_timeout_exits_6_with_the_collect_hint(
    tmp_path: Path, cli: Callable[..., Any], slow: Path
) -> None:
    """--timeout stops waiting (exit 6) and says how to pick the run up; collect finishes it."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    rid = run_id(queue, str(slow))
    result = cli(
        "run",
        queue,
        "--max-usd",
        "5",
        "--simulate",
        slow,
        "--out",
        tmp_path / "o",
        "--timeout",
        "0",
        *FAST,
    )
    assert result.code == 6
    assert "--timeout 0s reached" in result.err
    assert f"pick it up with `costguard collect {rid}`" in result.err
    again = cli("run", queue, "--max-usd", "5", "--simulate", slow, "--out", tmp_path / "o", *FAST)
    assert again.code == 0, again.err
    assert f"resuming run {rid} (submitted)" in again.err


def test_cancel_a_detached_run_then_collect_reports_cancelled(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger
) -> None:
    """`cancel` asks the provider to stop every job; `collect` then reports them all cancelled."""
    slow = scenario_file(
        tmp_path / "sc", "slow", name="slow-15s", time_scale=1000,
        pending_s=7200, running_s=7200, finalizing_s=600,
    )  # fmt: skip  # jobs take ~15 wall seconds: `cancel` reaches them first on a busy machine
    queue = tmp_path / "queue.jsonl"
    raw = write_queue(queue, MIXED)
    out = tmp_path / "out"
    rid = run_id(queue, str(slow))
    assert (
        cli(
            "run", queue, "--max-usd", "5", "--simulate", slow, "--out", out, "--detach", *FAST
        ).code
        == 0
    )
    journal = RunDir(home_of(tmp_path) / "runs" / rid).load()
    cancelled = cli("cancel", rid)
    assert cancelled.code == 0, cancelled.err
    assert f"run {rid}: asked the provider to cancel" in cancelled.out
    assert all(part.job_id in cancelled.out for part in journal.parts)
    done = cli("collect", rid, "--poll-interval", "0.05")
    assert done.code == 7
    assert f"run {rid}: cancelled 12" in done.out
    assert {line["status"] for line in manifest(out)} == {"cancelled"}
    assert (out / "retry.jsonl").read_bytes() == b"".join(r + b"\n" for r in raw)
    run = ledger.run(rid)
    assert run is not None
    assert (run.status, run.spent, run.reserved) == ("collected", 0, 0)


def test_out_folder_of_another_run_is_refused_before_reserving(
    tmp_path: Path, cli: Callable[..., Any], ledger: Ledger, home: Path
) -> None:
    """--out naming another run's folder exits 2 and reserves nothing; so does a changed --out."""
    sc = scenario_file(tmp_path / "sc", "succeeded")
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_queue(first, OPENAI_LINES[:1])
    write_queue(second, OPENAI_LINES[1:2])
    out = tmp_path / "out"
    assert cli("run", first, "--max-usd", "5", "--simulate", sc, "--out", out, *FAST).code == 0
    taken = cli("run", second, "--max-usd", "5", "--simulate", sc, "--out", out, *FAST)
    assert taken.code == 2
    assert f"{out} holds the results of another run ({run_id(first, str(sc))} " in taken.err
    assert [r.run_id for r in ledger.runs()] == [run_id(first, str(sc))]
    assert [p.name for p in runs_dirs(home)] == [run_id(first, str(sc))]
    moved = cli(
        "run", first, "--max-usd", "5", "--simulate", sc, "--out", tmp_path / "elsewhere", *FAST
    )
    assert moved.code == 2
    assert f"already writes to {out}" in moved.err
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "manifest.jsonl").write_text("{}\n")
    stray = cli(
        "run", second, "--max-usd", "5", "--simulate", sc, "--out", tmp_path / "stray", *FAST
    )
    assert stray.code == 2
    assert "already has a manifest.jsonl from elsewhere" in stray.err
    assert len(ledger.runs()) == 1


def test_a_second_process_on_a_locked_run_gets_a_clear_error(
    tmp_path: Path, cli: Callable[..., Any], home: Path
) -> None:
    """While one process drives a run, `run` and `collect` on it elsewhere fail naming its pid."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[5:])
    sc = scenario_file(
        tmp_path / "sc", "succeeded", name="held-create", latency_s={"openai.batches.create": 30}
    )
    args = [
        "run", str(queue), "--max-usd", "5", "--simulate", str(sc), "--out", str(tmp_path / "o"),
        *FAST,
    ]  # fmt: skip
    rid = run_id(queue, str(sc))
    state = home / "runs" / rid / "simulator.json"
    proc = start(args, cli_env(home), tmp_path)
    try:
        wait_until("the job is created", lambda: bool((read_json(state) or {}).get("jobs")), proc)
        second = cli(*args)
        assert second.code == 2
        assert f"run {rid} is being driven by pid {proc.pid}; wait for it or stop it" in second.err
        collect = cli("collect", rid)
        assert collect.code == 2
        assert f"pid {proc.pid}" in collect.err
    finally:
        proc.kill()
        proc.communicate()
    # The holder died with the lock: the same command takes over and finishes the run.
    saved = json.loads(state.read_text(encoding="utf-8"))
    saved["scenario"]["latency_s"] = {}
    state.write_text(json.dumps(saved), encoding="utf-8")
    third = cli(*args)
    assert third.code == 0, third.err
    assert len(read_json(state)["jobs"]) == 1


# --- API keys -------------------------------------------------------------------------------

SECRETS = {"OPENAI_API_KEY": "sk-test-SECRET-123", "GEMINI_API_KEY": "AIza-SECRET-456"}


def test_no_api_key_in_any_file_written_by_a_real_mode_run(
    tmp_path: Path, cli: Callable[..., Any], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with real keys (answered by the simulator) writes neither key anywhere."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    out = tmp_path / "out"
    with simulate("refusals", api_keys=SECRETS.values(), time_scale=2_000_000) as sim:
        result = cli("run", queue, "--max-usd", "5", "--out", out, *FAST)
        assert cli("status", run_id(queue)).code == 0
    assert result.code == 7, result.err
    assert len(sim.jobs) == 4
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent == out for p in written)
    assert any(p.name == "journal.json" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in SECRETS.values():
            assert secret.encode() not in data, path
    for secret in SECRETS.values():
        assert secret not in result.out + result.err


def test_missing_key_names_the_variable_never_a_value_and_reserves_nothing(
    tmp_path: Path,
    cli: Callable[..., Any],
    home: Path,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a Gemini key the run exits 2 naming GEMINI_API_KEY, before reserving anything."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["OPENAI_API_KEY"])
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, MIXED)
    with simulate("succeeded") as sim:
        result = cli("run", queue, "--max-usd", "5", "--out", tmp_path / "out", *FAST)
    assert result.code == 2
    assert "no gemini API key: set GEMINI_API_KEY or GOOGLE_API_KEY" in result.err
    assert "SECRET" not in result.err + result.out
    assert sim.calls.count() == 0
    assert ledger.runs() == []
    assert runs_dirs(home) == []


# --- the real console script ----------------------------------------------------------------


def console_script() -> str:
    """The installed `costguard` script beside this interpreter."""
    path = Path(sys.executable).parent / "costguard"
    if not path.exists():
        pytest.skip(f"no console script at {path}")
    return str(path)


def test_console_script_runs_a_simulated_queue(tmp_path: Path, home: Path) -> None:
    """The installed `costguard` runs a bare `--simulate` queue to completion (exit 0)."""
    import subprocess

    queue = tmp_path / "queue.jsonl"
    write_queue(queue, LINES["openai"][:2])
    out = tmp_path / "out"
    proc = subprocess.run(
        [console_script(), "run", "--simulate", str(queue), "--max-usd", "1", "--out", str(out),
         *FAST],
        env=cli_env(home), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rid = run_id(queue, "succeeded")
    assert f"run {rid}: ok 2" in proc.stdout
    assert "batch saved $" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        ".costguard-run", "manifest.jsonl", "o-pair-1.png", "o-pair-2.png", "o-portrait.png",
        "report.html", "thumbs",
    ]  # fmt: skip
    listed = subprocess.run(
        [console_script(), "runs", "--output", "json"],
        env=cli_env(home), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [r["run"] for r in json.loads(listed.stdout)] == [rid]


def test_console_script_exit_7_and_collect_of_a_finished_run(tmp_path: Path, home: Path) -> None:
    """Refusals end with exit 7; `collect` of the finished run sends nothing and says the same."""
    import subprocess

    queue = tmp_path / "queue.jsonl"
    write_queue(queue, LINES["gemini"])
    sc = scenario_file(tmp_path / "sc", "refusals")
    argv = [console_script(), "run", str(queue), "--max-usd", "1", "--simulate", str(sc), *FAST]
    first = subprocess.run(
        argv,
        env=cli_env(home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 7, first.stderr
    assert "refused on safety grounds and left out of retry.jsonl" in first.stdout
    rid = run_id(queue, str(sc))
    state = home / "runs" / rid / "simulator.json"
    before = state.read_bytes()
    again = subprocess.run(
        [console_script(), "collect", rid],
        env=cli_env(home), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 7
    assert f"run {rid}: ok 5, refused 1" in again.stdout
    assert state.read_bytes() == before, "collect of a finished run made a provider call"


@pytest.mark.parametrize(
    "argv",
    [
        ("status", "run-000000000000"),
        ("status", "run-000000000000", "--output", "json"),
        ("collect", "run-000000000000"),
        ("cancel", "run-000000000000"),
        ("run", "--retry", "run-000000000000", "--max-usd", "1"),
    ],
    ids=["status", "status-json", "collect", "cancel", "retry"],
)
def test_an_unknown_run_is_exit_5(cli: Callable[..., Any], argv: tuple[str, ...]) -> None:
    """No such run is a ledger-side "not found" (exit 5, as --help says), in one line."""
    result = cli(*argv)
    assert result.code == 5
    assert result.err.strip().splitlines() == [
        f"error: no run 'run-000000000000' under {home_dir() / 'runs'} (see `costguard runs`)"
    ]


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-raw"])
def test_raw_files_are_deleted_once_collected(
    tmp_path: Path, cli: Callable[..., Any], keep: bool
) -> None:
    """The run folder keeps bookkeeping only: each part's job input and downloaded result files
    go once it is collected, unless --keep-raw."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, [*OPENAI_LINES, *GEMINI_LINES])
    flag = ("--keep-raw",) if keep else ()
    result = cli(
        "run", queue, "--max-usd", "5", "--simulate", *FAST, "--out", tmp_path / "o", *flag
    )
    assert result.code == 0, result.err
    rundir = home_dir() / "runs" / run_id(queue, "succeeded")
    raw = sorted(p.name for p in rundir.glob("parts/*/*"))
    if keep:
        assert {"input.jsonl", "output.jsonl"} <= set(raw)
    else:
        assert raw == []
        kept = [
            p
            for p in rundir.rglob("*")
            if p.is_file() and not str(p.relative_to(rundir)).startswith("simulator")
        ]
        assert sorted(p.name for p in kept) == ["journal.json", "lock"]
    assert len(manifest(tmp_path / "o")) == len(OPENAI_LINES) + len(GEMINI_LINES)


def test_a_misspelt_scenario_after_simulate_is_named(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """`--simulate realistc` is an unknown scenario (exit 2, the built-in names listed), not
    a stray argument; a queue right after --simulate is still the queue."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:1])
    result = cli("run", queue, "--max-usd", "1", "--simulate", "realistc", *FAST)
    assert result.code == 2
    assert "unknown scenario 'realistc'; built-in scenarios: " in result.err
    assert not (tmp_path / "costguard-out").exists()
    ran = cli("run", "--simulate", queue, "--max-usd", "1", *FAST, "--out", tmp_path / "o")
    assert ran.code == 0, ran.err


@pytest.mark.parametrize(
    ("spelling", "named", "why"),
    [
        pytest.param(["--simulate", "bogus", "QUEUE"], "bogus", "", id="before-the-queue"),
        pytest.param(["QUEUE", "--simulate", "bogus"], "bogus", "", id="after-the-queue"),
        pytest.param(["QUEUE", "--simulate=bogus"], "bogus", "", id="equals"),
        pytest.param(
            ["--simulate", "MISSING", "QUEUE"], "MISSING", ": no such file", id="missing-yaml"
        ),
        pytest.param(
            ["QUEUE", "--simulate", "FOLDER"],
            "FOLDER",
            ": a folder, but no recording (it has no recording.yaml)",
            id="folder",
        ),
    ],
)
def test_an_unknown_scenario_is_named_however_it_is_spelt(
    tmp_path: Path, cli: Callable[..., Any], spelling: list[str], named: str, why: str
) -> None:
    """Every spelling of `--simulate X` with an unknown X exits 2 with `unknown scenario X;
    built-in scenarios: ...` (with --output json: kind `unknown_scenario` and the names)."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES[:1])
    (tmp_path / "folder").mkdir()
    places = {
        "QUEUE": str(queue),
        "MISSING": str(tmp_path / "nope.yaml"),
        "FOLDER": str(tmp_path / "folder"),
    }
    argv = [places.get(a, a.replace("MISSING", places["MISSING"])) for a in spelling]
    scenario = places.get(named, named)
    result = cli("run", *argv, "--max-usd", "1", *FAST)
    assert result.code == 2
    assert result.err == (
        f"error: unknown scenario {scenario!r}{why}; built-in scenarios: cancelled, expired, "
        "failed, flaky, quota, realistic, refusals, shuffled, slow, succeeded\n"
    )
    as_json = cli("run", *argv, "--max-usd", "1", "--output", "json", *FAST)
    error = json.loads(as_json.out)["error"]
    assert (error["code"], error["kind"], error["scenario"]) == (2, "unknown_scenario", scenario)
    assert "succeeded" in error["known"]
    assert not (tmp_path / "costguard-out").exists()


def test_run_refuses_a_queue_on_stdin_in_one_line(
    cli: Callable[..., Any], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run -` is exit 2 before stdin is read: a run must re-read its queue file later."""
    monkeypatch.setattr(sys, "stdin", None)  # reading it would fail the test loudly
    result = cli("run", "-", "--max-usd", "1", "--simulate")
    assert result.code == 2
    assert result.err.strip() == (
        "error: run reads a queue file, not stdin ('-'): a run re-reads its queue to resume, "
        "collect and retry; save it first (... > queue.jsonl) and run that file"
    )
    assert runs_dirs(home) == []
