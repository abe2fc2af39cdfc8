"""The guide `docs/testing-offline.md`: its examples run as written, and it quotes them exactly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim_cli import costguard_command
from test_sim_node import NODE_DIR, install_sdks, node_tools

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "testing-offline.md"
EXAMPLES = ROOT / "examples" / "offline"
EXCERPT = re.compile(r"```(?:python|js)\n(?:#|//) (examples/offline/\S+)\n(.*?)```", re.DOTALL)


def guide_text(doc: Path) -> str:
    """A doc's text; a visible skip where docs/ is not beside the tests (the wheel test)."""
    if not doc.is_file():
        pytest.skip(f"{doc} is not beside the tests (dev.py wheel-test copies tests/ only)")
    return doc.read_text(encoding="utf-8")


def example_env() -> dict[str, str]:
    """The environment the examples run in: costguard on PATH, no bytecode left behind."""
    scripts = str(Path(costguard_command()[0]).parent)
    return {
        **os.environ,
        "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def test_python_examples_pass_as_written() -> None:
    """`pytest examples/offline` passes: the fixture, scenarios, per-job choice and replays."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "."],
        cwd=EXAMPLES,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b9 passed\b", done.stdout), done.stdout


@pytest.mark.node
def test_node_example_passes_as_written(tmp_path: Path) -> None:
    """`node --test` of examples/offline/node passes against `costguard simulate serve`."""
    node, npm = node_tools()
    install_sdks(npm)
    ours = json.loads((EXAMPLES / "node" / "package.json").read_text())["dependencies"]
    locked = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    assert ours == locked, "the example must pin the SDK versions tests/node installs"
    copy = tmp_path / "offline"
    shutil.copytree(EXAMPLES / "node", copy / "node")
    shutil.copytree(EXAMPLES / "recordings", copy / "recordings")
    (copy / "node" / "node_modules").symlink_to(NODE_DIR / "node_modules")
    script = Path(costguard_command()[0])
    env = example_env()
    if script.name == "costguard":
        env["COSTGUARD"] = str(script)
    done = subprocess.run(
        [node, "--test", "pipeline.test.mjs"],
        cwd=copy / "node",
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 3" in done.stdout
    assert "# fail 0" in done.stdout


def test_every_excerpt_in_the_guide_is_in_its_example_file() -> None:
    """Each code block headed by a path is quoted verbatim from that file (no drift)."""
    text = guide_text(GUIDE)
    excerpts = EXCERPT.findall(text)
    assert len(excerpts) >= 10
    quoted = {path for path, _ in excerpts}
    assert quoted == {
        "examples/offline/pipeline_openai.py",
        "examples/offline/test_pipelines.py",
        "examples/offline/node/pipeline.test.mjs",
    }
    for path, code in excerpts:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert code in source, f"docs/testing-offline.md quotes {path} inexactly:\n{code}"


def test_the_guide_links_resolve() -> None:
    """Relative links in the guide and in docs/recording.md point at files that exist."""
    for doc in (GUIDE, ROOT / "docs" / "recording.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", guide_text(doc)):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
