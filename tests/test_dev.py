"""dev.py, the developer tasks: what the wheel test copies from a checkout."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "dev.py"

pytestmark = pytest.mark.skipif(not DEV.is_file(), reason="dev.py is not beside the tests")


def load_dev() -> ModuleType:
    """dev.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("costguard_dev", DEV)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_staging_skips_a_users_node_modules_in_the_examples(tmp_path: Path) -> None:
    """`npm install` in the guide's Node example (node_modules with a dangling .bin link) does
    not break or slow the wheel test: examples are copied without it, tests with theirs."""
    root = tmp_path / "checkout"
    modules = root / "examples" / "offline" / "node" / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / ".bin" / "gone").symlink_to(modules / "no-such-package" / "cli.js")
    (root / "examples" / "offline" / "node" / "pipeline.mjs").write_text("// a pipeline\n")
    (root / "tests" / "node" / "node_modules" / "openai").mkdir(parents=True)
    (root / "tests" / "node" / "node_modules" / "openai" / "package.json").write_text("{}")
    (root / "docs").mkdir()
    (root / "pyproject.toml").write_text("[project]\n")
    work = load_dev().stage(root, tmp_path / "work")
    assert (work / "examples" / "offline" / "node" / "pipeline.mjs").is_file()
    assert not (work / "examples" / "offline" / "node" / "node_modules").exists()
    assert (work / "tests" / "node" / "node_modules" / "openai" / "package.json").is_file()
    assert (work / "pyproject.toml").is_file()
