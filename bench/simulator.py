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
    .venv/bin/python bench/simulator.py --stream [--count 200]

`--scenario` is passed to the server (`realistic`: 1K images padded to 1.5 MiB). `--images` is a
micro-benchmark of image generation alone: images/s and MB/s of a 1K PNG padded to 1.5 MiB in
a Gemini result line, as the simulator serves it (cached head, `splice.dump_pieces`, pieces not
joined) and as it was built before (whole image, base64, `json.dumps`), against a baseline in
the same run (the same number of `os.urandom` bytes base64-encoded into the same line).
`--stream` times raw downloads from `costguard simulate serve --scenario realistic`: an OpenAI
output file and a Gemini result file of `--count` 1K PNGs (1.5 MiB each), read with httpx
streaming and thrown away (the first download, then again), and with curl when installed
(what the server sends, without a Python client's own cost). MB here is 2**20 bytes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
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
                    "model": "gpt-image-2",
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


def line_object(data: object) -> dict[str, object]:
    """A Gemini result line's object carrying one base64 image, as the result file has it."""
    part = {"inlineData": {"mimeType": "image/png", "data": data}}
    response = {"candidates": [{"content": {"parts": [part], "role": "model"}}]}
    return {"key": "k", "response": response}


def dumped_line(b64: str) -> bytes:
    """The line as the simulator wrote it before splicing: json.dumps over the whole text."""
    return json.dumps(line_object(b64), separators=(",", ":")).encode() + b"\n"


def images_micro(count: int, size: int = 1572864) -> None:
    """Print images/s and MB/s of padded 1K PNGs as result lines (as served now, and as built
    before splicing), and of the urandom baseline."""
    from costguard.simulator.images import image_base64, image_for
    from costguard.simulator.splice import dump_pieces

    seeds = [f"{'b' * 36}:{i}" for i in range(count)]  # a Gemini batch id and a position
    image_for("warm", size=(1024, 1024), pad_to=size)  # base per size, Pillow, font
    image_base64("warm", size=(1024, 1024), pad_to=size)  # the cached head's base64
    print(f"image generation: 1024x1024 PNG padded to {size:,} bytes, base64 in a JSON line")
    print(f"{'what':<34} {'images':>7} {'seconds':>8} {'images/s':>9} {'MB/s':>8}")

    def spliced(seed: str) -> int:
        data = image_base64(seed, size=(1024, 1024), pad_to=size)
        return sum(len(piece) for piece in dump_pieces(line_object(data))) + 1

    def dumped(seed: str) -> int:
        data = image_for(seed, size=(1024, 1024), pad_to=size)
        return len(dumped_line(base64.b64encode(data).decode("ascii")))

    def baseline(_seed: str) -> int:
        return len(dumped_line(base64.b64encode(os.urandom(size)).decode("ascii")))

    makers: tuple[tuple[str, Callable[[str], int]], ...] = (
        ("costguard line, spliced (served)", spliced),
        ("costguard line, json.dumps (was)", dumped),
        ("baseline os.urandom + json.dumps", baseline),
    )
    for label, make in makers:
        t0 = time.perf_counter()
        total = sum(make(seed) for seed in seeds)
        seconds = time.perf_counter() - t0
        print(
            f"{label:<34} {count:>7} {seconds:>8.2f} {count / seconds:>9.1f} "
            f"{total / MB / seconds:>8.1f}",
            flush=True,
        )


def timed_download(url: str, headers: dict[str, str]) -> tuple[int, float]:
    """(bytes, seconds) of streaming `url` to nowhere with httpx."""
    total = 0
    t0 = time.perf_counter()
    with httpx.stream("GET", url, headers=headers, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            total += len(chunk)
    return total, time.perf_counter() - t0


def curl_download(url: str, headers: dict[str, str]) -> tuple[int, float] | None:
    """(bytes, seconds) of `curl` fetching `url` to /dev/null (None without curl): what the
    server can send, without a Python client's own cost."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    flags = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        [curl, "-sf", "-o", os.devnull, "-w", "%{size_download} %{time_total}", *flags, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    size, seconds = out.split()
    return int(size), float(seconds)


def openai_output(base_url: str, count: int) -> str:
    """A finished realistic OpenAI batch of `count` requests; its output file's content URL."""
    client = OpenAI(base_url=base_url + "/v1", api_key=KEY, timeout=600)
    file = client.files.create(file=("bench.jsonl", input_file(count)), purpose="batch")
    batch = client.batches.create(
        input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    while batch.status != "completed":
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    return f"{base_url}/v1/files/{batch.output_file_id}/content"


def gemini_output(base_url: str, count: int, workdir: Path) -> str:
    """A finished realistic Gemini file batch of `count` requests; its result file's URL."""
    from google import genai

    client = genai.Client(api_key=KEY, http_options={"base_url": base_url})
    config = {"responseModalities": ["IMAGE"], "imageConfig": {"imageSize": "1K"}}
    lines = (
        {"key": f"k{i}", "request": {"contents": [{"parts": [{"text": f"item {i}"}]}],
                                     "generationConfig": config}}
        for i in range(count)
    )  # fmt: skip
    path = workdir / "gemini.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    job = client.batches.create(model="gemini-3.1-flash-image", src=uploaded.name or "")
    while job.done is not True:
        time.sleep(0.05)
        job = client.batches.get(name=job.name or "")
    assert job.dest is not None
    return f"{base_url}/download/v1beta/{job.dest.file_name}:download?alt=media"


def stream_bench(count: int) -> None:
    """Print MB/s of streamed realistic result files from `simulate serve`: the first download
    (the server draws its per-size bases then), then again with httpx and with curl."""
    print(f"streamed download from simulate serve --scenario realistic, {count} 1K PNGs")
    print(f"{'what':<40} {'MB':>8} {'seconds':>8} {'MB/s':>8}")
    proc, base_url = start_server("realistic")
    try:
        with tempfile.TemporaryDirectory(prefix="costguard-bench-") as tmp:
            urls = (
                ("OpenAI output file", openai_output(base_url, count), "Authorization"),
                ("Gemini result file", gemini_output(base_url, count, Path(tmp)), "x-goog-api-key"),
            )
            for label, url, header in urls:
                headers = {header: f"Bearer {KEY}" if header == "Authorization" else KEY}
                runs = (
                    ("httpx, first", timed_download),
                    ("httpx, again", timed_download),
                    ("curl, again", curl_download),
                )
                for how, download in runs:
                    figures = download(url, headers)
                    if figures is None:
                        continue
                    size, seconds = figures
                    print(
                        f"{label + ', ' + how:<40} {size / MB:>8.1f} {seconds:>8.2f} "
                        f"{size / MB / seconds:>8.1f}",
                        flush=True,
                    )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> int:
    """Run the sizes asked and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--scenario", help="the server's default scenario (e.g. realistic)")
    parser.add_argument("--images", action="store_true", help="image generation micro-benchmark")
    parser.add_argument("--stream", action="store_true", help="streamed result file downloads")
    parser.add_argument("--count", type=int, help="images for --images (300), --stream (200)")
    args = parser.parse_args()
    if args.images:
        images_micro(args.count or 300)
        return 0
    if args.stream:
        stream_bench(args.count or 200)
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
