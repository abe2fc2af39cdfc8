"""Admission time against how many closed runs (with spend) a budget's window holds.

Fills one monthly budget with N closed runs (admit, record_spend, settle: what the gateway does
per call), then times admissions of fresh runs (each released after, so open runs stay 0).
SQLite in a temporary file; PostgreSQL on a throw-away server (`tests/pgserver.py`).

    python bench/admit_window.py [--runs 0,1000,6000] [--samples 50] [--backend sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def measure(location: str, sizes: list[int], samples: int) -> list[tuple[int, float]]:
    """Admit p50 (ms) at each window size."""
    from costguard.ledger import open_ledger

    out = []
    with open_ledger(location) as ledger:
        ledger.set_budget("bench", usd=Decimal(1_000_000), period="month")
        filled = 0
        for size in sizes:
            while filled < size:
                now = datetime.now(UTC)
                run = f"fill-{filled}"
                ledger.admit(run, Decimal("0.05"), budget="bench", owner="b", at=now)
                ledger.record_spend(run, "p", Decimal("0.04"), at=now)
                ledger.settle(run, status="completed", at=now)
                filled += 1
            times = []
            for i in range(samples):
                run = f"probe-{size}-{i}"
                now = datetime.now(UTC)
                t0 = time.perf_counter()
                ledger.admit(run, Decimal("0.05"), budget="bench", owner="b", at=now)
                times.append(time.perf_counter() - t0)
                ledger.release(run, at=now, reason="probe")
            out.append((size, statistics.median(times) * 1000))
    return out


def main() -> None:
    """Parse the options, print admit p50 per window size and back end."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="0,1000,6000")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--backend", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.runs.split(","))
    for backend in args.backend.split(","):
        with ExitStack() as stack:
            if backend == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                location = str(Path(folder) / "ledger.sqlite3")
            else:
                import pgserver

                server = stack.enter_context(pgserver.running())
                location = server.create_database("bench")
            for size, p50 in measure(location, sizes, args.samples):
                print(f"{backend:10} runs={size:6d} admit p50 {p50:6.2f} ms", flush=True)


if __name__ == "__main__":
    main()
