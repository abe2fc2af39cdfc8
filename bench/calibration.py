"""Benchmark calibration: how much closer estimates get once costguard learns from real runs.

Against `costguard simulate serve` in its own process, reached through GOOGLE_GEMINI_BASE_URL
(to costguard a provider like any other, so these runs are real, not rehearsals), with a
scenario in which Gemini 3 Pro Image thinks a log-normal number of tokens per request (median
and max below, drawn per request key; the card assumes 400 typical / 4,000 max):

1. `costguard run LEARN` (N requests) records what each request used in the ledger;
2. `costguard calibrate` shows what was observed against the card;
3. `costguard estimate CHECK --output json` (N other requests), from the card and `--calibrated`;
4. `costguard run CHECK --calibrated` gives the actual cost of CHECK.

Printed: the commands' output, then per estimate (card, calibrated) the expected and maximum
batch cost of CHECK against its actual cost: |expected - actual|, max - actual, and how many
requests cost more than their calibrated maximum.

    python bench/calibration.py [--requests 200] [--median 700] [--max 5000] [--sigma 0.5]
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
from decimal import Decimal
from pathlib import Path

BIN = Path(sys.executable).parent
MODEL = "gemini-3-pro-image"
LISTENING = re.compile(r"(?:listening on |local clients use )(http://[^\s,]+)")


def serve(work: Path, scenario: Path) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [str(BIN / "costguard"), "simulate", "serve", "--port", "0"]
    cmd += ["--scenario", str(scenario), "--state", str(work / "sim-state.json")]
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


def costguard(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """`costguard ARGS`: its stdout (stderr shown); exits on failure."""
    done = subprocess.run(
        [str(BIN / "costguard"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"costguard {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def make_queue(path: Path, prefix: str, n: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            line = {"key": f"{prefix}-{i:05d}", "prompt": f"catalog cover {i}", "model": MODEL}
            out.write(json.dumps(line) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--median", type=int, default=700)
    parser.add_argument("--max", type=int, default=5000)
    parser.add_argument("--sigma", type=float, default=0.5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="costguard-calibration-"))
    scenario = work / "thinking.yaml"
    scenario.write_text(
        "name: thinking\n"
        "description: Gemini thinking varies per request\n"
        "time_scale: 2000000\n"
        f"thinking_tokens: {{median: {args.median}, max: {args.max}, sigma: {args.sigma}}}\n",
        encoding="utf-8",
    )
    server, base = serve(work, scenario)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COSTGUARD_", "OPENAI_", "GEMINI_", "GOOGLE_"))
    }
    env |= {
        "COSTGUARD_HOME": str(work / "home"),
        "GOOGLE_GEMINI_BASE_URL": base,
        "GEMINI_API_KEY": "bench-key",
    }
    n = args.requests
    learn, check = work / "learn.jsonl", work / "check.jsonl"
    make_queue(learn, "learn", n)
    make_queue(check, "check", n)
    fast = ["--max-usd", "100000", "--poll-interval", "0.1"]
    try:
        print(
            f"thinking per request: log-normal, median {args.median}, max {args.max}, sigma "
            f"{args.sigma}; card {MODEL}: 400 typical / 4,000 max; {n} requests each\n"
        )
        print(f"$ costguard run learn.jsonl --max-usd 100000\n(runs {n} requests)\n")
        costguard(["run", str(learn), *fast, "--out", str(work / "out-learn")], env, work)
        print("$ costguard calibrate")
        print(costguard(["calibrate"], env, work))
        print("$ costguard estimate check.jsonl --calibrated")
        table = costguard(["estimate", str(check), "--calibrated"], env, work).splitlines()
        print("…")
        print(
            "\n".join(table[next(i for i, t in enumerate(table) if t.startswith("calibrated")) :])
        )
        print()
        estimates = {}
        for label, extra in (("card", []), ("calibrated", ["--calibrated"])):
            payload = json.loads(
                costguard(["estimate", str(check), "--output", "json", *extra], env, work)
            )
            estimates[label] = payload["totals"]["batch"]
        print("$ costguard run check.jsonl --max-usd 100000 --calibrated")
        check_args = ["run", str(check), *fast, "--calibrated", "--output", "json"]
        check_args += ["--out", str(work / "out-check")]
        summary = json.loads(costguard(check_args, env, work))
        print(f"(runs {n} new requests; actual ${summary['actual_usd']})\n")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    actual = Decimal(summary["actual_usd"])
    print(f"{n} new requests, actual batch cost ${actual}:")
    print(
        f"{'estimate':<11} {'expected':>10} {'max':>10} {'|exp - actual|':>15} {'max - actual':>13}"
    )
    for label, totals in estimates.items():
        expected, maximum = Decimal(totals["expected_usd"]), Decimal(totals["max_usd"])
        print(
            f"{label:<11} {expected:>10.4f} {maximum:>10.4f} {abs(expected - actual):>15.4f} "
            f"{maximum - actual:>13.4f}"
        )
    card, calibrated = estimates["card"], estimates["calibrated"]
    shrink = [
        abs(Decimal(card["expected_usd"]) - actual)
        / abs(Decimal(calibrated["expected_usd"]) - actual),
        (Decimal(card["max_usd"]) - actual) / (Decimal(calibrated["max_usd"]) - actual),
    ]
    print(
        f"expected error {shrink[0]:.1f}x smaller, max overshoot {shrink[1]:.1f}x smaller; "
        f"{summary['over_calibrated_max']} of {n} requests cost more than their calibrated "
        "maximum"
    )


if __name__ == "__main__":
    main()
