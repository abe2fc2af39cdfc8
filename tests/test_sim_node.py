"""The unmodified Node `openai` SDK against `costguard simulate serve` in a real subprocess.

Needs `node` and `npm`; the SDKs come from `tests/node/package-lock.json` (`npm ci` runs once,
into `tests/node/node_modules`, when they are missing). Without node or npm the test is
skipped with the reason shown in pytest's summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sim_cli import serve_process

NODE_DIR = Path(__file__).parent / "node"
KEY = "sk-node-test"


def node_tools() -> tuple[str, str]:
    """The node and npm executables, or a visible skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node SDK test (not on PATH)")
    return node, npm


def install_sdks(npm: str) -> None:
    """`npm ci` into tests/node/node_modules unless the locked SDKs are already there."""
    if (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        check=True,
        timeout=300,
        capture_output=True,
    )


@pytest.mark.node
def test_node_openai_sdk_runs_a_batch_cycle() -> None:
    """Node `openai` uploads, creates, polls, downloads, cancels, pages and streams an image
    generation (partial images, then the completed one) against the server."""
    node, npm = node_tools()
    install_sdks(npm)
    with serve_process("--api-key", KEY) as (base_url, _):
        done = subprocess.run(
            [node, str(NODE_DIR / "openai_cycle.mjs")],
            cwd=NODE_DIR,
            env={**os.environ, "OPENAI_BASE_URL": f"{base_url}/v1", "OPENAI_API_KEY": KEY},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["file"]["purpose"] == "batch"
    run = report["done"]
    assert run["status"] == "completed"
    assert run["counts"] == {"total": 6, "completed": 5, "failed": 1}
    assert run["outputIds"] == ["node-0", "node-1", "node-2", "node-3", "node-5"]
    assert run["pngs"] == 5
    assert (run["errorIds"], run["errorCodes"]) == (["node-4"], ["moderation_blocked"])
    assert run["usage"]["output_tokens"] == 5 * 272
    cancelled = report["providerCancel"]
    assert (cancelled["status"], cancelled["kept"], cancelled["codes"]) == (
        "cancelled",
        3,
        ["batch_cancelled"],
    )
    assert report["cancel"] == {"first": "cancelling", "last": "cancelled"}
    assert report["listed"] == report["created"][::-1]
    assert report["image"]["png"] is True
    assert report["image"]["usage"]["output_tokens"] == 6208
    assert report["refusal"] == {
        "status": 400,
        "code": "moderation_blocked",
        "type": "image_generation_user_error",
    }
    assert report["streamed"] == [
        {"type": "image_generation.partial_image", "index": 0, "tokens": None},
        {"type": "image_generation.partial_image", "index": 1, "tokens": None},
        {"type": "image_generation.completed", "index": None, "tokens": 272 + 2 * 100},
    ]
    assert report["missing"] == 404
