"""Start-up: the CLI imports no SDK or server it does not need; the installed package is whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import costguard
from costguard.errors import EXIT_CODES
from costguard.resources import data_dir

HEAVY = ("openai", "google", "respx", "uvicorn", "starlette", "httpx2", "PIL")
"""Top-level packages that only `run`, `simulate` and the providers may import."""

PROBE = """
import json, sys
from costguard.cli.app import run
code = run(json.loads(sys.argv[1]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print("MODULES=" + json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _probe(argv: list[str], watch: tuple[str, ...] = HEAVY) -> tuple[int, list[str]]:
    """Run `costguard.cli.app.run(argv)` in a fresh interpreter: exit code, watched imports."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(list(watch))],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES="))
    result = json.loads(line.removeprefix("MODULES="))
    return result["code"], result["heavy"]


def test_importing_the_cli_loads_nothing_heavy() -> None:
    """`import costguard.cli.app` pulls in no SDK, server, YAML or pydantic."""
    watch = (*HEAVY, "yaml", "pydantic", "pydantic_settings", "tabulate")
    code = (
        "import json, sys, costguard.cli.app\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        f"print(json.dumps(sorted(loaded & set({list(watch)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--help"], id="help"),
        pytest.param(["estimate", "--help"], id="estimate-help"),
        pytest.param(
            ["prices", "--model", "gemini-3-pro-image", "--as-of", "2026-11-01"], id="prices"
        ),
        pytest.param(["prices", "--diff", "2025-10-03", "2025-11-05"], id="prices-diff"),
    ],
)
def test_commands_do_not_import_the_sdks(argv: list[str]) -> None:
    """--help and prices run without importing openai, google.genai, respx or uvicorn."""
    code, heavy = _probe(argv)
    assert code == 0
    assert heavy == []


def test_estimate_does_not_import_the_sdks(examples_dir: Path) -> None:
    """A full estimate (with a budget) runs without importing any SDK or server."""
    catalog = str(examples_dir / "catalog.jsonl")
    code, heavy = _probe(["estimate", catalog, "--as-of", "2026-11-24", "--max-usd", "1"])
    assert code == 0
    assert heavy == []


def test_python_m_costguard_help_and_version() -> None:
    """`python -m costguard` shows the commands and exit codes, and --version the version."""
    helped = subprocess.run(
        [sys.executable, "-m", "costguard", "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0
    assert "estimate" in helped.stdout
    assert "prices" in helped.stdout
    lines = [line.strip() for line in helped.stdout.splitlines()]
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning}" in lines  # one exit code a line, not re-wrapped
    version = subprocess.run(
        [sys.executable, "-m", "costguard", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("costguard ")


def test_installed_wheel_carries_code_and_cards() -> None:
    """Under the wheel test, costguard and its rate cards come from site-packages."""
    if os.environ.get("COSTGUARD_EXPECT_WHEEL") != "1":
        pytest.skip("only under `python3 dev.py wheel-test` (COSTGUARD_EXPECT_WHEEL=1)")
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(costguard.__file__).resolve().parent
    assert package.is_relative_to(site), f"costguard imported from {package}, not {site}"
    pricing = data_dir("pricing").resolve()
    assert pricing == package / "_data" / "pricing"
    assert (pricing / "schema.json").is_file()
    assert sorted(p.parent.name for p in pricing.glob("*/*.yaml")).count("gemini") >= 11


NO_PYTEST = """
import sys
for name in ("pytest", "_pytest", "pytest_httpx2", "pytest_httpx2._plugin"):
    sys.modules[name] = None  # importing any of them now raises ImportError
"""
"""Prelude that makes the interpreter behave like the base install, which has no pytest."""


def _without_pytest(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where pytest and pytest plugins cannot be imported."""
    env = {**os.environ, "COSTGUARD_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-c", NO_PYTEST + code],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def test_the_public_simulate_works_without_pytest(tmp_path: Path) -> None:
    """`costguard.simulate()` answers an SDK call in-process on an install without pytest."""
    done = _without_pytest(
        "import costguard\n"
        "from openai import OpenAI\n"
        "with costguard.simulate() as sim:\n"
        "    with OpenAI(api_key='sk-test') as client:\n"
        "        client.batches.list()\n"
        "print(sim.calls.count('openai.batches.list'))\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_run_simulate_works_without_pytest(tmp_path: Path) -> None:
    """`costguard run --simulate` (the quick start) runs to the end on an install without pytest."""
    queue = Path(__file__).resolve().parent.parent / "examples" / "catalog.jsonl"
    if not queue.is_file():
        pytest.skip(f"{queue} is not beside the tests")
    argv = ["run", str(queue), "--max-usd", "1", "--simulate", "--out", str(tmp_path / "out")]
    done = _without_pytest(
        f"import sys\nfrom costguard.cli.app import run\nsys.exit(run({argv!r}))\n", tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "manifest.jsonl").is_file()
