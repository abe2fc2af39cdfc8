"""Benchmark `costguard run --simulate`: 10,000 and 50,000 requests, wall time and peak RSS.

Each size runs the whole cycle (price, reserve, submit, poll, collect every image, manifest,
reconcile) against the in-process simulator in a fresh `COSTGUARD_HOME`. Memory must stay
bounded: peak RSS at 50,000 requests within 1.5x of that at 10,000 (issue 4). As a baseline
in the same run, the bare cost of writing the same number of small files is timed too.

    python bench/run.py [--sizes 10000 50000] [--provider openai|gemini]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MODELS = {
    "openai": ("gpt-image-2", "1024x1024", "low"),
    "gemini": ("gemini-3.1-flash-image", "512", None),
}


def make_queue(path: Path, n: int, provider: str) -> None:
    model, size, quality = MODELS[provider]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            line = {
                "key": f"img-{i:06d}",
                "prompt": f"catalog photo number {i}, soft light",
                "model": model,
                "size": size,
            }
            if quality:
                line["quality"] = quality
            out.write(json.dumps(line) + "\n")


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = (proc.stdout.read() if proc.stdout else b"").decode()
    err = (proc.stderr.read() if proc.stderr else b"").decode()
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), out + err


def baseline(n: int, where: Path) -> float:
    """Write n small files: the floor for saving n images."""
    where.mkdir()
    start = time.perf_counter()
    for i in range(n):
        (where / f"{i}.png").write_bytes(b"\x89PNG" + i.to_bytes(4, "big") * 64)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--provider", choices=sorted(MODELS), default="openai")
    args = parser.parse_args()
    rss: dict[int, float] = {}
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"costguard-run-{n}-"))
        queue = work / "queue.jsonl"
        make_queue(queue, n, args.provider)
        env = {**os.environ, "COSTGUARD_HOME": str(work / "home")}
        cmd = [
            str(BIN / "costguard"),
            "run",
            str(queue),
            "--max-usd",
            "100000",
            "--simulate",
            "--poll-interval",
            "0.2",
            "--out",
            str(work / "out"),
            "--output",
            "json",
        ]
        wall, peak, code, text = measure(cmd, env, work)
        if code != 0:
            sys.exit(f"run of {n} failed with exit {code}:\n{text[-2000:]}")
        images = sum(1 for p in (work / "out").iterdir() if p.suffix == ".png")
        floor = baseline(n, work / "baseline")
        rss[n] = peak
        print(
            f"{n:>7,} requests ({args.provider}): wall {wall:7.2f} s, peak RSS {peak:6.1f} MB, "
            f"{images:,} images; baseline (write {n:,} small files) {floor:5.2f} s"
        )
    if len(rss) >= 2:
        small, large = min(rss), max(rss)
        print(
            f"peak RSS {large:,} / {small:,} requests: {rss[large] / rss[small]:.2f}x "
            "(target <= 1.5x)"
        )


if __name__ == "__main__":
    main()
