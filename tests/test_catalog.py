"""Runs found by a unique prefix or `last`, and finished runs removed (`runs rm`, `runs prune`).

Most tests save journals directly (`RunDir.save`), which is all `run/catalog.py` reads; the
end-to-end ones drive real simulated runs through the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.catalog import resolve, why_kept
from costguard.execution.journal import Journal, Part
from costguard.execution.rundir import RunDir
from costguard.ledger import Ledger, open_ledger
from runkit import AS_OF, GEMINI_LINES, OPENAI_LINES, manifest, scenario_file, write_queue

FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """COSTGUARD_HOME as the autouse fixture set it."""
    return tmp_path / "costguard-home"


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    """The ledger the CLI uses by default (`<home>/ledger.sqlite3`), opened by the test."""
    home.mkdir(parents=True, exist_ok=True)
    with open_ledger(home / "ledger.sqlite3") as opened:
        yield opened


def journal(
    run_id: str,
    *,
    age: dt.timedelta = dt.timedelta(hours=1),
    status: str = "collected",
    part: str = "collected",
    job_id: str | None = "batch_1",
    job_state: str | None = "terminal:succeeded",
    out: Path | None = None,
) -> Journal:
    """A journal with one part, as `RunDir` saves it."""
    return Journal(
        run_id=run_id,
        created=(NOW - age).isoformat(),
        queue="/queues/q.jsonl",
        queue_sha256="0" * 64,
        queue_format="costguard",
        mode="batch",
        as_of=AS_OF.isoformat(),
        out=str(out or Path("/outputs") / run_id),
        options={},
        estimate={"requests": 1, "expected_usd": "0.01", "max_usd": "0.02"},
        rate_cards=[],
        status=status,
        parts=[
            Part(
                id="gpt-image-2-1",
                provider="openai",
                model="gpt-image-2",
                endpoint="/v1/images/generations",
                requests=1,
                tag=f"costguard-{run_id}-1",
                state=part,
                job_id=job_id,
                job_state=job_state,
            )
        ],
    )


def save(home: Path, *journals: Journal) -> None:
    """Write each journal to its run folder under `home`."""
    for one in journals:
        RunDir(home / "runs" / one.run_id).save(one)


IN_FLIGHT: dict[str, Any] = {"status": "submitted", "part": "submitted", "job_state": None}


# --- run ids by prefix and `last` -------------------------------------------------------------


def test_a_unique_prefix_names_the_run_with_or_without_run_(
    home: Path, cli: Callable[..., Any]
) -> None:
    """`status run-aaaa` and `status bbbb` find the one run each prefix matches."""
    save(home, journal("run-aaaa11112222"), journal("run-bbbb33334444"))
    assert "run run-aaaa11112222: collected" in cli("status", "run-aaaa").out
    assert "run run-bbbb33334444: collected" in cli("status", "bbbb").out
    assert resolve("run-aaaa11112222", home, None) == "run-aaaa11112222"


def test_an_ambiguous_prefix_exits_2_naming_the_runs_it_matches(
    home: Path, cli: Callable[..., Any]
) -> None:
    """Two runs starting with the prefix: exit 2, one line naming both (newest first)."""
    save(
        home,
        journal("run-ab1111111111", age=dt.timedelta(hours=2)),
        journal("run-ab2222222222", **IN_FLIGHT),
        journal("run-cd3333333333"),
    )
    result = cli("status", "run-ab")
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert line.startswith(f"error: run 'run-ab' is ambiguous: 2 runs under {home / 'runs'}")
    assert line.index("run-ab2222222222 (") < line.index("run-ab1111111111 (")
    assert "submitted" in line
    assert "run-cd" not in line


@pytest.mark.parametrize("command", ["status", "collect", "cancel"])
def test_an_unknown_prefix_exits_5(home: Path, cli: Callable[..., Any], command: str) -> None:
    """No run starts with it: the same exit 5 and message as an unknown run id."""
    save(home, journal("run-aaaa11112222"))
    result = cli(command, "run-zz")
    assert result.code == 5
    assert result.err.strip() == (
        f"error: no run 'run-zz' under {home / 'runs'} (see `costguard runs`)"
    )


def test_last_is_the_run_started_most_recently(home: Path, cli: Callable[..., Any]) -> None:
    """`last` follows the journals' start times, not names; with no runs it is exit 5."""
    none = cli("status", "last")
    assert none.code == 5
    assert "no runs yet under" in none.err
    save(
        home,
        journal("run-ffff00000000", age=dt.timedelta(days=2)),
        journal("run-0000ffffffff", age=dt.timedelta(minutes=5)),
    )
    assert "run run-0000ffffffff:" in cli("status", "last").out


def test_run_arguments_complete_from_this_homes_runs(home: Path) -> None:
    """Shell completion of RUN offers run ids starting with what was typed, and `last`."""
    from costguard.cli.common import complete_run

    save(home, journal("run-aaaa11112222"), journal("run-bbbb33334444"))
    assert [value for value, _ in complete_run("run-a")] == ["run-aaaa11112222"]
    assert [value for value, _ in complete_run("")] == [
        "run-bbbb33334444",
        "run-aaaa11112222",
        "last",
    ]


def test_cancel_collect_and_retry_take_prefixes_and_last(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A detached run is cancelled by prefix, collected as `last`, and retried by prefix."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, OPENAI_LINES)
    slow = scenario_file(
        tmp_path / "sc", "slow", name="slow-1s", time_scale=15000,
        pending_s=7200, running_s=7200, finalizing_s=600,
    )  # fmt: skip
    started = cli(
        "run", queue, "--max-usd", "5", "--simulate", slow, "--out", tmp_path / "o", "--detach",
        *FAST,
    )  # fmt: skip
    assert started.code == 0, started.err
    [rid] = [p.name for p in (tmp_path / "costguard-home" / "runs").iterdir()]
    cancelled = cli("cancel", rid.removeprefix("run-")[:5])
    assert cancelled.code == 0, cancelled.err
    assert f"run {rid}: asked the provider to cancel" in cancelled.out
    collected = cli("collect", "last", "--poll-interval", "0.05")
    assert collected.code == 7
    assert f"run {rid}: cancelled" in collected.out
    retried = cli("run", "--retry", rid[:8], "--max-usd", "5", "--detach", *FAST)
    assert retried.code == 0, retried.err
    assert "new run run-" in retried.err


# --- what is finished -------------------------------------------------------------------------


def test_a_run_is_finished_once_collected_or_released(ledger: Ledger) -> None:
    """Collected (also after a cancel) and released runs may go; anything in flight stays."""
    assert why_kept(journal("run-1"), None) is None
    cancelled = journal("run-2", job_state="terminal:cancelled")
    assert why_kept(cancelled, None) is None
    running = why_kept(journal("run-3", **IN_FLIGHT), None)
    assert running is not None
    assert running.startswith("still running at the provider (gpt-image-2-1)")
    finished_job = journal("run-4", status="submitted", part="submitted")
    assert "not every part is collected yet (submitted)" in (why_kept(finished_job, None) or "")

    planned = journal("run-5", status="planned", part="planned", job_id=None, job_state=None)
    assert "not admitted yet" in (why_kept(planned, None) or "")
    ledger.admit("run-5", Decimal(1), owner="t", at=NOW)
    assert "admitted by the ledger" in (why_kept(planned, ledger.run("run-5")) or "")
    ledger.release("run-5", at=NOW, reason="nothing accepted")
    assert why_kept(planned, ledger.run("run-5")) is None


# --- runs rm ----------------------------------------------------------------------------------


def test_rm_removes_named_finished_runs_by_prefix_and_last(
    home: Path, cli: Callable[..., Any], tmp_path: Path
) -> None:
    """`runs rm` deletes journals and run folders; the output folder is never touched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"\x89PNG")
    save(
        home,
        journal("run-aaaa11112222", out=out, age=dt.timedelta(days=1)),
        journal("run-bbbb33334444"),
        journal("run-cccc55556666", age=dt.timedelta(days=3)),
    )
    dry = cli("runs", "rm", "aaaa", "last", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[0].startswith("would remove run-aaaa11112222 (")
    assert "would remove 2 finished runs" in dry.out
    assert len(list((home / "runs").iterdir())) == 3

    done = cli("runs", "rm", "aaaa", "last")
    assert done.code == 0, done.err
    assert "removed run-aaaa11112222 (" in done.out
    assert f"images stay in {out}" in done.out
    assert "removed 2 finished runs (journal and run folder); their output folders" in done.out
    assert [p.name for p in (home / "runs").iterdir()] == ["run-cccc55556666"]
    assert (out / "a.png").read_bytes() == b"\x89PNG"


def test_rm_of_a_run_in_flight_removes_nothing(home: Path, cli: Callable[..., Any]) -> None:
    """Naming one unfinished run refuses the whole command (exit 2), saying why."""
    save(home, journal("run-aaaa11112222"), journal("run-bbbb33334444", **IN_FLIGHT))
    result = cli("runs", "rm", "run-aaaa", "run-bbbb")
    assert result.code == 2
    assert "error: run run-bbbb33334444 is not finished: still running at the provider" in (
        result.err
    )
    assert "removed nothing: 1 of the runs named is not finished" in result.err
    assert len(list((home / "runs").iterdir())) == 2


def test_rm_of_a_run_another_process_holds_is_refused(home: Path, cli: Callable[..., Any]) -> None:
    """A run whose lock is held (being collected elsewhere) is not removed."""
    save(home, journal("run-aaaa11112222"))
    holder = RunDir(home / "runs" / "run-aaaa11112222")
    holder.lock()
    try:
        result = cli("runs", "rm", "run-aaaa11112222")
    finally:
        holder.unlock()
    assert result.code == 2
    assert "is being driven by pid" in result.err
    assert (home / "runs" / "run-aaaa11112222" / "journal.json").is_file()


# --- runs prune -------------------------------------------------------------------------------


@pytest.mark.parametrize("older_than", ["30d", "4w", "2000h", "DATE"])
def test_prune_removes_finished_runs_started_before_the_cutoff(
    home: Path, cli: Callable[..., Any], older_than: str
) -> None:
    """Spans and dates both work; recent runs and runs in flight stay, listed with why."""
    cutoff = (NOW - dt.timedelta(days=20)).date().isoformat()
    save(
        home,
        journal("run-old0finished", age=dt.timedelta(days=90)),
        journal("run-old0inflight", age=dt.timedelta(days=90), **IN_FLIGHT),
        journal("run-new0finished", age=dt.timedelta(days=1)),
    )
    result = cli("runs", "prune", cutoff if older_than == "DATE" else older_than)
    assert result.code == 0, result.err
    assert "removed run-old0finished (" in result.out
    assert "kept run-old0inflight (" in result.out
    assert "still running at the provider" in result.out
    assert "removed 1 finished run (journal and run folder)" in result.out
    left = sorted(p.name for p in (home / "runs").iterdir())
    assert left == ["run-new0finished", "run-old0inflight"]
    assert not (home / "ledger.sqlite3").exists()  # reading which runs went creates no ledger


def test_prune_json_and_a_bad_cutoff(home: Path, cli: Callable[..., Any]) -> None:
    """--output json lists removed and kept runs; an unreadable OLDER_THAN is exit 2."""
    save(home, journal("run-aaaa11112222"), journal("run-bbbb33334444", **IN_FLIGHT))
    report = json.loads(cli("runs", "prune", "0d", "--dry-run", "--output", "json").out)
    assert report["dry_run"] is True
    assert [r["run"] for r in report["removed"]] == ["run-aaaa11112222"]
    assert report["removed"][0]["status"] == "collected"
    assert [(k["run"], k["status"]) for k in report["kept"]] == [("run-bbbb33334444", "submitted")]
    bad = cli("runs", "prune", "last month")
    assert bad.code == 2
    assert "OLDER_THAN: 'last month' is not an ISO date or time or a span like 7d" in bad.err


def test_prune_after_real_runs_keeps_images_ledger_and_never_resends(
    tmp_path: Path, home: Path, cli: Callable[..., Any]
) -> None:
    """A collected run goes, a detached one stays; images, spend and history stay; running the
    pruned command again sends nothing."""
    done_queue, open_queue = tmp_path / "done.jsonl", tmp_path / "open.jsonl"
    write_queue(done_queue, OPENAI_LINES)
    write_queue(open_queue, GEMINI_LINES)
    fast = scenario_file(tmp_path / "sc", "succeeded")
    slow = scenario_file(
        tmp_path / "sc", "slow", name="slow-1s", time_scale=15000,
        pending_s=7200, running_s=7200, finalizing_s=600,
    )  # fmt: skip
    out = tmp_path / "done-out"
    argv = ("run", done_queue, "--max-usd", "5", "--simulate", fast, "--out", out, *FAST)
    assert cli(*argv).code == 0
    detached = cli(
        "run", open_queue, "--max-usd", "5", "--simulate", slow, "--out", tmp_path / "open-out",
        "--detach", *FAST,
    )  # fmt: skip
    assert detached.code == 0, detached.err
    runs = {j["status"]: j["run"] for j in json.loads(cli("runs", "--output", "json").out)}
    done, in_flight = runs["collected"], runs["submitted"]
    images = sorted(p.name for p in out.iterdir())

    pruned = cli("runs", "prune", "0d")
    assert pruned.code == 0, pruned.err
    assert f"removed {done} (" in pruned.out
    assert f"kept {in_flight} (" in pruned.out
    assert not (home / "runs" / done).exists()
    assert (home / "runs" / in_flight / "journal.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == images
    assert len(manifest(out)) == len(OPENAI_LINES)
    with open_ledger(home / "ledger.sqlite3") as book:
        record = book.run(done)
        assert record is not None
        assert (record.status, record.spent > 0) == ("collected", True)
    assert done in cli("ledger", "history").out
    assert cli("status", done).code == 5

    again = cli(*argv)
    assert again.code == 2
    assert "holds the results of another run" in again.err  # its own, before the prune
    elsewhere = cli(*argv[: -len(FAST) - 2], "--out", tmp_path / "elsewhere", *FAST)
    assert elsewhere.code == 5  # the ledger has the run closed: it is never admitted twice
    assert f"run {done!r} is already closed (collected)" in elsewhere.err
    assert not (home / "runs" / done).exists()
    with open_ledger(home / "ledger.sqlite3") as book:
        assert book.run(done) == record


@pytest.mark.usefixtures("pg_server")
def test_prune_with_a_shared_ledger_deletes_journal_rows_not_history(
    pg_url: str, home: Path, cli: Callable[..., Any]
) -> None:
    """With PostgreSQL, a finished run's journal row goes; its run record and spend stay."""
    with open_ledger(pg_url) as book:
        store = book.journals
        assert store is not None
        for one in (journal("run-aaaa11112222"), journal("run-bbbb33334444", **IN_FLIGHT)):
            store.write_journal(one.run_id, _as_dict(one))
        book.admit("run-aaaa11112222", Decimal(1), owner="t", at=NOW)
        book.settle("run-aaaa11112222", status="collected", at=NOW)
    result = cli("runs", "--ledger", pg_url, "prune", "0d")
    assert result.code == 0, result.err
    assert "removed run-aaaa11112222 (" in result.out
    assert "kept run-bbbb33334444 (" in result.out
    with open_ledger(pg_url) as book:
        store = book.journals
        assert store is not None
        assert store.read_journal("run-aaaa11112222") is None
        assert store.read_journal("run-bbbb33334444") is not None
        record = book.run("run-aaaa11112222")
        assert record is not None
        assert record.status == "collected"


def _as_dict(one: Journal) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(one)
