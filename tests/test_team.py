"""Team budgets: many `costguard` processes, on "different machines", sharing one ledger.

A "machine" here is a process environment of its own: its own COSTGUARD_HOME (so its own run
folders and default ledger file), sharing with the others only COSTGUARD_LEDGER_URL (and, for
real provider traffic, one `costguard simulate serve` upstream that stands in for the API).

- Sixteen `costguard run` processes race for a budget that fits exactly k of their runs, on
  both back ends: exactly k exit 0 and hold their reservation, the rest exit 3, and the
  reservations never pass the budget at any moment; on PostgreSQL, also with the server
  restarted in the middle of the race.
- A run submitted on one machine is collected on another (`costguard collect RUN --queue
  --out`), its journal and lock living in the shared ledger.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.options import RunOptions, run_id_for
from costguard.ledger import Ledger, open_ledger
from costguard.pricing.engine import RateBook
from costguard.queue.estimate import price_queue
from ledger_backends import BACKENDS, raw
from pgserver import PgServer
from runkit import (
    AS_OF,
    OPENAI_LINES,
    cli_env,
    finish,
    manifest,
    scenario_file,
    start,
    write_queue,
)
from sim_cli import serve_process

FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]
DUMMY_KEYS = {"OPENAI_API_KEY": "sk-team-test", "GEMINI_API_KEY": "team-test"}
"""Keys the simulator accepts (any key); real keys are never in these environments."""


def slow_scenario(folder: Path, seconds: float = 1.0) -> Path:
    """Jobs that take about `seconds` of wall time from creation (--detach leaves them open)."""
    return scenario_file(
        folder,
        "slow",
        name=f"slow-{seconds:g}s",
        time_scale=15000 / seconds,
        pending_s=7200,
        running_s=7200,
        finalizing_s=600,
    )


def racing_queues(folder: Path, n: int, book: RateBook) -> tuple[list[Path], Decimal]:
    """`n` one-line queues (distinct run ids) with the same maximum cost; that cost."""
    queues = []
    for i in range(n):
        queue = folder / f"q{i:02d}.jsonl"
        write_queue(queue, [dict(OPENAI_LINES[0], key=f"racer-{i:02d}")])
        queues.append(queue)
    maxima = {price_queue(q, book, AS_OF).estimate.total("batch").max for q in queues}  # type: ignore[union-attr]
    assert len(maxima) == 1
    return queues, maxima.pop()


class Watch:
    """Samples a budget from its own connection while a race runs; keeps the worst moment."""

    def __init__(self, location: str, budget: str) -> None:
        self.location, self.budget = location, budget
        self.samples: list[tuple[Decimal, Decimal]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from costguard.errors import LedgerError

        with open_ledger(self.location) as ledger:
            while not self._stop.is_set():
                try:
                    status = ledger.status(self.budget, at=_now())
                except LedgerError as exc:  # the server is restarting: keep watching
                    self.errors.append(str(exc))
                    continue
                self.samples.append((status.reserved + status.spent, status.limit))
                time.sleep(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _race(
    tmp_path: Path,
    location: str,
    shipped_book: RateBook,
    *,
    n: int = 16,
    k: int = 5,
    during: Any = None,
) -> tuple[list[tuple[int, str, str]], Decimal, Decimal]:
    """Race `n` `costguard run --detach` processes, each its own machine, for room for `k`."""
    queues, each = racing_queues(tmp_path / "queues", n, shipped_book)
    budget = each * k + each / 2
    with open_ledger(location) as ledger:
        ledger.set_budget("team-covers", usd=budget, period="month")
    shared = (
        {"COSTGUARD_LEDGER_URL": location}
        if location.startswith("postgresql://")
        else {"COSTGUARD_LEDGER": location}
    )
    # Real runs against a served API (rehearsals, `--simulate`, never count as real money);
    # its jobs take 60 s, so they are still running when --detach returns.
    with serving(tmp_path / "api", 60.0) as api, Watch(location, "team-covers") as watch:
        shared = {**shared, **api}
        procs = [
            start(
                [
                    "run",
                    str(queue),
                    "--max-usd",
                    "1",
                    "--detach",
                    "--budget",
                    "team-covers",
                    "--owner",
                    f"runner-{i:02d}",
                    "--out",
                    str(tmp_path / f"out{i:02d}"),
                    *FAST,
                ],
                cli_env(tmp_path / f"machine{i:02d}", **shared),
                tmp_path,
            )
            for i, queue in enumerate(queues)
        ]
        if during is not None:
            during()
        results = [finish(p, timeout=240) for p in procs]
    worst = max((used - limit for used, limit in watch.samples), default=None)
    assert watch.samples, watch.errors
    assert worst is not None
    assert worst <= 0, f"reservations passed the budget by {worst} at some moment"
    return results, each, budget


def _check_race(
    results: list[tuple[int, str, str]], location: str, each: Decimal, budget: Decimal, k: int
) -> list[Any]:
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] * k + [3] * (len(results) - k), [err[-600:] for _, _, err in results]
    for code, _, err in results:
        if code == 3:
            assert "over budget" in err
            assert "short by" in err
        else:
            assert "detached: run" in err
    with open_ledger(location) as ledger:
        runs = ledger.history(budget="team-covers")
        status = ledger.status("team-covers", at=_now())
    admitted = [r for r in runs if r.status == "open"]
    assert len(admitted) == k
    assert len(runs) == len(results)
    assert {r.status for r in runs} == {"open", "refused"}
    assert sum((r.estimate for r in admitted), Decimal(0)) == each * k <= budget
    assert (status.reserved, status.open_runs) == (each * k, k)
    assert {u.owner for u in status.owners} == {r.owner for r in admitted}
    return admitted


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_sixteen_runners_race_for_one_budget(
    tmp_path: Path, shipped_book: RateBook, backend: str, request: pytest.FixtureRequest
) -> None:
    """16 processes, room for 5: exactly 5 are admitted (exit 0), 11 exit 3, never over."""
    location = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else str(tmp_path / "team" / "ledger.sqlite3")
    )
    results, each, budget = _race(tmp_path, location, shipped_book)
    admitted = _check_race(results, location, each, budget, 5)
    if backend == "postgresql":
        journals = raw(location, "SELECT run_id, data->>'status' FROM journals ORDER BY run_id")
        assert journals == sorted((r.run_id, "submitted") for r in admitted)
        assert not list(tmp_path.glob("machine*/runs/*/journal.json"))


@pytest.mark.slow
def test_a_server_restart_in_the_middle_of_the_race(
    tmp_path: Path, shipped_book: RateBook, own_pg_server: PgServer
) -> None:
    """The same race with PostgreSQL restarted once admissions have begun: every process
    retries or is refused cleanly; still exactly k admitted, nothing half-written."""
    location = own_pg_server.create_database()
    restarted: list[float] = []

    def restart_when_the_first_run_is_in() -> None:
        deadline = time.monotonic() + 120
        while not raw(location, "SELECT 1 FROM runs LIMIT 1"):
            assert time.monotonic() < deadline, "no process got to its admission"
            time.sleep(0.02)
        own_pg_server.restart("fast", pause=0.5)
        restarted.append(time.monotonic())

    results, each, budget = _race(
        tmp_path, location, shipped_book, during=restart_when_the_first_run_is_in
    )
    assert restarted
    admitted = _check_race(results, location, each, budget, 5)
    rows = raw(location, "SELECT run_id, data->>'status' FROM journals ORDER BY run_id")
    assert rows == sorted((r.run_id, "submitted") for r in admitted)


# --- one run, two machines -----------------------------------------------------------------


@contextlib.contextmanager
def serving(folder: Path, seconds: float) -> Iterator[dict[str, str]]:
    """One simulated provider API whose jobs take `seconds`; the environment to reach it."""
    scenario = slow_scenario(folder / "sc", seconds)
    state = folder / f"sim-{seconds:g}.json"
    with serve_process("--scenario", str(scenario), "--state", str(state)) as (base_url, _):
        yield {
            "OPENAI_BASE_URL": f"{base_url}/v1",
            "GOOGLE_GEMINI_BASE_URL": base_url,
            **DUMMY_KEYS,
        }


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The API both machines talk to (as they would to the real one); jobs take 3 s, so a
    detached submission leaves them running even on a busy machine."""
    with serving(tmp_path, 3.0) as env:
        yield env


def machine(tmp_path: Path, name: str, url: str, upstream: dict[str, str]) -> dict[str, str]:
    """The environment of one machine: its own home; the ledger URL and API are shared."""
    return cli_env(tmp_path / name / "home", COSTGUARD_LEDGER_URL=url, **upstream)


LINES = [dict(OPENAI_LINES[0], key=f"cover-{i}") for i in range(3)]


@pytest.mark.slow
def test_a_run_submitted_on_one_machine_is_collected_on_another(
    tmp_path: Path, pg_url: str, upstream: dict[str, str]
) -> None:
    """Machine A submits and detaches; machine B, sharing only the ledger URL (and the API),
    finds the run's journal in the ledger, takes its lock, collects it into its own folder and
    settles it; both see one budget."""
    a = machine(tmp_path, "a", pg_url, upstream)
    b = machine(tmp_path, "b", pg_url, upstream)
    queue_a = tmp_path / "a" / "work" / "covers.jsonl"
    write_queue(queue_a, LINES)
    with open_ledger(pg_url) as ledger:
        ledger.set_budget("team-covers", usd=Decimal("5"), period="month")
    submitted = finish(
        start(
            [
                "run",
                str(queue_a),
                "--max-usd",
                "5",
                "--detach",
                "--budget",
                "team-covers",
                "--owner",
                "alice@a",
                "--out",
                str(tmp_path / "a" / "out"),
                *FAST,
            ],
            a,
            tmp_path / "a",
        )
    )
    assert submitted[0] == 0, submitted[2]
    rid = run_id_for(RunOptions(queue_a, Decimal(0)))
    assert f"detached: run {rid} keeps running" in submitted[2]
    assert not (tmp_path / "a" / "home" / "runs" / rid / "journal.json").exists()

    # On B the queue lives elsewhere; A's copy is gone (as if on another disk).
    queue_b = tmp_path / "b" / "checkout" / "covers.jsonl"
    queue_b.parent.mkdir(parents=True)
    shutil.move(queue_a, queue_b)
    listed = finish(start(["runs", "--output", "json"], b, tmp_path / "b"))
    assert [r["run"] for r in json.loads(listed[1])] == [rid]
    shown = finish(start(["status", rid], b, tmp_path / "b"))
    assert shown[0] == 0, shown[2]
    assert f"run {rid}: submitted (batch)" in shown[1]

    lost = finish(start(["collect", rid, *FAST[:2]], b, tmp_path / "b"))
    assert lost[0] == 2
    assert "give it with --queue" in lost[2]

    out_b = tmp_path / "b" / "out"
    collected = finish(
        start(
            ["collect", rid, "--queue", str(queue_b), "--out", str(out_b), *FAST[:2]],
            b,
            tmp_path / "b",
        )
    )
    assert collected[0] == 0, collected[2]
    assert sorted(line["key"] for line in manifest(out_b)) == [line["key"] for line in LINES]
    assert {line["status"] for line in manifest(out_b)} == {"ok"}
    assert not (tmp_path / "a" / "out" / "manifest.jsonl").read_text()

    with open_ledger(pg_url) as ledger:
        run = ledger.run(rid)
        assert run is not None
        assert (run.status, run.owner, run.budget) == ("collected", "alice@a", "team-covers")
        assert run.spent > 0
        assert run.parts == 1
        journal = raw(pg_url, "SELECT data FROM journals WHERE run_id = ?", (rid,))[0][0]
        assert (journal["status"], journal["queue"], journal["out"]) == (
            "collected",
            str(queue_b),
            str(out_b),
        )
        assert journal["parts"][0]["cost_usd"] == str(run.spent)
    shown_a = finish(start(["budget", "show", "--output", "json"], a, tmp_path / "a"))
    [budget] = json.loads(shown_a[1])["budgets"]
    assert budget["spent"] == str(run.spent)
    assert budget["owners"][0]["owner"] == "alice@a"
    history = finish(start(["ledger", "history", "--output", "json"], b, tmp_path / "b"))
    [entry] = json.loads(history[1])["runs"]
    assert (entry["run_id"], entry["status"], entry["actual_usd"]) == (
        rid,
        "collected",
        str(run.spent),
    )
    assert entry["rate_cards"]


@pytest.mark.slow
def test_a_run_driven_on_one_machine_is_busy_for_the_other(tmp_path: Path, pg_url: str) -> None:
    """While A drives a run (waiting on its jobs), B's collect is refused, naming A; once A
    dies (kill -9), the server drops A's lock and B can take the run over."""
    with serving(tmp_path, 120.0) as upstream:
        a = machine(tmp_path, "a", pg_url, upstream)
        b = machine(tmp_path, "b", pg_url, upstream)
        queue = tmp_path / "covers.jsonl"
        write_queue(queue, LINES)
        open_ledger(pg_url).close()  # the schema exists before the test looks for journals
        driver = start(
            ["run", str(queue), "--max-usd", "5", "--out", str(tmp_path / "out-a"),
             "--poll-interval", "0.2", "--as-of", AS_OF.isoformat()],
            a,
            tmp_path,
        )  # fmt: skip
        rid = run_id_for(RunOptions(queue, Decimal(0)))
        try:
            deadline = time.monotonic() + 60
            while not raw(pg_url, "SELECT 1 FROM journals WHERE data->>'status' = 'submitted'"):
                assert driver.poll() is None, driver.communicate()[1]
                assert time.monotonic() < deadline
                time.sleep(0.02)
            busy = finish(start(["collect", rid], b, tmp_path))
        finally:
            driver.kill()
            finish(driver)
        assert busy[0] == 2
        assert f"run {rid} is being driven by costguard " in busy[2]
        assert f"pid {driver.pid}" in busy[2]
        taken = finish(start(["collect", rid, "--timeout", "0.3", *FAST[:2]], b, tmp_path))
        assert taken[0] == 6, taken[2]
        assert "--timeout 0.3s reached" in taken[2]


def test_costguard_ledger_history_and_export_on_a_shared_ledger(
    tmp_path: Path, pg_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """history and export read the shared ledger named by COSTGUARD_LEDGER_URL."""
    monkeypatch.setenv("COSTGUARD_LEDGER_URL", pg_url)
    with open_ledger(pg_url) as ledger:
        assert isinstance(ledger, Ledger)
        ledger.admit("r1", Decimal("2"), owner="ci:nightly", at=_now(), meta={"rate_cards": ["x"]})
        ledger.record_spend("r1", "p1", Decimal("1.25"), at=_now())
    result = cli("ledger", "export")
    assert result.code == 0, result.err
    header, line = result.out.splitlines()
    assert header.startswith("recorded,run_id,part_id,amount_usd,budget,owner")
    assert ",r1,p1,1.25,default,ci:nightly,open,x," in line
