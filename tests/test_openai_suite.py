"""OpenAI's own SDK tests against `costguard simulate serve` (`.ci/openai_suite.py`).

The job downloads the sdist of the pinned openai version from the package registry, so the
slow test needs the registry: without it the job exits 2 saying so, and the test fails with
that line (it never skips). The rule checks beside it run offline.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "openai_suite.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason=f"{SCRIPT} is not beside the tests (wheel test without .ci/)"
)


def suite() -> ModuleType:
    """`.ci/openai_suite.py` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("openai_suite", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["openai_suite"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_rules_load_and_classify_by_test_and_message() -> None:
    """Every rule names a category and a reason; a failure is explained only when both its
    test id and its message match a rule."""
    job = suite()
    rules = job.load_rules()
    assert {rule.category for rule in rules} <= set(job.CATEGORIES)
    placeholder = job.Outcome(
        "TestBatches::test_method_retrieve[loose]",
        "failed",
        "openai.NotFoundError: Error code: 404 - No such Batch object: batch_id",
    )
    rule = job.classify(placeholder, rules)
    assert rule is not None
    assert rule.category == "stateless-mock"
    other = job.Outcome(
        "TestBatches::test_method_retrieve[loose]", "failed", "openai.InternalServerError: 500"
    )
    assert job.classify(other, rules) is None
    table, unexplained = job.report([placeholder, other], rules)
    assert unexplained == [other]
    total = next(line for line in table.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "0", "2", "0", "0", "1", "0", "0", "1"]


def test_installed_openai_is_the_pinned_one() -> None:
    """The job's tests come from the sdist of the installed version, which CI pins."""
    job = suite()
    assert job.pinned_version()


@pytest.mark.slow
def test_every_failure_of_openais_own_tests_is_explained() -> None:
    """The job runs OpenAI's batch, file and image tests (sync and async) against the
    simulator; every failure matches a rule (exit 0), and the total row says none is
    unexplained."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    total = next(line for line in done.stdout.splitlines() if line.startswith("total"))
    passed, failed, skipped, *categories, unexplained = (int(x) for x in total.split()[1:])
    assert unexplained == 0
    assert sum(categories) == failed
    assert passed > 0
    assert passed + failed + skipped > 250
