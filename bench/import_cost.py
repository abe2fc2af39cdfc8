"""Benchmark what `import costguard` adds to a pipeline's start-up.

Times fresh interpreters running `import costguard` against `python -c pass` (the baseline),
alternating the two in the same run so both see the same machine, and prints the medians and
the difference. Also times the first use of each public function's module (`costguard.estimate`
loads the rate-card machinery, `costguard.Ledger` the ledger) and lists what `import costguard`
loads. Target (issue 19): `import costguard` under 0.15 s over the baseline.

    python bench/import_cost.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 0.15
CASES = {
    "python -c pass (baseline)": "pass",
    "import costguard": "import costguard",
    "first costguard.price(...)": "import costguard; costguard.price('gpt-image-2')",
    "first costguard.Ledger": "import costguard; costguard.Ledger",
    "import openai (for scale)": "import openai",
}


def wall(code: str) -> float:
    """Seconds for a fresh interpreter to run `code` and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="Interpreters per case (median).")
    args = parser.parse_args()
    for code in CASES.values():  # warm the file cache and bytecode once
        wall(code)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved: a busy moment hits every case alike
        for name, code in CASES.items():
            times[name].append(wall(code))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python -c pass (baseline)"]
    print(f"{args.runs} fresh interpreters per case, median wall time ({sys.version.split()[0]}):")
    for name, median in medians.items():
        extra = "" if median is base else f"  (+{median - base:.3f} s over the baseline)"
        print(f"  {name:<30} {median:.3f} s{extra}")
    added = medians["import costguard"] - base
    verdict = "met" if added < TARGET_S else "MISSED"
    print(f"import costguard adds {added:.3f} s: target < {TARGET_S} s {verdict}")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, costguard; print(sorted(m for m in sys.modules if 'costguard' in m))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"modules `import costguard` loads: {loaded}")


if __name__ == "__main__":
    main()
