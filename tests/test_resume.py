"""kill -9 a `costguard run` at each step, run the same command again, and nothing is paid twice.

Each test starts `python -m costguard run ... --simulate <scenario.yaml>` in a subprocess with
its own COSTGUARD_HOME, waits (polling the journal, the simulator state or the manifest) until
the run is exactly where the test wants it, SIGKILLs it, and runs the same command again to
completion. The scenario's `latency_s` holds a provider's answer after it acted and the state
was saved, which is how a test stops a client between a call and the journal write.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.options import RunOptions, run_id_for
from costguard.execution.rundir import RunDir
from costguard.ledger import open_ledger
from costguard.queue.reader import NO_DEFAULTS
from costguard.simulator import Simulator
from runkit import (
    AS_OF,
    GEMINI_LINES,
    OPENAI_LINES,
    by_key,
    cli_env,
    expected_statuses,
    finish,
    image_stamps,
    manifest,
    read_json,
    scenario_file,
    start,
    wait_until,
    write_queue,
)

pytestmark = pytest.mark.slow

LINES = GEMINI_LINES + OPENAI_LINES
PARTS = ["gemini-3-pro-image-1", "gemini-3.1-flash-image-1", "gpt-image-1.5-1", "gpt-image-2-1"]
"""The run's parts in submission (and collection) order: Gemini first, then OpenAI."""
HOLD_S = 20
"""How long a held answer waits: far longer than a test needs to see it and kill the client."""


@dataclass
class Run:
    """One queue, scenario and home, and the paths a test watches."""

    tmp: Path
    scenario: Path
    base: str = "succeeded"

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.queue = self.tmp / "queue.jsonl"
        write_queue(self.queue, LINES)
        self.out = self.tmp / "out"
        opts = RunOptions(self.queue, Decimal(0), defaults=NO_DEFAULTS, simulate=str(self.scenario))
        self.run_id = run_id_for(opts)
        self.dir = self.home / "runs" / self.run_id
        self.state = self.dir / "simulator.json"

    @property
    def args(self) -> list[str]:
        return [
            "run", str(self.queue), "--max-usd", "5", "--simulate", str(self.scenario),
            "--out", str(self.out), "--poll-interval", "0.05", "--as-of", AS_OF.isoformat(),
        ]  # fmt: skip

    def start(self) -> subprocess.Popen[str]:
        return start(self.args, cli_env(self.home), self.tmp)

    def journal(self) -> dict[str, Any] | None:
        return read_json(self.dir / "journal.json")

    def parts(self) -> dict[str, str]:
        """Part id -> journaled state (empty before the plan is saved)."""
        journal = self.journal() or {}
        return {p["id"]: p["state"] for p in journal.get("parts", [])}

    def jobs(self) -> list[dict[str, Any]]:
        """Jobs in the saved simulator state (what the provider has created)."""
        return (read_json(self.state) or {}).get("jobs", [])


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def unhold(state: Path) -> None:
    """The network is fast again: drop every `latency_s` from the saved simulator state."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ({} if k == "latency_s" else strip(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    state.write_text(json.dumps(strip(json.loads(state.read_text(encoding="utf-8")))))


def rerun_and_check(run: Run, before: dict[str, tuple[int, int]], code: int = 0) -> str:
    """Run the same command again; check one job per part, one line per key, one spend per part."""
    exit_code, out, err = finish(run.start())
    assert exit_code == code, err
    journal = RunDir(run.dir).load()
    assert [p.id for p in journal.parts] == PARTS
    assert all(p.state == "collected" for p in journal.parts)
    sim = Simulator.load(run.state)
    assert sorted(job.id for job in sim.jobs) == sorted(
        str(p.job_id).removeprefix("batches/") for p in journal.parts
    )
    assert len(sim.jobs) == len(PARTS), "a part was submitted (and paid) twice"
    lines = by_key(run.out)
    assert sorted(lines) == sorted(line["key"] for line in LINES)
    after = image_stamps(run.out)
    for name, stamp in before.items():
        assert after[name] == stamp, f"{name} was rewritten"
    assert len(after) == sum(len(line["files"]) for line in lines.values())
    with open_ledger(run.home / "ledger.sqlite3") as ledger:
        recorded = ledger.run(run.run_id)
    assert recorded is not None
    total = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    assert (recorded.parts, recorded.spent, recorded.status) == (len(PARTS), total, "collected")
    for part in journal.parts:
        part_total = sum(
            (Decimal(v["cost_usd"]) for v in lines.values() if v["part"] == part.id), Decimal(0)
        )
        assert Decimal(str(part.cost_usd)) == part_total
    return out + err


def test_kill_after_reserving_before_any_provider_call(tmp_path: Path) -> None:
    """(a) Killed once reserved and planned, before any call: the rerun submits each part once."""
    run = Run(tmp_path, scenario_file(tmp_path / "sc", "succeeded", name="kill-a"))
    run.out.mkdir()
    proc = run.start()
    # The first write into the output folder (its owner marker) blocks on a FIFO: the run is
    # then admitted and planned, and has not called a provider yet.
    fifo = run.out / f"..costguard-run.{proc.pid}.part"
    os.mkfifo(fifo)
    try:
        wait_until(
            "the run is admitted",
            lambda: (run.journal() or {}).get("status") == "admitted",
            proc,
        )
        assert set(run.parts().values()) == {"planned"}
        assert not run.state.exists(), "a provider was called before the kill"
        with open_ledger(run.home / "ledger.sqlite3") as ledger:
            held = ledger.run(run.run_id)
        assert held is not None
        assert held.open
        assert held.reserved == Decimal((run.journal() or {})["estimate"]["max_usd"])
    finally:
        kill(proc)
        fifo.unlink()
    text = rerun_and_check(run, {})
    assert f"resuming run {run.run_id} (admitted)" in text


@pytest.mark.parametrize(
    ("route", "part"),
    [("openai.batches.create", PARTS[2]), ("gemini.batches.create", PARTS[0])],
    ids=["openai", "gemini"],
)
def test_kill_between_create_and_journal_write_finds_the_job(
    route: str, part: str, tmp_path: Path
) -> None:
    """(b) Killed after the provider created a job but before the journal knew: no second job."""
    sc = scenario_file(tmp_path / "sc", "succeeded", name="kill-b", latency_s={route: HOLD_S})
    run = Run(tmp_path, sc)
    proc = run.start()
    try:
        wait_until(
            f"{part} is created at the provider while journaled as submitting",
            lambda: (
                run.parts().get(part) == "submitting" and len(run.jobs()) == PARTS.index(part) + 1
            ),
            proc,
        )
    finally:
        kill(proc)
    assert run.parts()[part] == "submitting"
    created = run.jobs()[-1]
    assert created["provider"] == route.split(".", maxsplit=1)[0]
    unhold(run.state)
    text = rerun_and_check(run, {})
    assert re.search(rf"{re.escape(part)}: found job (batches/)?{created['id']} at ", text)
    assert str(RunDir(run.dir).load().part(part).job_id).endswith(created["id"])


def test_kill_while_polling_resumes_the_same_jobs(tmp_path: Path) -> None:
    """(c) Killed while the jobs run at the provider: the rerun polls them, creating none."""
    sc = scenario_file(
        tmp_path / "sc", "slow", name="kill-c", time_scale=2400,
        pending_s=1800, running_s=3600, finalizing_s=300,
    )  # fmt: skip
    run = Run(tmp_path, sc)
    proc = run.start()
    try:
        wait_until(
            "every part is submitted",
            lambda: set(run.parts().values()) == {"submitted"},
            proc,
        )
    finally:
        kill(proc)
    journal = RunDir(run.dir).load()
    assert journal.status == "submitted"
    assert not any((p.job_state or "").startswith("terminal:") for p in journal.parts)
    assert manifest(run.out) == []
    jobs = {job["id"] for job in run.jobs()}
    text = rerun_and_check(run, {})
    assert {job.id for job in Simulator.load(run.state).jobs} == jobs
    assert f"resuming run {run.run_id} (submitted)" in text


def test_kill_half_way_through_collecting_rewrites_nothing(tmp_path: Path) -> None:
    """(d) Killed after the Gemini parts are collected, on the OpenAI download: nothing redone."""
    sc = scenario_file(
        tmp_path / "sc", "succeeded", name="kill-d", latency_s={"openai.files.content": HOLD_S}
    )
    run = Run(tmp_path, sc)
    proc = run.start()
    gemini = {line["key"] for line in GEMINI_LINES}
    try:
        wait_until(
            "the Gemini parts are collected",
            lambda: (
                {line["key"] for line in manifest(run.out)} == gemini
                and [run.parts().get(p) for p in PARTS[:2]] == ["collected"] * 2
            ),
            proc,
        )
    finally:
        kill(proc)
    assert [run.parts()[p] for p in PARTS[2:]] == ["submitted"] * 2
    lines = by_key(run.out)
    assert set(lines) == gemini
    with open_ledger(run.home / "ledger.sqlite3") as ledger:
        recorded = ledger.run(run.run_id)
    assert recorded is not None
    assert recorded.parts == 2
    before = image_stamps(run.out)
    assert len(before) == len(gemini)
    unhold(run.state)
    rerun_and_check(run, before)


def test_kill_between_a_parts_output_and_error_files(tmp_path: Path) -> None:
    """(d') Killed inside a part (output in, error file pending): its spend is recorded once."""
    # Both files come through the same held endpoint, so the kill must land within the 4 s
    # hold of the error file after the output file's lines appear (the test sees them in ms).
    sc = scenario_file(
        tmp_path / "sc", "refusals", name="kill-d2", latency_s={"openai.files.content": 4}
    )
    run = Run(tmp_path, sc)
    expected = {
        **expected_statuses(GEMINI_LINES, "refusals", "gemini"),
        **expected_statuses(OPENAI_LINES, "refusals", "openai"),
    }
    ok_first = [line["key"] for line in OPENAI_LINES[:5] if expected[line["key"]] == "ok"]
    proc = run.start()
    try:
        wait_until(
            "the first OpenAI part's output file is in the manifest",
            lambda: all(k in {line["key"] for line in manifest(run.out)} for k in ok_first),
            proc,
        )
    finally:
        kill(proc)
    assert run.parts()[PARTS[2]] == "submitted", "the part was already collected"
    assert "o-square" not in by_key(run.out)
    before = image_stamps(run.out)
    unhold(run.state)
    rerun_and_check(run, before, code=7)
    assert {k: v["status"] for k, v in by_key(run.out).items()} == expected
