"""The gateway's watcher: a background thread that keeps no reservation open forever.

Every `interval_s` seconds it
- polls, at the upstream, each open batch job the gateway admitted or resumed from the ledger,
  with the API key the gateway last saw for that provider (held in memory only, never
  written); with no key yet (a gateway restarted and no call came through) it waits for the
  pipeline's own polls or calls to bring one. A terminal job is settled as when its batch
  object passes through (`Guard.seen_batch`): at actual where the object carries usage (OpenAI),
  else marked terminal with a fallback amount;
- settles what is overdue (`Guard.settle_overdue`): a job seen terminal more than the grace
  period ago whose results never passed through is settled at its fallback, `unreconciled`.

So a pipeline that stopped polling (crashed, or only collects later elsewhere) still has its
batch settled, and a gateway restart resumes this from the ledger.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from costguard.gateway.app import Guard

__all__ = ["Watcher", "job_url"]


def job_url(upstream: str, provider: str, job: str) -> str:
    """Where a batch job is read at the provider."""
    if provider == "openai":
        return f"{upstream.rstrip('/')}/v1/batches/{job}"
    return f"{upstream.rstrip('/')}/v1beta/batches/{job}"


def _auth(provider: str, key: str) -> dict[str, str]:
    if provider == "openai":
        return {"authorization": f"Bearer {key}"}
    return {"x-goog-api-key": key}


class Watcher:
    """Polls open jobs and settles overdue runs every `interval_s` seconds (see the module)."""

    def __init__(self, guard: Guard, interval_s: float, *, timeout_s: float = 30.0) -> None:
        self.guard = guard
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (a daemon: it never holds the process up)."""
        self._thread = threading.Thread(
            target=self._loop, name="costguard-guard-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    self.tick(client)
                except Exception as exc:  # noqa: BLE001 - the watcher must survive a bad tick
                    self.guard.log(f"costguard guard: the watcher failed: {exc}")

    def tick(self, client: httpx.Client) -> None:
        """One round: poll the open jobs, then settle what is overdue."""
        guard = self.guard
        for provider, job in guard.open_jobs():
            if self._stop.is_set():
                return
            answer = self._poll(client, provider, job)
            if answer is not None:
                guard.seen_batch(provider, job, answer)
        guard.settle_overdue(guard.book.clock())

    def _poll(self, client: httpx.Client, provider: str, job: str) -> Any:
        guard = self.guard
        key = guard.keys.get(provider)
        upstream = guard.upstream_for(provider)
        if not key or not upstream or guard.run_of(provider, job) is None:
            return None
        try:
            response = client.get(job_url(upstream, provider, job), headers=_auth(provider, key))
        except httpx.HTTPError as exc:
            guard.log(
                f"costguard guard: polling {provider} batch {job} failed: {type(exc).__name__}"
            )
            return None
        if response.status_code != 200:
            guard.log(f"costguard guard: polling {provider} batch {job}: {response.status_code}")
            return None
        try:
            return response.json()
        except ValueError:
            return None
