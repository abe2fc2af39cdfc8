"""The unmodified Node SDKs behind `costguard guard`, `costguard simulate serve` as upstream.

The seed article's cover pipeline shape (`tests/node/guard_pipeline.mjs`: @google/genai with
`httpOptions.baseUrl` at the gateway; an inline batch of image prompts, poll, collect) under a
budget that fits (admitted, forwarded, settled at actual, the spend in the ledger) and under one
that does not (the SDK's create fails at once with the gateway's 402; the upstream holds no
batch); and an OpenAI file batch with the Node `openai` SDK (`baseURL` at the gateway).

Needs `node` and `npm` (the SDKs are installed from `tests/node/package-lock.json` once);
without them the tests are skipped with the reason shown.
"""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guardkit import GEMINI_KEY, OPENAI_KEY, gateway_in_thread, set_budget, upstream_jobs
from sim_cli import serve_process
from test_sim_node import NODE_DIR, install_sdks, node_tools

pytestmark = pytest.mark.node


def run_node(script: str, env: dict[str, str]) -> dict[str, Any]:
    """Run a script of tests/node; its last stdout line, parsed."""
    node, npm = node_tools()
    install_sdks(npm)
    if not (NODE_DIR / "node_modules" / "@google" / "genai").is_dir():
        pytest.skip("@google/genai is not installed in tests/node/node_modules (npm ci failed)")
    done = subprocess.run(
        [node, str(NODE_DIR / script)],
        cwd=NODE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_node_genai_pipeline_under_a_budget_that_fits(tmp_path: Path) -> None:
    """Inline batch, poll, collect through the gateway: admitted, settled at actual."""
    node_tools()
    location = tmp_path / "ledger.sqlite3"
    set_budget(location, "team", "100")
    log: list[str] = []
    with (
        serve_process() as (upstream, _),
        gateway_in_thread(location, upstream, log=log) as (url, guard),
    ):
        report = run_node(
            "guard_pipeline.mjs", {"GUARD_BASE_URL": url, "GEMINI_API_KEY": GEMINI_KEY}
        )
        jobs = upstream_jobs(upstream, "gemini")
        (run,) = guard.book.ledger.runs(limit=10)
        status = guard.book.ledger.status("team", at=guard.book.clock())
    assert report["ok"] is True, report
    assert report["state"] == "JOB_STATE_SUCCEEDED"
    assert sorted(report["keys"]) == ["cover-0", "cover-1", "cover-2"]
    assert report["images"] == 3
    assert len(jobs) == 1
    assert run.meta["job"] == report["name"].removeprefix("batches/")
    assert run.meta["requests"] == 3
    assert run.status == "completed"
    assert run.meta["reconciled"] is True
    assert Decimal(0) < run.spent <= run.estimate
    assert run.parts == 1
    assert status.spent == run.spent
    assert status.reserved == 0
    assert GEMINI_KEY not in "\n".join(log) + json.dumps(run.meta)


def test_node_genai_pipeline_over_budget_fails_at_once(tmp_path: Path) -> None:
    """The batch does not fit: the SDK's create raises the 402 at once; nothing upstream."""
    node_tools()
    location = tmp_path / "ledger.sqlite3"
    set_budget(location, "team", "0.01")
    with (
        serve_process("--log") as (upstream, _),
        gateway_in_thread(location, upstream) as (url, guard),
    ):
        report = run_node(
            "guard_pipeline.mjs", {"GUARD_BASE_URL": url, "GEMINI_API_KEY": GEMINI_KEY}
        )
        jobs = upstream_jobs(upstream, "gemini")
        runs = guard.book.ledger.runs(limit=10)
    assert report["ok"] is False, report
    assert report["status"] == 402
    assert "budget 'team' refused" in report["message"]
    assert "Nothing was sent" in report["message"]
    assert report["ms"] < 5000  # no retries with backoff
    assert jobs == []
    assert [r.status for r in runs] == ["refused"]
    assert runs[0].spent == 0


def test_node_openai_file_batch_through_the_gateway(tmp_path: Path) -> None:
    """Node `openai`: upload through the gateway, create, poll, download: settled at actual."""
    node_tools()
    location = tmp_path / "ledger.sqlite3"
    set_budget(location, "team", "100")
    with (
        serve_process() as (upstream, _),
        gateway_in_thread(location, upstream) as (url, guard),
    ):
        report = run_node(
            "guard_openai_batch.mjs",
            {"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": OPENAI_KEY},
        )
        jobs = upstream_jobs(upstream, "openai")
        (run,) = guard.book.ledger.runs(limit=10)
    assert report["status"] == "completed"
    assert report["rows"] == 3
    assert [job["id"] for job in jobs] == [report["id"]]
    assert run.meta["job"] == report["id"]
    assert run.meta["requests"] == 3
    assert run.status == "completed"
    assert run.meta["reconciled"] is True
    assert Decimal(0) < run.spent <= run.estimate
