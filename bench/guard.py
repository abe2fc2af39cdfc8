#!/usr/bin/env python3
"""Benchmark: what `costguard guard` adds to a paid call, against direct calls in the same run.

Starts `costguard simulate serve --port 0` (the upstream) and `costguard guard --port 0` in
front of it (a fresh SQLite ledger, a budget that fits everything), each a subprocess, then
sends OpenAI `images.generate` calls (low quality; the simulator's tiny images) with httpx:
- latency: `--count` calls one after another, direct and through the gateway, alternating;
  prints p50/p90 of each and the added p50 (target: at most 5 ms);
- throughput: `--count` calls from `--workers` threads, direct then through the gateway;
  prints calls/s of each and the ratio (target: at least 0.8x direct).
Every call through the gateway is priced, admitted and settled in the ledger.

    .venv/bin/python bench/guard.py [--count 300] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

KEY = "sk-bench-guard"
BODY = {"model": "gpt-image-2", "prompt": "a fox", "quality": "low", "size": "1024x1024"}
SRC = str(Path(__file__).resolve().parent.parent / "src")


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`costguard ARGS --port 0 --output json`; the process and its base URL."""
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "costguard", *args, "--port", "0", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        sys.exit(f"costguard {' '.join(args)} did not start (exit {proc.returncode})")
    return proc, json.loads(line)["url"]


def call(client: httpx.Client, base: str) -> float:
    """One images.generate call; its wall time in seconds."""
    began = time.perf_counter()
    response = client.post(
        f"{base}/v1/images/generations", json=BODY, headers={"authorization": f"Bearer {KEY}"}
    )
    response.raise_for_status()
    return time.perf_counter() - began


def latency(direct: str, gateway: str, count: int) -> tuple[list[float], list[float]]:
    """Alternating sequential calls: (direct times, gateway times)."""
    times: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(timeout=60) as client:
        for base in (direct, gateway):  # warm both
            call(client, base)
        for _ in range(count):
            times[0].append(call(client, direct))
            times[1].append(call(client, gateway))
    return times


def throughput(base: str, count: int, workers: int) -> float:
    """Calls per second with `workers` threads."""
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=workers)) as client:
        call(client, base)
        began = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: call(client, base), range(count)))
        return count / (time.perf_counter() - began)


def ms(values: list[float], q: int) -> float:
    """The q-th percentile in milliseconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="costguard-bench-guard-") as folder:
        ledger = str(Path(folder) / "ledger.sqlite3")
        env = dict(os.environ, PYTHONPATH=SRC)
        setting = ["budget", "set", "--name", "bench", "--usd", "1000000", "--ledger", ledger]
        subprocess.run(
            [sys.executable, "-m", "costguard", *setting],
            check=True,
            capture_output=True,
            env=env,
        )
        sim, direct = start("simulate", "serve")
        gate, gateway = start(
            "guard", "--budget", "bench", "--ledger", ledger,
            "--upstream", f"openai={direct}", "--upstream", f"gemini={direct}",
        )  # fmt: skip
        try:
            plain, guarded = latency(direct, gateway, args.count)
            rate_direct = throughput(direct, args.count, args.workers)
            rate_gateway = throughput(gateway, args.count, args.workers)
        finally:
            for proc in (gate, sim):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    added = ms(guarded, 50) - ms(plain, 50)
    print(f"latency ({args.count} sequential calls each, ms):")
    print(f"  direct   p50 {ms(plain, 50):7.2f}  p90 {ms(plain, 90):7.2f}")
    print(f"  gateway  p50 {ms(guarded, 50):7.2f}  p90 {ms(guarded, 90):7.2f}")
    print(f"  added p50 {added:.2f} ms (target <= 5)")
    print(f"throughput ({args.count} calls, {args.workers} workers, calls/s):")
    print(f"  direct {rate_direct:.1f}  gateway {rate_gateway:.1f}  ratio "
          f"{rate_gateway / rate_direct:.2f}x (target >= 0.8)")  # fmt: skip


if __name__ == "__main__":
    main()
