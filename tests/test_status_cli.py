"""`costguard status RUN`: the journal, and the provider asked about unfinished jobs when possible.

By default status asks the provider when the run has unfinished jobs and it can (the keys are
set; for a rehearsal, its simulator state is here), records the answers in the journal as a
poll does, and otherwise says where the states it shows come from. `--refresh` insists (an
error when it cannot ask), `--no-refresh` never asks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.execution.options import RunOptions, run_id_for
from costguard.execution.rundir import RunDir
from costguard.queue.reader import NO_DEFAULTS
from costguard.simulator import simulate
from runkit import AS_OF, GEMINI_LINES, OPENAI_LINES, scenario_file, write_queue

Cli = Callable[..., Any]
FAST = ["--poll-interval", "0.05", "--as-of", AS_OF.isoformat()]
KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-123", "GEMINI_API_KEY": "AIza-SECRET-456"}
RECORDED = "job states as the journal last recorded them"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """COSTGUARD_HOME as the autouse fixture set it."""
    return tmp_path / "costguard-home"


@pytest.fixture
def long(tmp_path: Path) -> Path:
    """A scenario whose jobs run for about a wall minute: still running while the test looks."""
    return scenario_file(tmp_path / "sc", "slow", name="long", time_scale=1200)


def detach(cli: Cli, tmp_path: Path, scenario: Path | None = None) -> str:
    """Submit the mixed queue with --detach; returns the run id."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES + OPENAI_LINES)
    sim = ["--simulate", str(scenario)] if scenario is not None else []
    result = cli("run", queue, "--max-usd", "5", *sim, "--out", tmp_path / "out", "--detach", *FAST)
    assert result.code == 0, result.err
    options = RunOptions(
        queue, Decimal(0), defaults=NO_DEFAULTS, simulate=str(scenario) if scenario else None
    )
    return run_id_for(options)


def states(shown: str) -> dict[str, str]:
    """Part id -> the state column of `status`'s table."""
    header, rows = textkit.table(shown)
    return {row[0]: row[header.index("state")] for row in rows}


def test_status_after_cancel_asks_the_provider_and_records_the_answer(
    cli: Cli, tmp_path: Path, long: Path, home: Path
) -> None:
    """Right after `cancel`, status no longer says queued: it asks (the rehearsal's simulator is
    here), shows cancelled, and the journal keeps it; --no-refresh shows the journal only."""
    rid = detach(cli, tmp_path, long)
    before = cli("status", rid, "--no-refresh")
    assert before.code == 0, before.err
    assert set(states(before.out).values()) == {"queued"}
    assert f"{RECORDED} (--refresh asks the provider)" in before.out
    assert cli("cancel", rid).code == 0

    after = cli("status", rid)
    assert after.code == 0, after.err
    assert set(states(after.out).values()) <= {"cancelled", "cancelling"}
    assert states(after.out)["gemini-3-pro-image-1"] == "cancelled"
    assert RECORDED not in after.out
    journal = RunDir(home / "runs" / rid).load()
    assert {p.provider_state for p in journal.parts if p.provider == "gemini"} == {
        "JOB_STATE_CANCELLED"
    }
    assert states(cli("status", rid, "--no-refresh").out) == states(after.out)

    verbose = cli("status", rid, "--verbose", "--no-refresh")
    assert "provider state" in verbose.out
    assert "JOB_STATE_CANCELLED" in verbose.out
    assert "JOB_STATE" not in after.out  # raw names only with --verbose

    shown = json.loads(cli("status", rid, "--output", "json").out)
    part = next(p for p in shown["parts"] if p["id"] == "gemini-3.1-flash-image-1")
    assert part["progress_state"] == "cancelled"
    assert part["provider_state"] == "JOB_STATE_CANCELLED"
    assert part["job_counts"] == {"total": 5, "done": 0, "failed": 0}


def test_status_of_a_real_run_asks_only_with_its_keys(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    """Without the keys status shows the journal and says why (exit 0); --refresh is then an
    error naming the variable; with the keys it asks. No key is ever printed."""
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    with simulate("slow", api_keys=KEYS.values(), time_scale=2000) as sim:
        rid = detach(cli, tmp_path)
        for name in KEYS:
            monkeypatch.delenv(name)
        keyless = cli("status", rid)
        assert keyless.code == 0, keyless.err
        why = (
            "no gemini or openai API key set to ask the provider "
            "(GEMINI_API_KEY or GOOGLE_API_KEY; OPENAI_API_KEY)"
        )
        assert f"{RECORDED} ({why})" in keyless.out
        assert json.loads(cli("status", rid, "--output", "json").out)["refreshed"] is False
        refused = cli("status", rid, "--refresh")
        assert refused.code == 2
        assert refused.err == f"error: cannot ask about run {rid}: {why}\n"
        calls = len(sim.calls.calls)
        for name, value in KEYS.items():
            monkeypatch.setenv(name, value)
        sim.advance(40_000)  # 8 h pending is over: running now
        asked = cli("status", rid, "--refresh")
        assert asked.code == 0, asked.err
        assert len(sim.calls.calls) == calls + 4  # one get per unfinished job
        assert json.loads(cli("status", rid, "--output", "json").out)["refreshed"] is True
    assert set(states(asked.out).values()) == {"running"}
    assert "job states as the provider gave them just now" in asked.out
    for result in (keyless, refused, asked):
        for secret in KEYS.values():
            assert secret not in result.out + result.err


def test_status_of_a_run_another_process_drives_shows_the_journal(
    cli: Cli, tmp_path: Path, long: Path, home: Path
) -> None:
    """A run locked by the process driving it is not asked about (that process polls it and
    records what it hears); status says so and exits 0, even with --refresh."""
    rid = detach(cli, tmp_path, long)
    driving = RunDir(home / "runs" / rid)
    driving.lock()
    try:
        shown = cli("status", rid, "--refresh")
    finally:
        driving.unlock()
    assert shown.code == 0, shown.err
    assert f"{RECORDED}: run {rid} is being driven by pid" in shown.out


def test_status_of_a_rehearsal_from_another_machine_shows_the_journal(
    cli: Cli, tmp_path: Path, long: Path, home: Path
) -> None:
    """Without its simulator's state (the rehearsal ran elsewhere) status shows the journal;
    --refresh is a one-line error (exit 2)."""
    rid = detach(cli, tmp_path, long)
    (home / "runs" / rid / "simulator.json").unlink()
    shown = cli("status", rid)
    assert shown.code == 0, shown.err
    assert "simulator state is on the machine that ran it" in shown.out
    refused = cli("status", rid, "--refresh")
    assert refused.code == 2
    assert refused.err.startswith(f"error: cannot ask about run {rid}: ")
    assert "Traceback" not in refused.err
