"""What the commands that serve (simulate serve, simulate record, guard) share: where a server
listens, said to people and programs (`--output json`, `--ready-file`), and the ready file's
life (written atomically once listening, removed when the server stops, even on SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from costguard.cli.common import SummaryOutput
from costguard.cli.output import emit
from costguard.errors import UsageError

if TYPE_CHECKING:
    from costguard.proxy.server import Listening

__all__ = ["announce", "clear_ready_file", "removed_at_exit", "warn_if_public", "where"]


def warn_if_public(listening: Listening, what: str) -> None:
    """One stderr line when `listening` is reachable from other machines (not loopback)."""
    if listening.loopback_only:
        return
    where = "all interfaces" if listening.all_interfaces else "a non-loopback address"
    typer.echo(
        f"costguard: warning: listening on {listening.bound} ({where}): {what}; "
        "bind 127.0.0.1 to keep it on this machine",
        err=True,
    )


def clear_ready_file(ready_file: Path | None) -> None:
    """Remove an earlier server's ready file before starting, so it never passes for this one's."""
    if ready_file is None:
        return
    try:
        ready_file.unlink(missing_ok=True)
    except OSError as exc:
        problem = UsageError(f"--ready-file {ready_file}: {exc.strerror or exc}")
        raise problem from None


def announce(where: dict[str, object], ready_file: Path | None, output: SummaryOutput) -> bool:
    """Write the ready file and, with `--output json`, the JSON line; True: print no banner."""
    if ready_file is not None:
        from costguard.execution.files import write_atomic

        try:
            write_atomic(ready_file, (json.dumps(where) + "\n").encode())
        except OSError as exc:
            problem = UsageError(f"--ready-file {ready_file}: {exc.strerror or exc}")
            raise problem from None
    if output is SummaryOutput.json:
        emit({"event": "listening", **where}, indent=None)
        return True
    return False


def where(listening: Listening) -> dict[str, object]:
    """Where a server (serve, record) listens, for programs: its URLs, address and pid."""
    return {
        "url": listening.base_url,
        "openai_base_url": f"{listening.base_url}/v1",
        "gemini_base_url": listening.base_url,
        "host": listening.host,
        "port": listening.port,
        "pid": os.getpid(),
    }


@contextlib.contextmanager
def removed_at_exit(ready_file: Path | None) -> Iterator[None]:
    """Remove the ready file when the server stops: Ctrl-C, an error, or SIGTERM (which the
    server re-raises once shut down: the file is removed, then SIGTERM ends the process as
    before)."""
    if ready_file is None or threading.current_thread() is not threading.main_thread():
        try:
            yield
        finally:
            if ready_file is not None:
                _remove_own(ready_file)
        return

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        _remove_own(ready_file)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        _remove_own(ready_file)
        signal.signal(signal.SIGTERM, previous)


def _remove_own(ready_file: Path) -> None:
    """Remove the ready file if it is still this process's (not a newer server's)."""
    try:
        written = json.loads(ready_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(written, dict) and written.get("pid") == os.getpid():
        ready_file.unlink(missing_ok=True)
