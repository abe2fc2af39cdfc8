#!/usr/bin/env python3
"""Benchmark: a 50,000-request OpenAI batch through `costguard simulate serve`, and 5,000.

For each size it starts a fresh server subprocess (`costguard simulate serve --port 0`), then
with the real `openai` SDK: uploads the JSONL input, creates the batch, polls until it is
completed, and streams the output file to disk. It prints wall time per step and the server's
resident memory: at rest before the upload and at its peak (psutil samples every 5 ms; on Linux
also the kernel's high-water mark, VmHWM). Memory that stays bounded shows as a peak that grows
with the input file (kept, like the real API keeps it) but not with the output, which is
generated while it is streamed.

    .venv/bin/python bench/simulator.py [--sizes 5000 50000] [--scenario realistic]
    .venv/bin/python bench/simulator.py --images [--count 300]

`--scenario` is passed to the server (`realistic`: 1K images padded to 1.5 MiB). `--images` is a
micro-benchmark of image generation alone: images/s and MB/s of a 1K PNG padded to 1.5 MiB,
base64-encoded into a Gemini result line, against a baseline in the same run (the same number
of `os.urandom` bytes base64-encoded into the same line).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from openai import OpenAI

KEY = "sk-bench"
MB = 1024 * 1024


@dataclass
class Result:
    """Figures of one run."""

    requests: int
    input_mb: float
    output_mb: float
    upload_s: float
    create_s: float
    wait_s: float
    download_s: float
    total_s: float
    rest_rss_mb: float
    peak_rss_mb: float
    hwm_mb: float | None


class Sampler(threading.Thread):
    """Samples a process's RSS until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)


def high_water_mark(pid: int) -> float | None:
    """VmHWM of a Linux process in MB (None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def input_file(count: int) -> bytes:
    """`count` image-generation request lines."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"req-{i:06d}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {
                    "model": "gpt-image-1.5",
                    "prompt": f"a product photo of item {i}, studio light",
                    "size": "1024x1024",
                    "quality": "low",
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def start_server(scenario: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """A fresh `costguard simulate serve --port 0`; its process and base URL."""
    script = Path(sys.executable).with_name("costguard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "costguard"]
    proc = subprocess.Popen(
        [
            *command,
            "simulate",
            "serve",
            "--port",
            "0",
            *(["--scenario", scenario] if scenario else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, found.group(1)
    msg = "costguard simulate serve did not start"
    raise RuntimeError(msg)


def run(count: int, workdir: Path, scenario: str | None = None) -> Result:
    """One upload -> completion -> download cycle of `count` requests."""
    data = input_file(count)
    proc, base_url = start_server(scenario)
    try:
        client = OpenAI(base_url=base_url + "/v1", api_key=KEY, timeout=600)
        client.batches.list()  # warm: the server has imported everything it needs
        rest = psutil.Process(proc.pid).memory_info().rss
        sampler = Sampler(proc.pid)
        sampler.start()
        t0 = time.perf_counter()
        file = client.files.create(file=("bench.jsonl", data), purpose="batch")
        t1 = time.perf_counter()
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        t2 = time.perf_counter()
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
        t3 = time.perf_counter()
        if batch.status != "completed" or batch.output_file_id is None:
            msg = f"batch ended {batch.status}: {batch.errors}"
            raise RuntimeError(msg)
        target = workdir / f"output-{count}.jsonl"
        lines = 0
        with (
            client.files.with_streaming_response.content(batch.output_file_id) as response,
            target.open("wb") as out,
        ):
            for chunk in response.iter_bytes():
                out.write(chunk)
                lines += chunk.count(b"\n")
        t4 = time.perf_counter()
        sampler.done.set()
        sampler.join()
        if lines != count:
            msg = f"output has {lines} lines, expected {count}"
            raise RuntimeError(msg)
        return Result(
            requests=count,
            input_mb=len(data) / MB,
            output_mb=target.stat().st_size / MB,
            upload_s=t1 - t0,
            create_s=t2 - t1,
            wait_s=t3 - t2,
            download_s=t4 - t3,
            total_s=t4 - t0,
            rest_rss_mb=rest / MB,
            peak_rss_mb=sampler.peak / MB,
            hwm_mb=high_water_mark(proc.pid),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def line_of(b64: str) -> bytes:
    """A Gemini result line carrying one base64 image, as the result file has it."""
    part = {"inlineData": {"mimeType": "image/png", "data": b64}}
    response = {"candidates": [{"content": {"parts": [part], "role": "model"}}]}
    return json.dumps({"key": "k", "response": response}, separators=(",", ":")).encode() + b"\n"


def images_micro(count: int, size: int = 1572864) -> None:
    """Print images/s and MB/s of padded 1K PNGs as result lines, and of the urandom baseline."""
    from costguard.simulator.images import image_for

    image_for("warm", size=(1024, 1024), pad_to=size)  # base per size, Pillow, font
    print(f"image generation: 1024x1024 PNG padded to {size:,} bytes, base64 in a JSON line")
    print(f"{'what':<28} {'images':>7} {'seconds':>8} {'images/s':>9} {'MB/s':>8}")
    makers: tuple[tuple[str, Callable[[int], bytes]], ...] = (
        (
            "costguard image + line",
            lambda i: image_for(f"batch:{i}", size=(1024, 1024), pad_to=size),
        ),
        ("baseline os.urandom + line", lambda _i: os.urandom(size)),
    )
    for label, make in makers:
        t0 = time.perf_counter()
        total = 0
        for i in range(count):
            total += len(line_of(base64.b64encode(make(i)).decode("ascii")))
        seconds = time.perf_counter() - t0
        print(
            f"{label:<28} {count:>7} {seconds:>8.2f} {count / seconds:>9.1f} "
            f"{total / MB / seconds:>8.1f}",
            flush=True,
        )


def main() -> int:
    """Run the sizes asked and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--scenario", help="the server's default scenario (e.g. realistic)")
    parser.add_argument("--images", action="store_true", help="image generation micro-benchmark")
    parser.add_argument("--count", type=int, default=300, help="images for --images")
    args = parser.parse_args()
    if args.images:
        images_micro(args.count)
        return 0
    header = (
        f"{'requests':>9} {'in MB':>7} {'out MB':>7} {'upload s':>9} {'create s':>9} "
        f"{'wait s':>7} {'download s':>11} {'total s':>8} {'rest RSS':>9} {'peak RSS':>9} "
        f"{'VmHWM':>7}"
    )
    print("costguard simulate serve: OpenAI file batch, upload -> completion -> download")
    print(header)
    with tempfile.TemporaryDirectory(prefix="costguard-bench-") as tmp:
        for count in args.sizes:
            r = run(count, Path(tmp), args.scenario)
            hwm = f"{r.hwm_mb:6.1f}M" if r.hwm_mb is not None else "    n/a"
            print(
                f"{r.requests:>9,} {r.input_mb:>7.1f} {r.output_mb:>7.1f} {r.upload_s:>9.2f} "
                f"{r.create_s:>9.2f} {r.wait_s:>7.2f} {r.download_s:>11.2f} {r.total_s:>8.2f} "
                f"{r.rest_rss_mb:>8.1f}M {r.peak_rss_mb:>8.1f}M {hwm}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
