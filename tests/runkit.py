"""Shared helpers for the runner, run CLI, resume and journal tests (plain functions, no fixtures).

Queues whose statuses under each built-in scenario are known in advance, scenario files with
short timelines, manifest and ledger readers, an independent price check, and the subprocess
plumbing of the kill -9 tests.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from costguard.pricing.engine import RateBook
from costguard.simulator.scenario import builtin_dir

AS_OF = dt.date(2026, 11, 1)
"""Cards in force for every test (shipped cards; independent of today's date)."""
MTOK = Decimal(1_000_000)

GEMINI_LINES: list[dict[str, Any]] = [
    {"key": "g-hero-1", "prompt": "Matte black mug on oak", "model": "gemini-3.1-flash-image"},
    {
        "key": "g-hero-2",
        "prompt": "Steel bottle, café counter — morning",
        "model": "gemini-3.1-flash-image",
        "aspect_ratio": "4:5",
    },
    {
        "key": "g-banner",
        "prompt": "Wide banner: trail at sunrise",
        "model": "gemini-3.1-flash-image",
        "size": "2K",
        "aspect_ratio": "21:9",
    },
    {"key": "g-thumb", "prompt": "Red kettle, flat lay", "model": "gemini-3.1-flash-image"},
    {"key": "Cover #1/Spring", "prompt": "Tote bag on a hook", "model": "gemini-3.1-flash-image"},
    {"key": "g-cover", "prompt": "Magazine cover, botanical", "model": "gemini-3-pro-image"},
]
"""Two parts: five Flash requests (position 3 is `refusals`' victim), one Pro request."""

OPENAI_LINES: list[dict[str, Any]] = [
    {
        "key": "o-portrait",
        "prompt": "Runner tying shoelaces, side light",
        "model": "gpt-image-1.5",
        "size": "1024x1536",
        "quality": "medium",
    },
    {
        "key": "o-pair",
        "prompt": "Cyclist at dawn — two takes",
        "model": "gpt-image-1.5",
        "size": "1024x1024",
        "quality": "low",
        "n": 2,
    },
    {
        "key": "o-landscape",
        "prompt": "Empty bridge, fog",
        "model": "gpt-image-1.5",
        "size": "1536x1024",
        "quality": "low",
    },
    {
        "key": "o-square",
        "prompt": "Perfume on marble",
        "model": "gpt-image-1.5",
        "size": "1024x1024",
        "quality": "low",
    },
    {
        "key": "o-wide",
        "prompt": "Harbour at night",
        "model": "gpt-image-1.5",
        "size": "1536x1024",
        "quality": "low",
    },
    {
        "key": "o-hq",
        "prompt": "Glass bottle, gold reflections",
        "model": "gpt-image-2",
        "size": "1024x1024",
        "quality": "low",
    },
]
"""Two parts: five GPT Image 1.5 requests (one with n=2), one GPT Image 2 request."""

LINES = {"gemini": GEMINI_LINES, "openai": OPENAI_LINES}

SCENARIOS = ["succeeded", "refusals", "expired", "cancelled", "failed", "flaky", "slow", "shuffled"]


def encode_line(obj: dict[str, Any], index: int) -> bytes:
    """One queue line with idiosyncratic bytes (spacing, raw UTF-8, trailing blank) to compare."""
    text = json.dumps(obj, ensure_ascii=False, separators=(", ", ":") if index % 2 else (",", ": "))
    return (text + " " * (index % 3)).encode()


def write_queue(path: Path, lines: Iterable[dict[str, Any] | bytes]) -> list[bytes]:
    """Write a queue file (LF newlines) and return its lines as written, without newlines."""
    raw = [
        line if isinstance(line, bytes) else encode_line(line, i) for i, line in enumerate(lines)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(r + b"\n" for r in raw))
    return raw


def scenario_file(folder: Path, base: str, name: str | None = None, **overrides: Any) -> Path:
    """A scenario YAML in `folder`: built-in `base` with `overrides` (fast clock by default)."""
    data = yaml.safe_load((builtin_dir() / f"{base}.yaml").read_text(encoding="utf-8"))
    data["name"] = name or f"{base}-fast"
    data.setdefault("time_scale", 7200)
    data["time_scale"] = overrides.pop("time_scale", 2_000_000)
    data.update(overrides)
    path = folder / f"{data['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def parts_of(lines: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Keys per provider job, in queue order (OpenAI edits apart from generations)."""
    parts: dict[str, list[str]] = {}
    for line in lines:
        endpoint = "edits" if line.get("images") and line["model"].startswith("gpt") else "gen"
        parts.setdefault(f"{line['model']}|{endpoint}", []).append(line["key"])
    return parts


def expected_statuses(lines: list[dict[str, Any]], scenario: str, provider: str) -> dict[str, str]:
    """Each key's status under a built-in scenario, from the documented scenario rules."""
    expected: dict[str, str] = {}
    for keys in parts_of(lines).values():
        count = len(keys)
        for position, key in enumerate(keys):
            if scenario == "refusals":
                status = "refused" if position % 4 == 3 else "ok"
            elif scenario == "expired":
                kept = int(count * 0.6) if provider == "openai" else 0
                status = "ok" if position < kept else "expired"
            elif scenario == "cancelled":
                status = "ok" if position < int(count * 0.5) else "cancelled"
            elif scenario == "failed":
                status = "failed"
            else:
                status = "ok"
            expected[key] = status
    return expected


def manifest(out: Path) -> list[dict[str, Any]]:
    """Every line of `<out>/manifest.jsonl`."""
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


def by_key(out: Path) -> dict[str, dict[str, Any]]:
    """Manifest lines by key (asserting each key appears once)."""
    lines = manifest(out)
    keyed = {line["key"]: line for line in lines}
    assert len(keyed) == len(lines), "a key has more than one manifest line"
    return keyed


def token_price(book: RateBook, line: dict[str, Any], mode: str) -> Decimal:
    """What the rate card charges for the tokens a manifest line reports (0 without tokens)."""
    tokens = line["tokens"]
    if not tokens:
        return Decimal(0)
    rates = book.resolve(line["model"], AS_OF).model.modes[mode]  # type: ignore[index]
    assert rates.output_image_per_mtok is not None, "these tests use token-priced models"
    text_in = rates.input_text_per_mtok or Decimal(0)
    image_in = rates.input_image_per_mtok if rates.input_image_per_mtok is not None else text_in
    return (
        tokens["input_text_tokens"] * text_in
        + tokens["input_image_tokens"] * image_in
        + tokens["output_text_tokens"] * (rates.output_text_per_mtok or Decimal(0))
        + tokens["output_image_tokens"] * rates.output_image_per_mtok
    ) / MTOK


def check_images(out: Path, line: dict[str, Any], n: int) -> None:
    """An ok line names `n` files `<stem>.<ext>` (or `<stem>-<i>.<ext>`) that decode as images."""
    from costguard.execution.outputs import safe_name

    stem = safe_name(line["key"])
    names = line["files"]
    if n == 1:
        assert [Path(name).stem for name in names] == [stem]
    else:
        assert [Path(name).stem for name in names] == [f"{stem}-{i}" for i in range(1, n + 1)]
    for name in names:
        with Image.open(out / name) as image:
            image.load()
            assert image.width > 0
            assert (
                Path(name).suffix
                == {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[str(image.format)]
            )


def retry_bytes(raw: list[bytes], lines: list[dict[str, Any]], statuses: dict[str, str]) -> bytes:
    """The retry file expected: the original bytes of the lines whose status is in `statuses`."""
    return b"".join(
        r + b"\n" for r, line in zip(raw, lines, strict=True) if line["key"] in statuses
    )


def image_stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every image in `out`, to prove none is rewritten."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.iterdir()
        if p.suffix in {".png", ".jpg", ".webp"}
    }


# --- subprocesses --------------------------------------------------------------------------


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a `costguard` child: its own home, no provider keys or base URLs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COSTGUARD_", "OPENAI_", "GEMINI_", "GOOGLE_"))
    }
    env["COSTGUARD_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """`python -m costguard ARGS` in the background (stdout and stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "costguard", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a child and return (exit code, stdout, stderr); kill it if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"costguard did not finish: {err[-2000:]}") from None
    return proc.returncode, out, err


def wait_until(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30
) -> None:
    """Poll the file system until `ready()`; fail (killing the child) on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"child exited ({proc.returncode}) before {what}: {err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_json(path: Path) -> Any:
    """A JSON file, or None while it does not exist or is being replaced."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
