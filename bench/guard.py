#!/usr/bin/env python3
"""Benchmark: what `costguard guard` adds to a paid call, against direct calls to the same
upstream in the same run, on images that weigh what real ones do.

Starts `costguard simulate serve` (the upstream; each image padded to `--image-bytes`, 1.5 MiB
by default: a real 1K image, so an answer is ~2 MB of base64; 0: the tiny images) and
`costguard guard` in front of it (a SQLite ledger in a temporary folder unless `--ledger`
names one, a budget far above the workload), each a subprocess as a user runs them. The calls
are sync image calls as the SDKs send them, OpenAI `images.generate` (gpt-image-2) and Gemini
`generateContent` (gemini-3.1-flash-image) alternately; through the gateway each is priced,
admitted in the ledger, forwarded, and settled from its usage.

1. Latency: one client, calls one after another, direct and through the gateway alternately,
   upstream answering at once (the worst case: the gateway's whole cost is on the path);
   p50/p90 of each and the added p50 (target: at most 5 ms).
2. Throughput, upstream answering at once: `--workers` threads; calls/s direct and through
   the gateway. On a small machine the client, the simulator and the gateway share the
   cores, so this measures CPU contention as much as the gateway.
3. Throughput, upstream taking `--upstream-latency` seconds per call (2 s by default; real
   image calls take 5-60 s, so this is still far kinder to a direct call than reality, and
   the fixed delay sends the threads' calls in bursts): the ratio a pipeline sees (target:
   at least 0.8x direct).
It also prints the gateway's peak RSS.

    python bench/guard.py [--count 200] [--workers 16] [--upstream-latency 2]
                          [--image-bytes 1572864] [--ledger URL]
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

OPENAI_KEY = "sk-bench-guard-0123456789"
GEMINI_KEY = "AIza-bench-guard-0123456789"
OPENAI_BODY = {"model": "gpt-image-2", "prompt": "a fox", "quality": "low", "size": "1024x1024"}
GEMINI_PATH = "/v1beta/models/gemini-3.1-flash-image:generateContent"
GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "an owl"}]}],
    "generationConfig": {"responseModalities": ["IMAGE"]},
}
SRC = str(Path(__file__).resolve().parent.parent / "src")
ENV = dict(os.environ, PYTHONPATH=SRC)


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`costguard ARGS --port 0 --output json`; the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "costguard", *args, "--port", "0", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        sys.exit(f"costguard {' '.join(args)} did not start (exit {proc.returncode})")
    return proc, json.loads(line)["url"]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (Linux `VmHWM`), in MB; 0 where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def pair(
    folder: Path, ledger: str, image_bytes: int, latency_s: float
) -> Iterator[tuple[str, str, int]]:
    """A simulator (images of `image_bytes`, answers held `latency_s`) and a gateway in front
    of it: (direct URL, gateway URL, gateway pid)."""
    scenario = folder / f"bench-guard-{latency_s}.yaml"
    held = {"openai.images.generate": latency_s, "gemini.models.generateContent": latency_s}
    scenario.write_text(
        json.dumps(
            {
                "name": "bench-guard",
                "description": "sync image calls, images of a real weight",
                **({"image_bytes": image_bytes} if image_bytes > 0 else {}),
                "latency_s": held if latency_s > 0 else {},
            }
        )
    )
    sim, direct = start("simulate", "serve", "--scenario", str(scenario))
    gate, gateway = start(
        "guard", "--budget", "bench", "--ledger", ledger,
        "--upstream", f"openai={direct}", "--upstream", f"gemini={direct}",
    )  # fmt: skip
    try:
        yield direct, gateway, gate.pid
    finally:
        for proc in (gate, sim):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def call(client: httpx.Client, base: str, number: int) -> float:
    """One sync image call (OpenAI on even numbers, Gemini on odd); its wall time in s."""
    began = time.perf_counter()
    if number % 2 == 0:
        response = client.post(
            f"{base}/v1/images/generations",
            json=OPENAI_BODY,
            headers={"authorization": f"Bearer {OPENAI_KEY}"},
        )
    else:
        response = client.post(
            f"{base}{GEMINI_PATH}", json=GEMINI_BODY, headers={"x-goog-api-key": GEMINI_KEY}
        )
    response.raise_for_status()
    return time.perf_counter() - began


def latency(direct: str, gateway: str, count: int) -> tuple[list[float], list[float]]:
    """Alternating sequential calls: (direct times, gateway times)."""
    times: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(timeout=120) as client:
        for number in range(4):  # warm both paths and both providers
            call(client, direct, number)
            call(client, gateway, number)
        for number in range(count):
            times[0].append(call(client, direct, number))
            times[1].append(call(client, gateway, number))
    return times


def throughput(base: str, count: int, workers: int) -> float:
    """Calls per second with `workers` threads."""
    limits = httpx.Limits(max_connections=workers)
    with httpx.Client(timeout=120, limits=limits) as client:
        call(client, base, 0)
        began = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda number: call(client, base, number), range(count)))
        return count / (time.perf_counter() - began)


def ms(values: list[float], q: int) -> float:
    """The q-th percentile in milliseconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--upstream-latency", type=float, default=2.0)
    parser.add_argument("--image-bytes", type=int, default=1536 * 1024)
    parser.add_argument("--ledger", help="ledger URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="costguard-bench-guard-") as name:
        folder = Path(name)
        ledger = args.ledger or str(folder / "ledger.sqlite3")
        setting = ["budget", "set", "--name", "bench", "--usd", "10000000", "--ledger", ledger]
        subprocess.run(
            [sys.executable, "-m", "costguard", *setting], check=True, capture_output=True, env=ENV
        )
        with pair(folder, ledger, args.image_bytes, 0.0) as (direct, gateway, pid):
            plain, guarded = latency(direct, gateway, args.count)
            fast = (
                throughput(direct, args.count, args.workers),
                throughput(gateway, args.count, args.workers),
            )
            rss = peak_rss_mb(pid)
        with pair(folder, ledger, args.image_bytes, args.upstream_latency) as (direct, gateway, _):
            slow = (
                throughput(direct, args.count, args.workers),
                throughput(gateway, args.count, args.workers),
            )
    added = ms(guarded, 50) - ms(plain, 50)
    weight = (
        f"images of {args.image_bytes / 1024 / 1024:.2f} MiB"
        if args.image_bytes > 0
        else "tiny images (a few hundred bytes)"
    )
    where = "given" if args.ledger else "SQLite"
    print(f"costguard guard vs direct ({os.cpu_count()} cores, {weight}, ledger {where}; "
          "OpenAI and Gemini calls alternately)")  # fmt: skip
    print(f"latency, {args.count} sequential calls each, upstream answering at once (ms):")
    print(f"  direct   p50 {ms(plain, 50):7.2f}  p90 {ms(plain, 90):7.2f}")
    print(f"  gateway  p50 {ms(guarded, 50):7.2f}  p90 {ms(guarded, 90):7.2f}")
    print(f"  added p50 {added:.2f} ms (target <= 5)")
    for label, (rate_direct, rate_gateway) in (
        ("upstream answering at once (CPU shared by client, simulator, gateway)", fast),
        (f"upstream taking {args.upstream_latency:g} s per call", slow),
    ):
        print(f"throughput, {args.count} calls from {args.workers} threads, {label}:")
        print(f"  direct {rate_direct:.1f}/s  gateway {rate_gateway:.1f}/s  ratio "
              f"{rate_gateway / rate_direct:.2f}x (target >= 0.8)")  # fmt: skip
    print(f"gateway peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
