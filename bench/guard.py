"""Benchmark the budget gateway (`costguard guard`): what it adds to a paid call, and how much
of the direct throughput it keeps.

One `costguard simulate serve` upstream answers both providers; one gateway (a process of its
own, on a SQLite ledger in a temporary folder unless `--ledger` names another, with a budget
far above the workload) forwards to it. The same workload runs direct and through the gateway
in the same run, interleaved in rounds so both see the same machine:

- sync image calls, as the SDKs send them: OpenAI `POST /v1/images/generations` (gpt-image-2,
  low quality; the simulator answers a tiny 32x32 image) and Gemini
  `POST /v1beta/models/gemini-3.1-flash-image:generateContent` (IMAGE modality);
- latency: one client, calls one after another; p50 and p95 per path, and what the gateway
  adds (gateway minus direct);
- throughput: `--clients` concurrent clients (threads, one HTTP connection each) for
  `--calls` calls in all; calls per second, and the gateway's as a share of direct.

Through the gateway every call is priced, admitted in the ledger (one transaction), forwarded,
and settled from the answer's usage (two more): the figures include that bookkeeping. The
simulator answers at once unless `--upstream-latency` holds each answer (real image calls take
seconds, which makes the gateway's share smaller still); 0 is the worst case for the gateway.
Every call is a ledger run of its own, and the ledger grows during the run: admission sums the
budget's window, so later rounds pay for the earlier ones (the figures say how many runs).

    python bench/guard.py [--calls 400] [--clients 8] [--rounds 3] [--upstream-latency 0]
                          [--ledger URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

OPENAI_KEY = "sk-bench-0123456789"
GEMINI_KEY = "AIza-bench-0123456789"
OPENAI_BODY = {"model": "gpt-image-2", "prompt": "a fox", "quality": "low", "size": "1024x1024"}
GEMINI_MODEL = "gemini-3.1-flash-image"
GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "an owl"}]}],
    "generationConfig": {"responseModalities": ["IMAGE"]},
}


def call(provider: str) -> Callable[[httpx.Client], None]:
    """One sync image call of `provider` on a client whose base URL is the target."""
    if provider == "openai":

        def openai(client: httpx.Client) -> None:
            answer = client.post(
                "/v1/images/generations",
                json=OPENAI_BODY,
                headers={"Authorization": f"Bearer {OPENAI_KEY}"},
            )
            if answer.status_code != 200:
                raise SystemExit(f"openai call failed: {answer.status_code} {answer.text[:300]}")

        return openai

    def gemini(client: httpx.Client) -> None:
        answer = client.post(
            f"/v1beta/models/{GEMINI_MODEL}:generateContent",
            json=GEMINI_BODY,
            headers={"x-goog-api-key": GEMINI_KEY},
        )
        if answer.status_code != 200:
            raise SystemExit(f"gemini call failed: {answer.status_code} {answer.text[:300]}")

    return gemini


def latencies(base: str, provider: str, count: int) -> list[float]:
    """`count` calls one after another; each call's seconds."""
    one = call(provider)
    found = []
    with httpx.Client(base_url=base, timeout=60) as client:
        one(client)  # connect outside the measurement
        for _ in range(count):
            started = time.perf_counter()
            one(client)
            found.append(time.perf_counter() - started)
    return found


def throughput(base: str, provider: str, calls: int, clients: int) -> float:
    """Calls per second with `clients` concurrent clients making `calls` calls in all."""
    one = call(provider)
    each = max(1, calls // clients)
    start = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                one(client)  # connect and warm up before the start
                start.wait()
                for _ in range(each):
                    one(client)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise SystemExit(f"a client failed: {errors[0]!r}")
    return each * clients / elapsed


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def scenario(folder: Path, latency: float) -> list[str]:
    """`--scenario` arguments for the upstream (none when it answers at once)."""
    if latency <= 0:
        return []
    path = folder / "bench-latency.yaml"
    path.write_text(
        "name: bench-latency\n"
        "description: Sync image calls answered after a fixed delay.\n"
        "latency_s:\n"
        f"  openai.images.generate: {latency}\n"
        f"  gemini.models.generateContent: {latency}\n",
        encoding="utf-8",
    )
    return ["--scenario", str(path)]


def measure(
    direct: str, gateway: str, args: argparse.Namespace
) -> tuple[list[list[Any]], list[list[Any]]]:
    """The latency and throughput rows, per provider."""
    latency_rows: list[list[Any]] = []
    throughput_rows: list[list[Any]] = []
    for provider in ("openai", "gemini"):
        timed: dict[str, list[float]] = {"direct": [], "gateway": []}
        rate: dict[str, list[float]] = {"direct": [], "gateway": []}
        per_round = max(1, args.latency_calls // args.rounds)
        for _ in range(args.rounds):
            for path, base in (("direct", direct), ("gateway", gateway)):
                timed[path] += latencies(base, provider, per_round)
                rate[path].append(throughput(base, provider, args.calls, args.clients))
        d50, d95 = quantile(timed["direct"], 0.5), quantile(timed["direct"], 0.95)
        g50, g95 = quantile(timed["gateway"], 0.5), quantile(timed["gateway"], 0.95)
        latency_rows.append(
            [provider, len(timed["direct"]), d50, d95, g50, g95, g50 - d50, g95 - d95]
        )
        direct_rate = statistics.median(rate["direct"])
        gateway_rate = statistics.median(rate["gateway"])
        throughput_rows.append(
            [provider, args.clients, direct_rate, gateway_rate, gateway_rate / direct_rate]
        )
    return latency_rows, throughput_rows


def main() -> None:
    """Parse the options, start the upstream and the gateway, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per throughput round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--latency-calls", type=int, default=300, help="sequential calls")
    parser.add_argument("--rounds", type=int, default=3, help="direct/gateway alternations")
    parser.add_argument("--upstream-latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--ledger", default=None, help="ledger URL (default: a SQLite file)")
    args = parser.parse_args()

    from tabulate import tabulate

    from guardkit import GatewayProcess, set_budget
    from sim_cli import serve_process

    with tempfile.TemporaryDirectory(prefix="costguard-bench-guard-") as tmp:
        folder = Path(tmp)
        location = args.ledger or str(folder / "ledger.sqlite3")
        set_budget(location, "bench", "1000000")
        with serve_process(*scenario(folder, args.upstream_latency)) as (upstream, _):
            gateway = GatewayProcess(location, "bench", upstream, 0)
            url = gateway.start()
            try:
                latency_rows, throughput_rows = measure(upstream, url, args)
            finally:
                gateway.stop()
        from costguard.ledger import open_ledger

        ledger = open_ledger(location)
        try:
            held = ledger.status("bench", at=ledger.runs(limit=1)[0].created)
            runs = sum(owner.runs for owner in held.owners)
        finally:
            ledger.close()

    print(
        f"costguard guard overhead: upstream `costguard simulate serve` answering in "
        f"{args.upstream_latency * 1000:g} ms, ledger "
        f"{'PostgreSQL' if args.ledger else 'SQLite'} ({runs} gateway runs in it at the end: "
        f"one per call), {args.rounds} interleaved rounds\n"
    )
    print("Latency per call, one client (ms; direct is the baseline):")
    print(
        tabulate(
            latency_rows,
            headers=[
                "provider",
                "calls",
                "direct p50",
                "direct p95",
                "gateway p50",
                "gateway p95",
                "added p50",
                "added p95",
            ],
            floatfmt=".2f",
        )
    )
    print(f"\nThroughput, {args.clients} concurrent clients (calls/s; median of the rounds):")
    print(
        tabulate(
            throughput_rows,
            headers=["provider", "clients", "direct", "gateway", "gateway/direct"],
            floatfmt=".2f",
        )
    )
    added = max(row[6] for row in latency_rows)
    ratio = min(row[4] for row in throughput_rows)
    print(
        f"\ntargets: added p50 <= 5 ms: {'met' if added <= 5 else 'MISSED'} ({added:.2f} ms); "
        f"throughput >= 0.8x direct: {'met' if ratio >= 0.8 else 'MISSED'} ({ratio:.2f}x)"
    )


if __name__ == "__main__":
    main()
