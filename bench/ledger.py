"""Benchmark ledger admissions: admissions per second for 1, 4 and 16 concurrent processes,
on a SQLite file and on PostgreSQL.

Each process opens its own ledger, waits for the start signal, then admits its share of runs
(one transaction each: lock, read what the budget has left, check, insert) against one shared
monthly budget large enough for all of them, timing every call. The PostgreSQL server is a
throw-away one started here as in the tests (`tests/pgserver.py`: initdb + pg_ctl in a
temporary folder, fsync off; as root it runs as an unprivileged user), so the figures measure
costguard and the database engine, not a network or disk.

All processes charge the same budget, so every admission queues for that budget's lock: this
is the worst case for a team (one budget, many runners). Open runs accumulate during a
measurement (nothing settles), as they would in a burst of submissions.

    python bench/ledger.py [--admissions N] [--processes 1,4,16] [--backend sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

WORKER = """
import json, sys, time
from datetime import datetime, timezone
from decimal import Decimal
from costguard.ledger import open_ledger

location, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ledger = open_ledger(location)
print("ready", flush=True)
sys.stdin.readline()
latencies = []
admitted = 0
started = time.perf_counter()
for i in range(count):
    t0 = time.perf_counter()
    adm = ledger.admit(f"{name}-{i}", Decimal("0.0417"), budget="bench", owner=name,
                       at=datetime.now(timezone.utc))
    latencies.append(time.perf_counter() - t0)
    admitted += adm.admitted
print(json.dumps({"admitted": admitted, "latencies": latencies,
                  "elapsed": time.perf_counter() - started}), flush=True)
ledger.close()
"""


def race(location: str, processes: int, total: int) -> dict[str, float]:
    """Run `processes` workers admitting `total` runs between them; return the figures."""
    from decimal import Decimal

    from costguard.ledger import open_ledger

    with open_ledger(location) as ledger:
        ledger.set_budget("bench", usd=Decimal(1_000_000), period="month")
    each = max(1, total // processes)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, location, f"p{i}", str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line != "ready\n":
            raise SystemExit(f"worker failed to start: {proc.communicate()[1][-2000:]}")
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed: {err[-2000:]}")
        results.append(json.loads(out))
    wall = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r["latencies"])
    admitted = sum(r["admitted"] for r in results)
    assert admitted == each * processes, (admitted, each * processes)
    return {
        "admissions": admitted,
        "seconds": wall,
        "per_second": admitted / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }


def main() -> None:
    """Parse the options, run every configuration, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admissions", type=int, default=800, help="per configuration")
    parser.add_argument("--processes", default="1,4,16")
    parser.add_argument("--backend", default="sqlite,postgresql")
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    backends = args.backend.split(",")

    from tabulate import tabulate

    rows = []
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="costguard-bench-ledger-") as tmp:
            for backend in backends:
                if backend == "postgresql" and server is None:
                    from pgserver import PgServer, PgUnavailableError

                    try:
                        server = PgServer().start()
                    except PgUnavailableError as exc:
                        print(f"postgresql skipped: {exc}", file=sys.stderr)
                        continue
                for n in counts:
                    if backend == "postgresql":
                        assert server is not None
                        location = server.create_database("bench")
                    else:
                        location = str(Path(tmp) / f"ledger-{n}.sqlite3")
                    figures = race(location, n, args.admissions)
                    rows.append(
                        [
                            backend,
                            n,
                            int(figures["admissions"]),
                            f"{figures['seconds']:.2f}",
                            f"{figures['per_second']:,.0f}",
                            f"{figures['p50_ms']:.1f}",
                            f"{figures['p95_ms']:.1f}",
                        ]
                    )
                    print(f"  {backend} x{n}: {figures['per_second']:,.0f}/s", file=sys.stderr)
    finally:
        if server is not None:
            server.destroy()
    print(
        tabulate(
            rows,
            headers=[
                "back end",
                "processes",
                "admissions",
                "seconds",
                "admissions/s",
                "p50 ms",
                "p95 ms",
            ],
            disable_numparse=True,
        )
    )


if __name__ == "__main__":
    main()
