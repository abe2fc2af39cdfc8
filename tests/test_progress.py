"""Progress while a run is driven: plain lines off a terminal, a live display on one.

Off a terminal the runner runs in-process on a stopped simulator clock that its `sleep` moves,
with a monotonic clock that moves with it, so hours of provider time pass in a second and the
periodic lines can be checked by their timestamps. On a terminal, `python -m costguard run` runs
on a real pseudo-terminal and its output bytes are checked: what the display drew, and that the
cursor it hid is shown again however the command ends.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

import costguard
from costguard.execution.options import RunOptions
from costguard.execution.progress import (
    PROGRESS_INTERVAL_S,
    TICK_S,
    LineReporter,
    PartView,
    Snapshot,
)
from costguard.execution.runner import Runner
from costguard.ledger import open_ledger
from costguard.money import usd_together
from costguard.pricing.engine import RateBook
from costguard.providers.base import Provider
from costguard.providers.gemini import GeminiProvider
from costguard.providers.openai import OpenAIProvider
from costguard.simulator import simulate
from runkit import AS_OF, GEMINI_LINES, OPENAI_LINES, cli_env, scenario_file, write_queue

STAMPED = re.compile(r"^\[(\d+):(\d\d):(\d\d)\] (.*)$")
SIM_S_PER_S = 60
"""Simulated provider seconds per second of the runner's (simulated) monotonic clock."""
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def sim_providers(name: str, base: Path) -> Provider:
    """Provider clients with a dummy key (the simulator accepts any key)."""
    if name == "gemini":
        return GeminiProvider("sim-key", base=base)
    return OpenAIProvider("sim-key", base=base)


def stamped(lines: list[str]) -> list[tuple[int, str]]:
    """(seconds, text) of each `[H:MM:SS] text` line."""
    found = []
    for line in lines:
        match = STAMPED.match(line)
        if match:
            h, m, s, text = match.groups()
            found.append((int(h) * 3600 + int(m) * 60 + int(s), text))
    return found


def states_of(part: str, lines: list[tuple[int, str]]) -> list[str]:
    """The states `part`'s lines went through, each once, in order."""
    states: list[str] = []
    for _, text in lines:
        if text.startswith(f"{part}: "):
            state = text.removeprefix(f"{part}: ").split(",")[0]
            if not states or states[-1] != state:
                states.append(state)
    return states


def test_off_a_terminal_a_line_comes_on_every_state_change_and_every_interval(
    tmp_path: Path, shipped_book: RateBook
) -> None:
    """A 20-hour run prints each part's state changes and, between them, every part and the
    whole run (counts, money, ETA) at least every PROGRESS_INTERVAL_S; Gemini parts count."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES + OPENAI_LINES)
    printed: list[str] = []
    now = [0.0]
    with simulate("slow", time_scale=0) as sim, open_ledger(tmp_path / "l.sqlite3") as ledger:

        def sleep(seconds: float) -> None:
            now[0] += seconds
            sim.advance(seconds * SIM_S_PER_S)

        runner = Runner(
            home=tmp_path / "home",
            ledger=ledger,
            book=shipped_book,
            providers=sim_providers,
            reporter=LineReporter(printed.append),
            sleep=sleep,
            monotonic=lambda: now[0],
        )
        options = RunOptions(queue, Decimal(5), out=tmp_path / "out", as_of=AS_OF, poll_interval=30)
        summary = runner.start(options)
    assert summary.counts == {"ok": 12}
    lines = stamped(printed)
    times = [t for t, _ in lines]
    assert times[-1] > 15 * PROGRESS_INTERVAL_S  # 73,800 simulated seconds at 60 a second
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= PROGRESS_INTERVAL_S + TICK_S
    parts = ["gemini-3-pro-image-1", "gemini-3.1-flash-image-1", "gpt-image-1.5-1", "gpt-image-2-1"]
    for part in parts:
        went = [s for s in states_of(part, lines) if s != "finalizing"]  # if a poll saw it
        assert went == ["queued", "running", "succeeded", "collecting", "collected"], part
    texts = [text for _, text in lines]
    assert "gemini-3.1-flash-image-1: running, 0 done, 0 failed of 5" in texts
    assert "gemini-3.1-flash-image-1: collected, 5 done, 0 failed of 5, 5 collected" in texts
    assert not any("?" in text for text in texts)  # every count is known: Gemini's too
    partly = re.compile(r"gpt-image-1\.5-1: running, [1-4] done, 0 failed of 5$")
    assert any(partly.match(text) for text in texts)
    runs = [text for text in texts if text.startswith(f"run {summary.run_id}: ")]
    assert len(runs) >= 10
    reserved = "spent {} of {} reserved".format(*usd_together(Decimal(0), summary.estimate_max))
    assert all(reserved in text for text in runs)
    assert any(re.search(r"; eta \d+:\d\d:\d\d$", text) for text in runs)


def test_the_interval_is_the_reporters_and_unknown_counts_say_so() -> None:
    """An interval given to LineReporter is the one it keeps; counts a provider did not give
    are `?`, and raw states show only when verbose."""
    printed: list[str] = []
    reporter = LineReporter(printed.append, interval=5, verbose=True)

    def at(elapsed: float, state: str = "running") -> Snapshot:
        part = PartView("p-1", state, "JOB_STATE_RUNNING", 3, None, None, 0)
        return Snapshot("run-1", elapsed, (part,), Decimal(2), Decimal(0), False, None, False)

    for elapsed in (0, 2, 4.9, 5.5, 8, 10.4, 11, 12):
        reporter.progress(at(elapsed, "succeeded" if elapsed == 12 else "running"))
    assert printed == [
        "[0:00:00] p-1: running (JOB_STATE_RUNNING), ? done, ? failed of 3",
        "[0:00:05] p-1: running (JOB_STATE_RUNNING), ? done, ? failed of 3",
        "[0:00:05] run run-1: 1 running; ? done, ? failed of 3; spent $0.00 of $2.00 reserved",
        "[0:00:11] p-1: running (JOB_STATE_RUNNING), ? done, ? failed of 3",
        "[0:00:11] run run-1: 1 running; ? done, ? failed of 3; spent $0.00 of $2.00 reserved",
        "[0:00:12] p-1: succeeded (JOB_STATE_RUNNING), ? done, ? failed of 3",
    ]


# --- on a terminal ----------------------------------------------------------------------------


def record(
    args: list[str],
    cwd: Path,
    *,
    until: Callable[[bytes], bool] | None = None,
    timeout: float = 120,
) -> tuple[int, bytes]:
    """`python -m costguard ARGS` on a pseudo-terminal (160x40, TERM=xterm-256color): its exit
    code and every byte it wrote. With `until`, Ctrl-C (SIGINT) once the output satisfies it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = cli_env(cwd / "home", TERM="xterm-256color", COLUMNS="160", LINES="40")
    here = str(Path(costguard.__file__).resolve().parents[1])  # this costguard, not another
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "costguard", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
    )
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if until is not None and until(bytes(output)):
                    proc.send_signal(signal.SIGINT)
                    until = None
        else:
            proc.kill()
            pytest.fail(f"costguard did not finish: {bytes(output)[-2000:]!r}")
        return proc.wait(timeout=30), bytes(output)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def assert_cursor_restored(output: bytes) -> None:
    """The display hid the cursor, and showed it again after it last hid it."""
    assert HIDE in output
    assert output.rfind(SHOW) > output.rfind(HIDE)


@pytest.fixture
def terminal_queue(tmp_path: Path) -> Path:
    """Six Gemini and six OpenAI requests (four parts)."""
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, GEMINI_LINES + OPENAI_LINES)
    return queue


@pytest.mark.slow
def test_on_a_terminal_the_display_shows_collection_and_gives_the_cursor_back(
    tmp_path: Path, terminal_queue: Path
) -> None:
    """`run --simulate slow` (its 20 hours in about 2 s) draws the parts, their states and the
    collection count, then takes the display down, shows the cursor and prints the summary."""
    slow = scenario_file(tmp_path / "sc", "slow", name="slow", time_scale=40_000)
    code, output = record(
        ["run", str(terminal_queue), "--max-usd", "5", "--simulate", str(slow),
         "--poll-interval", "0.2", "--as-of", AS_OF.isoformat()],
        tmp_path,
    )  # fmt: skip
    text = output.decode(errors="replace")
    assert code == 0, text[-3000:]
    assert "collected 12/12" in text
    assert re.search(r"collected \d+/12", text)
    assert re.search(r"gpt-image-1\.5-1 +(queued|running|finalizing|succeeded|collecting)", text)
    assert "spent $" in text
    assert "reserved (rehearsal)" in text
    assert_cursor_restored(output)
    assert output.rfind(SHOW) < output.find(b"run run-")  # the summary comes after
    assert "Traceback" not in text


@pytest.mark.slow
def test_on_a_terminal_an_exit_3_refusal_gives_the_cursor_back(
    tmp_path: Path, terminal_queue: Path
) -> None:
    """Refused over --max-usd (exit 3) after the display started, the cursor is shown again
    and the refusal is one line, no traceback."""
    code, output = record(
        ["run", str(terminal_queue), "--max-usd", "0.01", "--simulate", "succeeded",
         "--as-of", AS_OF.isoformat()],
        tmp_path,
    )  # fmt: skip
    text = output.decode(errors="replace")
    assert code == 3, text[-3000:]
    assert "error: over budget" in text
    assert_cursor_restored(output)
    assert output.rfind(SHOW) < output.find(b"error: over budget")
    assert "Traceback" not in text


@pytest.mark.slow
def test_on_a_terminal_ctrl_c_gives_the_cursor_back(tmp_path: Path, terminal_queue: Path) -> None:
    """Ctrl-C while the jobs run ends with 130 and the resume hint, the cursor shown again."""
    code, output = record(
        ["run", str(terminal_queue), "--max-usd", "5", "--simulate", "slow",
         "--as-of", AS_OF.isoformat()],
        tmp_path,
        until=lambda seen: re.search(rb"gpt-image-2-1 +(queued|running)", seen) is not None,
    )  # fmt: skip
    text = output.decode(errors="replace")
    assert code == 130, text[-3000:]
    assert "interrupted: submitted jobs keep running at the provider" in text
    assert_cursor_restored(output)
    assert "Traceback" not in text
