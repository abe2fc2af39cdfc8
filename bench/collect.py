"""Benchmark collecting real payloads: 1.5 MiB images, flat memory, near disk speed.

For each provider and size N, against `costguard simulate serve --scenario realistic` running
in its own process (every image the size asked for, padded to 1.5 MiB):

1. `costguard run QUEUE --detach` submits N requests (1K images) and exits;
2. once the jobs have finished at the simulator, `costguard collect RUN` is timed on its own:
   wall time, peak RSS (the client), image bytes written per second;
3. the simulator is stopped and its own peak RSS read.

In the same run, the floor: writing N files of the same size with write + fsync + rename (what
costguard does for every image), so throughput is shown against this machine's disk. The Gemini
inline path (results inside the job, read by the SDK in one body) is measured too, at the
largest N the inline rule chooses (16 MiB of expected images: 10 at 1K).

    python bench/collect.py                 # N = 200 and 1,000 on both providers
    python bench/collect.py --full          # also N = 5,000 (not run by CI)
    python bench/collect.py --sizes 200 --providers gemini

Targets (issue 13): client peak RSS flat in N (at the largest N within 1.3x of the smallest,
and under 250 MB); collect throughput at least 1/4 of the floor; the run folder after
collection a few MB at most; the simulator's peak RSS at most 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
IMAGE_BYTES = 1572864
MODELS = {
    "openai": {"model": "gpt-image-2", "size": "1024x1024", "quality": "low"},
    "gemini": {"model": "gemini-3.1-flash-image", "size": "1K"},
}
INLINE_N = 10
"""The largest 1K Gemini job the inline rule sends inline (16 MiB / 1.5 MiB)."""
LISTENING = re.compile(r"(?:listening on |local clients use )(http://[^\s,]+)")


@dataclass
class Result:
    provider: str
    n: int
    path: str
    wall: float
    rss_mb: float
    written: int
    run_folder: int
    server_rss_mb: float

    @property
    def mb_s(self) -> float:
        return self.written / self.wall / 1e6 if self.wall else 0.0


def make_queue(path: Path, n: int, provider: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            line = {"key": f"img-{i:05d}", "prompt": f"catalog photo {i}", **MODELS[provider]}
            out.write(json.dumps(line) + "\n")


def waited(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for a child: (exit code, its peak RSS in MB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def serve(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [str(BIN / "costguard"), "simulate", "serve", "--port", "0", "--scenario", "realistic"]
    cmd += ["--state", str(work / "sim-state.json")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=work, env=env
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("the simulator did not start")


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, float, str]:
    """`costguard ARGS`: (exit code, wall seconds, peak RSS MB, its output)."""
    out_path = cwd / "child.out"
    with out_path.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "costguard"), *args], env=env, cwd=cwd, stdout=sink, stderr=sink
        )
        code, rss = waited(proc)
        wall = time.perf_counter() - start
    return code, wall, rss, out_path.read_text(errors="replace")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def collect_once(provider: str, n: int, work: Path) -> Result:
    """Submit N requests to a fresh simulator, wait for the jobs, time `collect` alone."""
    server, base = serve(work)
    home = work / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COSTGUARD_", "OPENAI_", "GEMINI_", "GOOGLE_"))
    }
    env |= {
        "COSTGUARD_HOME": str(home),
        "OPENAI_BASE_URL": f"{base}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "GOOGLE_GEMINI_BASE_URL": base,
        "GEMINI_API_KEY": "bench-key",
    }
    queue = work / "queue.jsonl"
    make_queue(queue, n, provider)
    out = work / "out"
    try:
        code, _, _, text = run_child(
            ["run", str(queue), "--max-usd", "100000", "--out", str(out), "--detach",
             "--output", "json"],
            env,
            work,
        )  # fmt: skip
        if code != 0:
            sys.exit(f"run of {n} ({provider}) failed with exit {code}:\n{text[-2000:]}")
        run_id = re.search(r"run-[0-9a-f]{12}", text)
        assert run_id is not None, text
        time.sleep(1.0)  # the realistic scenario: pending 600 s + running 3600 s at 7200x
        code, wall, rss, text = run_child(
            ["collect", run_id.group(0), "--poll-interval", "0.2"], env, work
        )
        if code != 0:
            sys.exit(f"collect of {n} ({provider}) failed with exit {code}:\n{text[-2000:]}")
    finally:
        server.send_signal(signal.SIGINT)
        _, server_rss = waited(server)
    images = [p for p in out.iterdir() if p.suffix in (".png", ".jpg", ".webp")]
    if len(images) != n:
        sys.exit(f"{provider} N={n}: {len(images)} images collected, expected {n}")
    written = sum(p.stat().st_size for p in images)
    path = "inline" if provider == "gemini" and n <= INLINE_N else "file"
    run_folder = folder_bytes(home / "runs" / run_id.group(0))
    return Result(provider, n, path, wall, rss, written, run_folder, server_rss)


def floor(n: int, size: int, where: Path) -> float:
    """MB/s of writing n files of `size` bytes with write + fsync + rename (costguard's way)."""
    where.mkdir()
    data = os.urandom(size)
    start = time.perf_counter()
    for i in range(n):
        tmp = where / f".{i}.tmp"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(where / f"{i}.png")
    elapsed = time.perf_counter() - start
    return n * size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--full", action="store_true", help="also N = 5,000")
    parser.add_argument(
        "--providers", nargs="+", choices=sorted(MODELS), default=["openai", "gemini"]
    )
    args = parser.parse_args()
    sizes = sorted(set(args.sizes + ([5000] if args.full else [])))
    results: list[Result] = []
    for provider in args.providers:
        runs = ([INLINE_N] if provider == "gemini" else []) + sizes
        for n in runs:
            work = Path(tempfile.mkdtemp(prefix=f"costguard-collect-{provider}-{n}-"))
            try:
                result = collect_once(provider, n, work)
                disk = floor(min(n, 1000), IMAGE_BYTES, work / "floor")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            results.append(result)
            print(
                f"{provider:>6} {result.path:>6} N={n:>5,}: collect {result.wall:6.2f} s, "
                f"{result.mb_s:6.1f} MB/s written (floor {disk:6.1f} MB/s: "
                f"{result.mb_s / disk:4.0%}), client peak RSS {result.rss_mb:6.1f} MB, "
                f"run folder {result.run_folder / 1e6:5.2f} MB, simulator peak RSS "
                f"{result.server_rss_mb:6.1f} MB",
                flush=True,
            )
    for provider in args.providers:
        files = [r for r in results if r.provider == provider and r.path == "file"]
        if len(files) >= 2:
            small, large = files[0], files[-1]
            print(
                f"{provider}: client peak RSS at N={large.n:,} / N={small.n:,}: "
                f"{large.rss_mb / small.rss_mb:.2f}x (target <= 1.3x, and < 250 MB)"
            )


if __name__ == "__main__":
    main()
