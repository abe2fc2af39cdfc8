"""kill -9 a `costguard run` whose parts wait for the provider's quota, at random moments, run
the same command again until it ends: every part ran exactly once and was paid once.

The queue is split (`--max-requests-per-part`) into 10 equal parts and the simulated provider's
quota holds 3 of them (OpenAI: enqueued tokens, so the rest fail at validation and are sent
again; Gemini: concurrent jobs, so the rest are refused with 429 at create). Each attempt is
killed after a random delay (seeded: the same moments on every run of the test).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard.execution.rundir import RunDir
from costguard.ledger import open_ledger
from runkit import AS_OF, by_key, cli_env, finish, read_json, start, write_queue

pytestmark = pytest.mark.slow

PARTS, PER_PART, HOLDS = 10, 3, 3
KILLS = 4


def rows(model: str) -> list[dict[str, Any]]:
    extra = {"quality": "low"} if model.startswith("gpt") else {}
    return [
        {"key": f"k{i:02}", "prompt": "a red fox in snow", "model": model, **extra}
        for i in range(PARTS * PER_PART)
    ]


def scenario(path: Path, model: str) -> Path:
    """Jobs take ~1.5 wall seconds; the quota holds 3 parts."""
    if model.startswith("gpt"):
        # 3 parts of 3 low-quality 1024x1024 requests; a fourth passes the limit
        quota: dict[str, Any] = {"enqueued_tokens": {model: 3 * PER_PART * 272 + 400}}
    else:
        quota = {"concurrent_jobs": HOLDS}
    path.write_text(
        json.dumps(
            {
                "name": "quota-kill",
                "description": "a quota that holds 3 parts",
                "time_scale": 3000,
                "pending_s": 600,
                "running_s": 3000,
                "finalizing_s": 300,
                "quota": quota,
            }
        ),
        encoding="utf-8",
    )
    return path


def ran(state: dict[str, Any], provider: str) -> Counter[str]:
    """Per part (its tag without the attempt), the jobs the provider ran (not refused)."""
    face = state["faces"][provider]
    counted: Counter[str] = Counter()
    for job in face["batches"]:
        if provider == "openai":
            if job.get("errors"):
                continue  # failed at validation for quota: nothing ran
            tag = (job.get("metadata") or {}).get("costguard_tag", "")
        else:
            tag = job.get("display_name") or ""
        counted[tag.split("#", 1)[0]] += 1
    return counted


@pytest.mark.parametrize("model", ["gpt-image-2", "gemini-3.1-flash-image"])
def test_killed_at_random_while_parts_wait_for_quota_nothing_runs_or_is_paid_twice(
    tmp_path: Path, model: str
) -> None:
    provider = "openai" if model.startswith("gpt") else "gemini"
    queue = tmp_path / "queue.jsonl"
    write_queue(queue, rows(model))
    sc = scenario(tmp_path / "quota-kill.yaml", model)
    home, out = tmp_path / "home", tmp_path / "out"
    args = [
        "run", str(queue), "--max-usd", "5", "--simulate", str(sc), "--out", str(out),
        "--poll-interval", "0.05", "--as-of", AS_OF.isoformat(),
        "--max-requests-per-part", str(PER_PART), "--no-report",
    ]  # fmt: skip
    rng = random.Random(f"quota-kill-{model}")
    killed = 0
    for _ in range(KILLS):
        proc = start(args, cli_env(home), tmp_path)
        time.sleep(rng.uniform(0.3, 2.5))
        if proc.poll() is not None:
            break  # it finished before this kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        killed += 1
    code, _out, err = finish(start(args, cli_env(home), tmp_path))
    assert code == 0, err
    assert killed >= 2, "the run ended before it could be killed twice: slow the scenario"
    (run_dir,) = (home / "runs").iterdir()
    journal = RunDir(run_dir).load()
    assert len(journal.parts) == PARTS
    assert all(p.state == "collected" for p in journal.parts)
    assert sum(p.quota_waits for p in journal.parts) >= 1  # (killed: some found room at once)
    state = read_json(run_dir / "simulator.json")
    assert state is not None
    counted = ran(state, provider)
    tags = {p.tag.split("#", 1)[0] for p in journal.parts}
    assert counted == Counter(dict.fromkeys(tags, 1)), "a part ran twice (or not at all)"
    lines = by_key(out)
    assert sorted(lines) == sorted(row["key"] for row in rows(model))
    assert {line["status"] for line in lines.values()} == {"ok"}
    total = sum((Decimal(line["cost_usd"]) for line in lines.values()), Decimal(0))
    with open_ledger(home / "ledger.sqlite3") as ledger:
        recorded = ledger.run(journal.run_id)
    assert recorded is not None
    assert (recorded.status, recorded.parts, recorded.reserved) == ("collected", PARTS, 0)
    assert recorded.spent == total  # a rehearsal's ledger run: spent once per part
