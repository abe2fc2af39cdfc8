#!/usr/bin/env python3
"""Benchmark: a queue far past the provider's batch quota runs to the end, in bounded memory.

For each size N (20,000 and 200,000 requests by default) it writes a queue of N tiny
gpt-image-2 requests and runs `costguard run` on it as a subprocess, as a user runs it, against
`costguard simulate serve` in another process (its base URL in `OPENAI_BASE_URL`, as a real
provider), whose OpenAI quota (enqueued tokens for gpt-image-2) is 10% of the queue's tokens;
the same limit is given to costguard (`--max-enqueued-tokens`): the run plans
~10 parts that each fit, keeps at most what the quota holds in flight, and submits the rest as
earlier parts finish. Printed per N: wall time, parts, how many submissions waited for quota,
and the run's peak RSS (its own, from `wait4`), with the ratio of the largest N to the smallest
(target: at most 1.3x).

Then it runs the largest N once more in this process, with the simulator's clock stopped (each
of the runner's sleeps moves it), and measures the scheduler's own time per part: the time in
`run_jobs` minus the provider calls and the sleeps.

    python bench/quota.py [--sizes 20000 200000] [--quota 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = str(ROOT / "src")
sys.path.insert(0, SRC)

MODEL = "gpt-image-2"
AS_OF = "2026-11-01"


def write_queue(path: Path, count: int) -> None:
    """`count` tiny low-quality requests, one JSON line each."""
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            row = {"key": f"r{number:06}", "prompt": "a red fox in snow", "model": MODEL}
            row |= {"quality": "low", "size": "1024x1024"}
            handle.write(json.dumps(row) + "\n")


def queue_tokens(queue: Path) -> int:
    """The queue's tokens as costguard counts them (each request at its most)."""
    import datetime as dt

    from costguard.pricing.engine import max_tokens
    from costguard.pricing.loader import load_book
    from costguard.queue.reader import QueueReader

    book = load_book()
    at = dt.date.fromisoformat(AS_OF)
    card = book.resolve(MODEL, at).model
    return sum(max_tokens(card, request) for request in QueueReader(queue, book, at))


def write_scenario(path: Path, limit: int) -> None:
    """Jobs done in a blink (the quota, not the clock, sets the pace)."""
    path.write_text(
        json.dumps(
            {
                "name": "bench-quota",
                "description": "tiny images, an enqueued-token quota",
                "time_scale": 36000,
                "pending_s": 60,
                "running_s": 600,
                "finalizing_s": 60,
                "quota": {"enqueued_tokens": {MODEL: limit}},
            }
        ),
        encoding="utf-8",
    )


def run_once(work: Path, count: int, share: float) -> dict[str, Any]:
    """`costguard run` of `count` requests under a quota of `share` of them, against
    `costguard simulate serve` in a process of its own (so the run's peak RSS is costguard's
    alone, not the simulated provider's)."""
    queue = work / f"queue-{count}.jsonl"
    write_queue(queue, count)
    limit = int(queue_tokens(queue) * share)
    scenario = work / f"quota-{count}.yaml"
    write_scenario(scenario, limit)
    env = dict(os.environ, PYTHONPATH=SRC, COSTGUARD_HOME=str(work / f"home-{count}"))
    serve = ["simulate", "serve", "--port", "0", "--scenario", str(scenario), "--output", "json"]
    sim = subprocess.Popen(
        [sys.executable, "-m", "costguard", *serve],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert sim.stdout is not None
    url = json.loads(sim.stdout.readline())["url"]
    env |= {"OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "sk-bench-quota"}
    args = [
        sys.executable, "-m", "costguard", "run", str(queue), "--max-usd", "100000",
        "--out", str(work / f"out-{count}"), "--as-of", AS_OF,
        "--max-enqueued-tokens", f"{MODEL}={limit}", "--poll-interval", "0.2",
        "--no-report", "--output", "json",
    ]  # fmt: skip
    began = time.perf_counter()
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        sim.terminate()
        sim.wait(timeout=60)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"costguard run of {count:,} requests exited {proc.returncode}")
    summary = json.loads(out)
    return {
        "count": count,
        "wall": wall,
        "parts": len(summary["parts"]),
        "waits": summary["quota"]["waits"],
        "ok": summary["counts"].get("ok", 0),
        "rss_mb": usage.ru_maxrss / 1024,
        "limit": limit,
    }


def scheduler_time(work: Path, count: int, share: float) -> tuple[float, int]:
    """(the scheduler's own seconds per part, parts) for one in-process run of `count`."""
    import datetime as dt

    from costguard.execution import schedule
    from costguard.execution.options import QuietReporter, RunOptions
    from costguard.execution.runner import Runner
    from costguard.ledger import open_ledger
    from costguard.pricing.loader import load_book
    from costguard.providers.openai import OpenAIProvider
    from costguard.simulator import simulate
    from costguard.simulator.scenario import load_scenario

    queue = work / f"queue-{count}.jsonl"
    limit = int(queue_tokens(queue) * share)
    scenario = load_scenario(str(work / f"quota-{count}.yaml"))
    spent = {"provider": 0.0, "sleep": 0.0, "loop": 0.0}

    class Timed:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if name not in ("submit", "status", "find_job"):
                return attr

            def timed(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return attr(*args, **kwargs)
                finally:
                    spent["provider"] += time.perf_counter() - began

            return timed

    original = schedule.run_jobs

    def run_jobs(ctx: Any, options: Any) -> None:
        began = time.perf_counter()
        try:
            original(ctx, options)
        finally:
            spent["loop"] += time.perf_counter() - began

    schedule.run_jobs = run_jobs  # type: ignore[assignment]
    import costguard.execution.runner as runner_module

    runner_module.run_jobs = run_jobs  # type: ignore[assignment]
    with (
        simulate(scenario, time_scale=0) as sim,
        open_ledger(work / "ledger-inproc.sqlite3") as led,
    ):

        def sleep(seconds: float) -> None:
            began = time.perf_counter()
            sim.advance(max(seconds, 1.0) * 3600)
            spent["sleep"] += time.perf_counter() - began

        runner = Runner(
            home=work / "home-inproc", ledger=led, book=load_book(),
            providers=lambda _name, base: Timed(OpenAIProvider("sim-key", base=base)),
            reporter=QuietReporter(lambda _m: None), sleep=sleep,
        )  # fmt: skip
        options = RunOptions(
            queue=queue, max_usd=Decimal(100000), out=work / "out-inproc",
            as_of=dt.date.fromisoformat(AS_OF), poll_interval=1.0,
            max_enqueued_tokens={MODEL: limit},
        )  # fmt: skip
        summary = runner.start(options)
    own = spent["loop"] - spent["provider"] - spent["sleep"]
    return own / len(summary.parts), len(summary.parts)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--quota", type=float, default=0.1, help="quota as a share of the queue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="costguard-bench-quota-") as name:
        work = Path(name)
        rows = [run_once(work, count, args.quota) for count in sorted(args.sizes)]
        print(f"costguard run through an enqueued-token quota of {args.quota:.0%} of the queue "
              f"({MODEL}, tiny images, {os.cpu_count()} cores)")  # fmt: skip
        for row in rows:
            print(
                f"  {row['count']:>8,} requests: {row['wall']:7.1f} s, {row['parts']} parts, "
                f"{row['waits']} submissions waited, {row['ok']:,} ok, "
                f"peak RSS {row['rss_mb']:.0f} MB (limit {row['limit']:,} tokens)"
            )
        ratio = rows[-1]["rss_mb"] / rows[0]["rss_mb"]
        print(f"  peak RSS {rows[-1]['count']:,} / {rows[0]['count']:,}: {ratio:.2f}x "
              "(target <= 1.3)")  # fmt: skip
        per_part, parts = scheduler_time(work, rows[-1]["count"], args.quota)
        print(f"  scheduler's own time per part ({rows[-1]['count']:,} requests, {parts} parts; "
              f"provider calls and waits excluded): {per_part * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
