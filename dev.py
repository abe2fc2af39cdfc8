#!/usr/bin/env python3
"""Developer tasks that need nothing but python3: `python3 dev.py TASK`.

TASK is demo, test, lint, unit, bench, wheel-test, wheel-smoke or openai-suite.

Each task creates `.venv` (and installs the project with its dev extras) when it is missing
or when `pyproject.toml` changed since it was made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
WHEEL_VENV = ROOT / ".venv-wheel"
SMOKE_VENV = ROOT / ".venv-smoke"
LOCAL_ONLY = shutil.ignore_patterns("node_modules", "__pycache__")
"""What a user's own `npm install` (the guide's Node example) leaves in examples/: not copied."""
BIN = "Scripts" if os.name == "nt" else "bin"
CONSTRAINTS = ROOT / ".ci" / "openai-constraints.txt"
"""The openai SDK version CI installs: the one whose own tests `.ci/openai_suite.py` runs."""


def sh(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    """Run a command, echoing it; stop with its exit code when it fails."""
    print("+", " ".join(str(a) for a in args), flush=True)
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        sys.exit(done.returncode)


def venv(path: Path = VENV, *, editable: bool = True) -> Path:
    """Create or refresh the virtual environment; return its bin directory."""
    stamp = path / ".costguard-stamp"
    pinned = (ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()
    digest = hashlib.sha256(pinned).hexdigest()
    bindir = path / BIN
    if stamp.is_file() and stamp.read_text() == digest and editable:
        return bindir
    if not (bindir / "python").exists():
        sh(sys.executable, "-m", "venv", path)
    pip = (bindir / "python", "-m", "pip", "--disable-pip-version-check", "-q")
    sh(*pip, "install", "--upgrade", "pip")
    if editable:
        sh(*pip, "install", "-e", ".[dev]", "-c", CONSTRAINTS)
        stamp.write_text(digest)
    return bindir


def demo() -> None:
    """Set up, price the example queue, then run it end to end on the embedded simulator.

    Uses `.demo/` for costguard's home (ledger, run journals) and `.demo/out` for the images,
    started fresh each time so the whole cycle is shown.
    """
    bindir = venv()
    home = ROOT / ".demo"
    if home.exists():
        shutil.rmtree(home)
    env = {**os.environ, "COSTGUARD_HOME": str(home)}
    queue = "examples/catalog.jsonl"
    sh(bindir / "costguard", "estimate", queue, env=env)
    sh(
        bindir / "costguard",
        "run",
        queue,
        "--max-usd",
        "1",
        "--simulate",
        "--out",
        home / "out",
        env=env,
    )
    print(f"\nimages, manifest.jsonl and report.html (open it in a browser): {home / 'out'}")


def lint() -> None:
    """ruff (lint and format), mypy on src/, and the import contracts."""
    bindir = venv()
    sh(bindir / "ruff", "check", "src", "tests", "bench", ".ci", "dev.py")
    sh(bindir / "ruff", "format", "--check", "src", "tests", "bench", ".ci", "dev.py")
    sh(bindir / "mypy")
    sh(bindir / "lint-imports")
    sh(bindir / "python", "-m", "costguard", "prices", "--schema", "--check")


PARALLEL = ["-n", "auto"]
"""pytest-xdist: one worker per core (every test keeps to its own folders, ports and ledgers)."""


def unit() -> None:
    """The test suite against the editable install, on every core."""
    bindir = venv()
    sh(bindir / "python", "-m", "pytest", "-q", *PARALLEL, *sys.argv[2:])


_WHEELS: list[Path] = []


def build_wheel() -> Path:
    """Build the wheel once per invocation of this script; return its path."""
    if not _WHEELS:
        bindir = venv()
        dist = Path(tempfile.mkdtemp(prefix="costguard-dist-"))
        sh(bindir / "python", "-m", "build", "--wheel", "--outdir", dist, "-q")
        _WHEELS.append(next(dist.glob("costguard-*.whl")))
    return _WHEELS[0]


def wheel_smoke() -> None:
    """The wheel alone in a fresh venv (no extras, no pytest): the commands a new user runs."""
    wheel = build_wheel()
    if SMOKE_VENV.exists():
        shutil.rmtree(SMOKE_VENV)
    sbin = venv(SMOKE_VENV, editable=False)
    sh(sbin / "python", "-m", "pip", "--disable-pip-version-check", "-q", "install", wheel)
    work = Path(tempfile.mkdtemp(prefix="costguard-smoke-"))
    sh(sbin / "python", ROOT / ".ci" / "wheel_smoke.py", ROOT / "examples", cwd=work)


def stage(root: Path, work: Path) -> Path:
    """Copy what the wheel test runs (tests, examples, docs, pyproject.toml) from `root` to `work`.

    The tests' own node_modules (installed by the Node test) comes along; a user's
    `npm install` in the guide's examples does not.
    """
    shutil.copytree(root / "tests", work / "tests")
    shutil.copytree(root / "examples", work / "examples", ignore=LOCAL_ONLY)
    shutil.copytree(root / "docs", work / "docs")
    shutil.copy(root / "pyproject.toml", work / "pyproject.toml")
    return work


def wheel_test() -> None:
    """Build the wheel, install it in a fresh venv, and run the suite against it from elsewhere."""
    wheel = build_wheel()
    if WHEEL_VENV.exists():
        shutil.rmtree(WHEEL_VENV)
    wbin = venv(WHEEL_VENV, editable=False)
    pip = (wbin / "python", "-m", "pip", "--disable-pip-version-check", "-q")
    sh(*pip, "install", f"{wheel}[dev]", "-c", CONSTRAINTS)
    work = stage(ROOT, Path(tempfile.mkdtemp(prefix="costguard-wheeltest-")))
    env = {**os.environ, "COSTGUARD_EXPECT_WHEEL": "1"}
    # The multi-process races and kill -9 tests (marked slow) exercise behaviour that does not
    # depend on how costguard was installed; the editable run covers them, this run the rest.
    args = sys.argv[2:] or ["-m", "not slow"]
    sh(wbin / "python", "-m", "pytest", "-q", "-x", *PARALLEL, *args, cwd=work, env=env)


def apt_install(package: str) -> bool:
    """Install a Debian package (as root, where apt-get is); False when that cannot be done."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sh("apt-get", "update", "-qq", env=env)
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", package, env=env)
    return True


def ensure_postgres() -> None:
    """The ledger tests start a throw-away PostgreSQL: install its binaries when missing."""
    if shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return
    if apt_install("postgresql"):
        return
    print(
        "note: PostgreSQL (initdb) is not installed; the PostgreSQL ledger tests will be "
        "skipped (install the postgresql package to run them)",
        flush=True,
    )


def ensure_chromium() -> None:
    """The report's browser test drives Debian's Chromium: CI installs it when missing (as
    root); elsewhere the test skips, saying so."""
    if shutil.which("chromium") or os.environ.get("CI") != "true":
        return
    if apt_install("chromium"):
        return
    print("note: CI=true, no Chromium, and apt-get cannot install it: the browser test fails")


def test() -> None:
    """Everything CI runs: lint, the suite, the wheel alone, and the suite against the wheel."""
    ensure_postgres()
    ensure_chromium()
    lint()
    unit()
    wheel_smoke()
    wheel_test()


def openai_suite() -> None:
    """OpenAI's own SDK tests (from the pinned openai sdist) against `costguard simulate
    serve`, every failure classified; `--quick` for the sync tests only."""
    bindir = venv()
    sh(bindir / "python", ROOT / ".ci" / "openai_suite.py", *sys.argv[2:])


def bench() -> None:
    """The benchmarks in bench/, printing their figures."""
    bindir = venv()
    for script in sorted((ROOT / "bench").glob("*.py")):
        sh(bindir / "python", script)


TASKS = {
    "demo": demo,
    "test": test,
    "lint": lint,
    "unit": unit,
    "wheel-test": wheel_test,
    "wheel-smoke": wheel_smoke,
    "bench": bench,
    "openai-suite": openai_suite,
}

if __name__ == "__main__":
    task = sys.argv[1] if len(sys.argv) > 1 else ""
    if task not in TASKS:
        print(f"usage: python3 dev.py {{{'|'.join(TASKS)}}}", file=sys.stderr)
        sys.exit(2)
    TASKS[task]()
