"""Benchmark `costguard estimate` on a generated 1,000,000-line queue.

Prints wall time and peak RSS of `costguard estimate` beside a bare `json.loads`-per-line loop
over the same file, run in the same session, plus the median wall time of `costguard --help`.
Targets (issue 2): estimate at most 2.5x the bare loop, peak RSS at most 100 MB, `--help`
median at most 0.4 s.

    python bench/estimate.py [--lines N] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MIX = [
    ("gemini-3.1-flash-image", "1K", None),
    ("gemini-3.1-flash-image", "512", None),
    ("gemini-3-pro-image", "2K", None),
    ("gpt-image-2", "3840x2160", "high"),
    ("gpt-image-2", "1536x1024", "low"),
]
WORDS = [
    "studio",
    "product",
    "shot",
    "of",
    "a",
    "ceramic",
    "mug",
    "bottle",
    "tote",
    "bag",
    "on",
    "oak",
    "marble",
    "soft",
    "light",
]

BARE_LOOP = """
import json, sys
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        if line.strip():
            json.loads(line)
            n += 1
print(n)
"""


def make_queue(path: Path, lines: int) -> None:
    """Write a deterministic queue of `lines` requests across models and sizes."""
    rng = random.Random(1234)
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            model, size, quality = MIX[i % len(MIX)]
            record = {
                "key": f"item-{i:07d}",
                "prompt": " ".join(rng.choices(WORDS, k=rng.randint(8, 30))),
                "model": model,
                "size": size,
            }
            if quality:
                record["quality"] = quality
            out.write(json.dumps(record) + "\n")


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Run `cmd`; return wall seconds, peak RSS in MB, exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode())
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the queue here and keep it")
    args = parser.parse_args()
    queue = args.keep or Path(tempfile.mkdtemp(prefix="costguard-bench-")) / "queue.jsonl"
    make_queue(queue, args.lines)
    size_mb = queue.stat().st_size / 1e6
    print(f"queue: {args.lines:,} lines, {size_mb:.1f} MB ({queue})")

    costguard = [str(BIN / "costguard"), "estimate", str(queue), "--as-of", "2026-11-26"]
    bare = [sys.executable, "-c", BARE_LOOP, str(queue)]
    runs: dict[str, list[tuple[float, float]]] = {
        "bare json.loads loop": [],
        "costguard estimate": [],
    }
    for _ in range(2):  # interleave so both see the same page cache and machine load
        for name, cmd in (("bare json.loads loop", bare), ("costguard estimate", costguard)):
            wall, rss, code = measure(cmd)
            if code != 0:
                sys.exit(f"{name} failed with exit code {code}")
            runs[name].append((wall, rss))
    best = {name: (min(w for w, _ in r), max(m for _, m in r)) for name, r in runs.items()}
    for name, (wall, rss) in best.items():
        print(f"{name:22s} wall {wall:6.2f} s   peak RSS {rss:6.1f} MB   (best of 2)")
    ratio = best["costguard estimate"][0] / best["bare json.loads loop"][0]
    rss = best["costguard estimate"][1]
    print(f"ratio estimate/bare: {ratio:.2f}x (target <= 2.5x)")
    print(f"estimate peak RSS: {rss:.1f} MB (target <= 100 MB)")

    helps = [measure([str(BIN / "costguard"), "--help"])[0] for _ in range(7)]
    print(f"costguard --help median {statistics.median(helps):.3f} s over 7 runs (target <= 0.4 s)")
    bare_start = [measure([sys.executable, "-c", "pass"])[0] for _ in range(7)]
    print(f"(baseline: bare python start-up median {statistics.median(bare_start):.3f} s)")
    if not args.keep:
        queue.unlink()


if __name__ == "__main__":
    main()
