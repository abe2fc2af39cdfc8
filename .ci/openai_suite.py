#!/usr/bin/env python3
"""OpenAI's own SDK tests against `costguard simulate serve`, every failure classified.

    python .ci/openai_suite.py [--quick] [--sdist FILE] [--keep DIR] [--workers N]

1. Downloads the sdist of the openai version installed here (it must be the one
   `.ci/openai-constraints.txt` pins) from the package registry:
   `pip download --no-deps --no-binary :all: openai==VERSION`. The sdist ships `tests/`;
   nothing of it is copied into this repository.
2. Installs what its `tests/conftest.py` needs beyond the dev environment
   (`.ci/openai-suite-plugins.txt`: pytest-asyncio, and aiohttp for the async tests' third
   client) into a throw-away folder, never into the venv.
3. Starts `costguard simulate serve --port 0 --ready-file ...` and runs
   `tests/api_resources/test_batches.py`, `test_files.py` and `test_images.py` with
   `TEST_API_BASE_URL` pointing at it (the variable those tests read), under the sdist's own
   pytest settings (`filterwarnings = error`, `asyncio_mode = auto`).
4. Reads the JUnit XML, classifies every failure by the rules in
   `.ci/openai_suite_rules.yaml` (a test-id pattern and a message pattern, a category and a
   reason each), prints a table per test class, and exits 1 when a failure matches no rule.

`--quick` runs the sync test classes only (no aiohttp needed). Exit status: 0 every failure
explained, 1 unexplained failures, 2 the job could not run (no registry, no server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "openai_suite_rules.yaml"
CONSTRAINTS = HERE / "openai-constraints.txt"
PLUGINS = HERE / "openai-suite-plugins.txt"
TEST_FILES = (
    "tests/api_resources/test_batches.py",
    "tests/api_resources/test_files.py",
    "tests/api_resources/test_images.py",
)
CATEGORIES = ("simulator", "stateless-mock", "rejected-input", "retired")


class JobError(Exception):
    """The job could not run: one line saying why."""


@dataclass(frozen=True)
class Rule:
    """Failures of tests matching `test` whose message matches `message` are `category`."""

    category: str
    test: re.Pattern[str]
    message: re.Pattern[str]
    reason: str


@dataclass(frozen=True)
class Outcome:
    """One test's result: `Class::name[param]`, passed / failed / skipped, the failure text."""

    test: str
    status: str
    message: str = ""


# -- setup --------------------------------------------------------------------------------------


def pinned_version() -> str:
    """The openai version `.ci/openai-constraints.txt` pins, checked against the installed one."""
    pins = re.findall(r"^openai==(\S+)", CONSTRAINTS.read_text(encoding="utf-8"), re.M)
    if len(pins) != 1:
        msg = f"{CONSTRAINTS.name}: expected one 'openai==VERSION' line"
        raise JobError(msg)
    installed = metadata.version("openai")
    if installed != pins[0]:
        msg = (
            f"openai {installed} is installed but {CONSTRAINTS.name} pins {pins[0]}: install "
            f"the pinned one (pip install -c .ci/{CONSTRAINTS.name} openai), or bump the pin "
            "and the rules together"
        )
        raise JobError(msg)
    return installed


def pip(*args: str) -> None:
    """`python -m pip ARGS`, quiet; a failure is a JobError carrying pip's last lines."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        tail = lines[-1] if lines else f"exit {done.returncode}"
        msg = f"pip {args[0]} failed ({tail})"
        raise JobError(msg)


def fetch_tests(version: str, work: Path, sdist: Path | None) -> Path:
    """Download the sdist (unless given) and extract its `tests/` and `pyproject.toml`; the
    folder they are in."""
    if sdist is None:
        try:
            pip(
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"openai=={version}",
                "-d",
                str(work),
            )
        except JobError as exc:
            msg = (
                f"cannot download the openai {version} sdist from the package registry "
                f"(is the network up?): {exc}"
            )
            raise JobError(msg) from None
        found = sorted(work.glob(f"openai-{version}.tar.gz"))
        if not found:
            msg = f"pip download left no openai-{version}.tar.gz in {work}"
            raise JobError(msg)
        sdist = found[0]
    root = work / "sdist"
    prefix = f"openai-{version}/"
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith(prefix + "tests/") or m.name == prefix + "pyproject.toml"
        ]
        if not any(m.name.endswith(TEST_FILES[0]) for m in members):
            msg = f"{sdist.name} has no {TEST_FILES[0]}"
            raise JobError(msg)
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse unsafe members
            archive.extractall(root, members=members, filter="data")
        else:
            archive.extractall(root, members=members)  # members: tests/ and pyproject only
    return root / prefix.rstrip("/")


def install_plugins(work: Path, *, quick: bool) -> Path:
    """`.ci/openai-suite-plugins.txt` into a throw-away folder (only pytest plugins with
    `--quick`); the folder."""
    target = work / "plugins"
    wanted = []
    for line in PLUGINS.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and (not quick or requirement.startswith("pytest-")):
            wanted.append(requirement)
    pip("install", "--no-deps", "--target", str(target), *wanted)
    return target


@contextlib.contextmanager
def simulator(work: Path) -> Iterator[str]:
    """`costguard simulate serve --port 0` until the block ends; yields its OpenAI base URL."""
    ready = work / "ready.json"
    log = (work / "serve.log").open("wb")
    command = [sys.executable, "-m", "costguard", "simulate", "serve", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                said = (work / "serve.log").read_text(errors="replace").strip().splitlines()
                msg = (
                    f"costguard simulate serve did not start ({said[-1] if said else 'no output'})"
                )
                raise JobError(msg)
            time.sleep(0.05)
        yield str(json.loads(ready.read_text(encoding="utf-8"))["openai_base_url"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_tests(
    root: Path, plugins: Path, base_url: str, junit: Path, *, quick: bool, workers: int
) -> None:
    """Pytest on the three test files, under the sdist's own settings, results to `junit`."""
    args = [sys.executable, "-m", "pytest", *TEST_FILES, "-q", "-p", "no:cacheprovider"]
    args += ["-p", "no:costguard", "-o", "addopts=--tb=line", f"--junitxml={junit}"]
    args += ["-c", str(root / "pyproject.toml"), "--rootdir", str(root)]
    if workers > 1:
        args += ["-n", str(workers)]
    if quick:
        args += ["-k", "not Async"]
    env = {**os.environ, "TEST_API_BASE_URL": base_url}
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), str(root)])
    done = subprocess.run(
        args, cwd=root, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if not junit.is_file():
        lines = (done.stdout + done.stderr).strip().splitlines()
        msg = f"pytest wrote no results (exit {done.returncode}: {lines[-1] if lines else ''})"
        raise JobError(msg)


# -- results ------------------------------------------------------------------------------------


def outcomes(junit: Path) -> list[Outcome]:
    """Every test case of the JUnit XML, as `Class::name[param]` and its status."""
    found = []
    for case in ET.parse(junit).iter("testcase"):
        test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '')}"
        status, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                status = "skipped" if kind == "skipped" else "failed"
                message = node.get("message") or (node.text or "")
                break
        found.append(Outcome(test, status, " ".join(message.split())))
    return found


def load_rules(path: Path = RULES) -> list[Rule]:
    """The classification rules, checked: each names a known category and a reason."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = []
    for i, raw in enumerate(data["rules"]):
        if raw.get("category") not in CATEGORIES or not raw.get("reason"):
            msg = (
                f"{path.name}: rule {i + 1} needs a category ({', '.join(CATEGORIES)}) and a reason"
            )
            raise JobError(msg)
        rules.append(
            Rule(
                raw["category"], re.compile(raw["test"]), re.compile(raw["message"]), raw["reason"]
            )
        )
    return rules


def classify(failure: Outcome, rules: list[Rule]) -> Rule | None:
    """The first rule whose test and message patterns both match the failure."""
    for rule in rules:
        if rule.test.search(failure.test) and rule.message.search(failure.message):
            return rule
    return None


def report(results: list[Outcome], rules: list[Rule]) -> tuple[str, list[Outcome]]:
    """The per-class table and the unexplained failures."""
    by_class: dict[str, Counter[str]] = {}
    unexplained = []
    used: Counter[int] = Counter()
    for result in results:
        counts = by_class.setdefault(result.test.split("::", 1)[0], Counter())
        counts[result.status] += 1
        if result.status != "failed":
            continue
        rule = classify(result, rules)
        if rule is None:
            unexplained.append(result)
            counts["unexplained"] += 1
        else:
            counts[rule.category] += 1
            used[rules.index(rule)] += 1
    columns = ["passed", "failed", "skipped", *CATEGORIES, "unexplained"]
    rows = [["class", *columns]]
    total: Counter[str] = Counter()
    for name in sorted(by_class):
        rows.append([name, *(str(by_class[name][c]) for c in columns)])
        total.update(by_class[name])
    rows.append(["total", *(str(total[c]) for c in columns)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) + 1)]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("failures by reason:")
    for index, rule in enumerate(rules):
        if used[index]:
            lines.append(f"  {used[index]:4d}  {rule.category}: {rule.reason}")
    return "\n".join(lines), unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="sync test classes only")
    parser.add_argument(
        "--sdist", metavar="FILE", type=Path, help="use this sdist, do not download"
    )
    parser.add_argument("--keep", metavar="DIR", type=Path, help="work in DIR and keep it")
    parser.add_argument("--workers", metavar="N", type=int, default=2, help="pytest-xdist workers")
    options = parser.parse_args(argv)
    work = options.keep or Path(tempfile.mkdtemp(prefix="costguard-openai-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        rules = load_rules()
        version = pinned_version()
        root = fetch_tests(version, work, options.sdist)
        plugins = install_plugins(work, quick=options.quick)
        junit = work / "results.xml"
        with simulator(work) as base_url:
            run_tests(root, plugins, base_url, junit, quick=options.quick, workers=options.workers)
        results = outcomes(junit)
    except JobError as exc:
        print(f"openai-suite: {exc}", file=sys.stderr)
        return 2
    finally:
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table, unexplained = report(results, rules)
    mode = "sync tests only" if options.quick else "sync and async tests"
    print(
        f"openai {version} tests/api_resources (batches, files, images), {mode}, "
        "against costguard simulate serve"
    )
    print(table)
    for failure in unexplained:
        print(f"UNEXPLAINED {failure.test}: {failure.message[:300]}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
