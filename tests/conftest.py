"""Shared test set-up: every test runs with costguard's home, ledger and cards isolated."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user data directory or real provider keys."""
    home = tmp_path / "costguard-home"
    monkeypatch.setenv("COSTGUARD_HOME", str(home))
    monkeypatch.delenv("COSTGUARD_PRICING_DIR", raising=False)
    monkeypatch.delenv("COSTGUARD_LEDGER", raising=False)
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENAI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
