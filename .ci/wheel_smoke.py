"""The wheel alone, as a user installs it: costguard and its runtime dependencies, nothing else.

`python3 dev.py wheel-smoke` (part of `python3 dev.py test`) builds the wheel, installs it in a
fresh venv without extras, and runs this file with that venv's python. Each step is a command a
new user runs first; any import of a test-only library (pytest, a pytest plugin) fails it.

Usage: python wheel_smoke.py EXAMPLES_DIR
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
COSTGUARD = str(BIN / "costguard")


def cli(*args: str, env: dict[str, str]) -> str:
    """Run `costguard ARGS`; its stdout, or stop with its output when it fails."""
    done = subprocess.run(
        [COSTGUARD, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        msg = f"costguard {' '.join(args)} -> exit {done.returncode}\n{done.stdout}{done.stderr}"
        raise AssertionError(msg)
    return done.stdout


@contextlib.contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """`costguard simulate serve --port 0 --output json` in a subprocess; yields its base URL.

    Its first stdout line says where it listens (the readiness signal programs use).
    """
    proc = subprocess.Popen(
        [COSTGUARD, "simulate", "serve", "--port", "0", "--output", "json"],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        with contextlib.suppress(ValueError):
            found.append(json.loads(first)["url"])
        ready.set()
        proc.stdout.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=60)
        if not found:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            msg = f"costguard simulate serve --output json gave no URL:\n{err}"
            raise AssertionError(msg)
        yield found[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=30)


def main(examples: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="costguard-smoke-"))
    env = {**os.environ, "COSTGUARD_HOME": str(work / "home")}
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "COSTGUARD_LEDGER_URL"):
        env.pop(name, None)
    catalog = str(examples / "catalog.jsonl")

    def no_pytest() -> str:
        if importlib.util.find_spec("pytest") is not None:
            msg = f"pytest is importable in {sys.prefix}: this venv is not the wheel alone"
            raise AssertionError(msg)
        return "pytest is not installed here"

    def estimate() -> str:
        lines = cli("estimate", catalog, env=env).strip().splitlines()
        return next(line for line in lines if line.startswith("TOTAL"))

    def run_simulated() -> str:
        out = work / "out"
        cli("run", catalog, "--max-usd", "1", "--simulate", "--out", str(out), env=env)
        lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        images = [f for line in lines for f in line["files"]]
        missing = [f for f in images if not (out / f).is_file()]
        if not lines or missing:
            msg = f"run --simulate wrote {len(lines)} manifest lines; images missing: {missing}"
            raise AssertionError(msg)
        return f"{len(lines)} requests, {len(images)} images in {out}"

    def run_realistic() -> str:
        from PIL import Image

        out = work / "out-realistic"
        cli("run", catalog, "--max-usd", "1", "--simulate", "realistic", "--out", str(out), env=env)
        lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        sizes = {}
        for name in (f for line in lines for f in line["files"]):
            with Image.open(out / name) as image:
                image.load()
                sizes[name] = (image.size, (out / name).stat().st_size)
        hero = sizes.get("sku-1001-hero.png")
        if hero is None or hero[0] != (1024, 1024) or hero[1] < 1_500_000:
            msg = f"sku-1001-hero.png (1K, 1:1, padded to 1.5 MiB) came back as {hero}"
            raise AssertionError(msg)
        return f"{len(sizes)} images drawn with Pillow at the sizes asked, 1.5 MiB each"

    def report() -> str:
        from PIL import Image

        out = work / "out-realistic"
        page = cli("report", "last", env=env).strip()
        if page != str(out / "report.html"):
            msg = f"costguard report last printed {page!r}, not {out / 'report.html'}"
            raise AssertionError(msg)
        text = Path(page).read_text(encoding="utf-8")
        facts = json.loads(cli("report", "last", "--output", "json", env=env))
        thumbs = sorted((out / "thumbs").glob("*.png.*"))
        for thumb in thumbs:
            with Image.open(thumb) as image:
                image.load()
        heaviest = max(t.stat().st_size for t in thumbs)
        tiles = text.count('<figure class="tile')
        images = sum(len(i["files"]) for i in facts["images"])
        without = sum(1 for i in facts["images"] if not i["files"])
        if tiles != images + without or len(thumbs) != images:
            msg = f"{tiles} tiles, {len(thumbs)} thumbnails for {images} images ({facts['counts']})"
            raise AssertionError(msg)
        return f"{tiles} tiles, {len(thumbs)} thumbnails (largest {heaviest:,} bytes)"

    def budget_show() -> str:
        return cli("budget", "show", env=env).strip().splitlines()[0]

    def serve_and_sdk_call() -> str:
        from openai import OpenAI

        with served(env) as base_url:
            client = OpenAI(api_key="sk-smoke", base_url=f"{base_url}/v1")
            try:
                uploaded = client.files.create(
                    file=("q.jsonl", b'{"custom_id":"a"}\n'), purpose="batch"
                )
                listed = [f.id for f in client.files.list()]
            finally:
                client.close()
        if uploaded.id not in listed:
            msg = f"uploaded {uploaded.id}, listed {listed}"
            raise AssertionError(msg)
        return f"files.create + files.list through {base_url}"

    def completion() -> str:
        done = subprocess.run(
            [COSTGUARD],
            env={
                **env,
                "_COSTGUARD_COMPLETE": "complete_bash",
                "COMP_WORDS": "costguard sta",
                "COMP_CWORD": "1",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.stdout.split() != ["status"]:
            msg = f"completing `costguard sta` gave {done.stdout!r} (exit {done.returncode})"
            raise AssertionError(msg)
        return "bash completes `costguard sta` to status"

    def in_process_simulate() -> str:
        from openai import OpenAI

        import costguard

        with costguard.simulate() as sim:
            client = OpenAI(api_key="sk-smoke")
            try:
                client.batches.list()
            finally:
                client.close()
        count = sim.calls.count("openai.batches.list")
        if count != 1:
            msg = f"costguard.simulate() saw {count} batches.list calls, not 1"
            raise AssertionError(msg)
        return "costguard.simulate() answered batches.list in-process"

    def python_api() -> str:
        code = f"""
import costguard
estimate = costguard.estimate({catalog!r})
with costguard.Ledger.open() as ledger:
    ledger.set_budget("smoke-api", 5)
    hold = ledger.budget("smoke-api").reserve(estimate.max, owner="smoke")
    ledger.settle(hold.id, estimate.batch.expected)
    left = ledger.budget("smoke-api").remaining
summary = costguard.run(
    {catalog!r}, max_usd=1, simulate=True, new_run=True, out={str(work / "api-out")!r}
)
print(estimate.requests, left, summary.counts.get("ok"), summary.report.name)
"""
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise AssertionError(done.stderr.strip().splitlines()[-1])
        requests, left, ok, page = done.stdout.split()
        if requests != "12" or ok != "12" or page != "report.html":
            raise AssertionError(f"unexpected: {done.stdout.strip()}")
        return f"estimate, reserve + settle (${left} left of $5), run(simulate=True): {ok} ok"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("no pytest", no_pytest),
        ("costguard estimate", estimate),
        ("costguard run --simulate", run_simulated),
        ("costguard run --simulate realistic (Pillow)", run_realistic),
        ("costguard report: page and thumbnails (Pillow)", report),
        ("costguard budget show", budget_show),
        ("costguard simulate serve + SDK call", serve_and_sdk_call),
        ("shell completion", completion),
        ("costguard.simulate() in-process", in_process_simulate),
        ("Python API (estimate, Ledger, run)", python_api),
    ]
    failed = 0
    for name, step in steps:
        try:
            print(f"ok   {name}: {step()}", flush=True)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
    print(f"wheel alone: {len(steps) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
