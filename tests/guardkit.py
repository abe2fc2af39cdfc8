"""Test helper (not a test module): budget gateways for the team, Node, kill -9 tests and the
benchmark.

- `gateway_in_thread`: a gateway on a loopback port, served from a thread of this process, for
  a ledger location (SQLite file or PostgreSQL URL), a budget and upstream base URLs.
- `gateway_process`: `costguard guard` in a subprocess, as a user runs it, so a test can
  `kill -9` it and start another on the same port.
- `upstream_jobs`: how many batch jobs an upstream (`costguard simulate serve`) holds, asked
  through its own list endpoints.

`gateway_in_thread` builds the gateway from `costguard.gateway.app` (`Guard`, `Book`,
`create_guard_app`), as the CLI does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx

from costguard.gateway.app import Guard, GuardOptions, create_guard_app
from costguard.gateway.book import Book
from costguard.ledger import open_ledger
from costguard.pricing.loader import load_book
from costguard.simulator.server import app_in_thread

OPENAI_KEY = "sk-guardkit-SECRET-0123456789"
GEMINI_KEY = "AIza-guardkit-SECRET-0123456789abcdef"
TERMINAL_GEMINI = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
}
TERMINAL_OPENAI = {"completed", "failed", "expired", "cancelled"}


def upstreams(url: str) -> dict[str, str]:
    """One simulator serving both providers."""
    return {"openai": url, "gemini": url}


def set_budget(location: str | Path, budget: str, usd: Decimal | str) -> None:
    """Create (or change) a monthly budget on the ledger at `location`."""
    ledger = open_ledger(location)
    try:
        ledger.set_budget(budget, usd=Decimal(usd))
    finally:
        ledger.close()


@contextlib.contextmanager
def gateway_in_thread(
    location: str | Path,
    upstream: str,
    *,
    budget: str = "team",
    max_usd: Decimal | None = None,
    grace_s: float = 600.0,
    log: list[str] | None = None,
) -> Iterator[tuple[str, Guard]]:
    """A gateway served from a thread on its own ledger connection; yields (URL, guard)."""
    lines: list[str] = [] if log is None else log
    ledger = open_ledger(location)
    book = Book(ledger, budget=budget, max_usd=max_usd)
    options = GuardOptions(budget=budget, upstreams=upstreams(upstream), grace_s=grace_s)
    guard = Guard(book, load_book(), options, log=lines.append)
    app = create_guard_app(guard, log=lines.append)
    try:
        with app_in_thread(app, lifespan="on") as url:
            yield url, guard
    finally:
        guard.close()
        ledger.close()


class GatewayProcess:
    """A gateway running in a subprocess (see `gateway_process`)."""

    def __init__(self, location: str | Path, budget: str, upstream: str, port: int) -> None:
        self.location = str(location)
        self.budget = budget
        self.upstream = upstream
        self.port = port
        self.lines: list[str] = []
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60) -> str:
        """Start it and wait until it listens; return its URL."""
        with tempfile.TemporaryDirectory(prefix="costguard-gw-") as folder:
            ready = Path(folder) / "ready.json"
            args = [
                "guard", "--budget", self.budget, "--ledger", self.location,
                "--upstream", f"openai={self.upstream}", "--upstream", f"gemini={self.upstream}",
                "--port", str(self.port), "--ready-file", str(ready),
            ]  # fmt: skip
            proc = subprocess.Popen(
                [sys.executable, "-m", "costguard", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self.proc = proc
            self._reader = threading.Thread(target=self._drain, args=(proc,), daemon=True)
            self._reader.start()
            deadline = time.monotonic() + timeout
            while not ready.is_file():
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    msg = f"the gateway did not start: {self.lines}"
                    raise RuntimeError(msg)
                time.sleep(0.02)
            found = json.loads(ready.read_text(encoding="utf-8"))
        self.url = str(found["url"])
        self.port = int(self.url.rsplit(":", 1)[1])
        _wait_listening(self.url)
        return self.url

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self._join()

    def stop(self) -> None:
        """SIGTERM (if still running) and wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def _wait_listening(url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url + "/", timeout=1)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        else:
            return


@contextlib.contextmanager
def gateway_process(
    location: str | Path, upstream: str, *, budget: str = "team", port: int = 0
) -> Iterator[GatewayProcess]:
    """A started `GatewayProcess`, stopped at the end (unless the test killed it)."""
    gateway = GatewayProcess(location, budget, upstream, port)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def upstream_jobs(upstream: str, provider: str) -> list[dict[str, object]]:
    """Every batch job the upstream simulator holds for `provider`, asked through its API."""
    found: list[dict[str, object]] = []
    if provider == "openai":
        after = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if after:
                params["after"] = after
            page = httpx.get(
                upstream + "/v1/batches",
                params=params,
                headers={"Authorization": f"Bearer {OPENAI_KEY}"},
                timeout=30,
            ).json()
            found += page["data"]
            if not page.get("has_more"):
                return found
            after = page["data"][-1]["id"]
    token = ""
    while True:
        query: dict[str, str | int] = {"pageSize": 100}
        if token:
            query["pageToken"] = token
        answer = httpx.get(
            upstream + "/v1beta/batches",
            params=query,
            headers={"x-goog-api-key": GEMINI_KEY},
            timeout=30,
        )
        answer.raise_for_status()
        page = answer.json()
        found += page.get("operations") or page.get("batches") or []
        token = str(page.get("nextPageToken") or "")
        if not token:
            return found
