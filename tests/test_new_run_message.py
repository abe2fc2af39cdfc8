"""`run --new-run` names the new run only once it exists (admitted), never before a refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Cli = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("memo_cards")

LINE = '{"key": "a", "prompt": "p", "model": "gpt-image-2", "quality": "low"}\n'
FAST = ["--poll-interval", "0.05", "--as-of", "2026-11-26"]


def test_new_run_is_named_after_admission_not_before_a_refusal(cli: Cli, tmp_path: Path) -> None:
    queue = tmp_path / "queue.jsonl"
    queue.write_text(LINE, encoding="utf-8")
    refused = cli(
        "run", queue, "--new-run", "--max-usd", "0.000001", "--simulate",
        "--out", tmp_path / "o1", *FAST,
    )  # fmt: skip
    assert refused.code == 3
    assert "new run" not in refused.err
    admitted = cli(
        "run", queue, "--new-run", "--max-usd", "1", "--simulate", "--detach",
        "--out", tmp_path / "o2", *FAST,
    )  # fmt: skip
    assert admitted.code == 0, admitted.err
    named = [line for line in admitted.err.splitlines() if line.startswith("new run ")]
    assert len(named) == 1
    assert "picks it up later" in named[0]
