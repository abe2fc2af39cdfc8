"""Test helper (not a test module): `costguard simulate serve` as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def costguard_command() -> list[str]:
    """The installed `costguard` script next to this interpreter (else `python -m costguard`)."""
    script = Path(sys.executable).with_name("costguard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "costguard"]


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`costguard simulate serve --port 0 ARGS`; yields the printed base URL and the process.

    The process's output is drained for its whole life (it never blocks on a full pipe); at
    the end it gets SIGTERM unless it has already ended.
    """
    with simulate_process("serve", *args) as (base_url, proc, _):
        yield base_url, proc


@contextlib.contextmanager
def simulate_process(
    command: str, *args: str
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    """`costguard simulate COMMAND --port 0 ARGS` (serve or record) in a subprocess.

    Yields the base URL, the process and the list of its output lines (complete once the block
    has ended: the process gets SIGTERM and is waited for). `serve` says where it listens in
    its `--ready-file`; `record` in the line it prints.
    """
    with tempfile.TemporaryDirectory(prefix="costguard-ready-") as folder:
        ready_file = Path(folder) / "ready.json"
        extra = ["--ready-file", str(ready_file)] if command == "serve" else []
        with _started(command, [*extra, *args], ready_file if extra else None) as started:
            yield started


@contextlib.contextmanager
def _started(
    command: str, args: list[str], ready_file: Path | None
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    proc = subprocess.Popen(
        [*costguard_command(), "simulate", command, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    found: list[str] = []
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            match = re.search(r"forwarding (?:.*?local clients use )?(http://[^\s,]+)", line)
            if match and not found and ready_file is None:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if ready_file is not None:
            found += _wait_for(ready_file, proc)
        else:
            ready.wait(timeout=30)
        assert found, f"costguard simulate {command} gave no base URL: {lines}"
        yield found[0], proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()


def _wait_for(ready_file: Path, proc: subprocess.Popen[str], timeout: float = 30) -> list[str]:
    """The URL in `serve --ready-file` once it appears ([] if the server ends or times out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready_file.is_file():
            return [json.loads(ready_file.read_text(encoding="utf-8"))["url"]]
        time.sleep(0.02)
    return []
