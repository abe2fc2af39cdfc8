"""Test helper (not a test module): `costguard simulate serve` as a real subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
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

    Yields the base URL it printed, the process and the list of its output lines (complete
    once the block has ended: the process gets SIGTERM and is waited for).
    """
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
            match = re.search(
                r"(?:listening on|forwarding) (?:.*?local clients use )?(http://[^\s,]+)", line
            )
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=30)
        assert found, f"costguard simulate {command} printed no base URL: {lines}"
        yield found[0], proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()
