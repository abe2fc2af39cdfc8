"""Shared test set-up: every test runs with costguard's home, ledger and cards isolated."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from costguard.pricing.engine import RateBook

pytest_plugins = ("ledger_backends",)
"""Ledger back-end fixtures: `ledger_location` (SQLite and PostgreSQL), `pg_server`, `pg_url`."""


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user data directory or real provider keys."""
    home = tmp_path / "costguard-home"
    monkeypatch.setenv("COSTGUARD_HOME", str(home))
    monkeypatch.delenv("COSTGUARD_PRICING_DIR", raising=False)
    monkeypatch.delenv("COSTGUARD_LEDGER", raising=False)
    monkeypatch.delenv("COSTGUARD_LEDGER_URL", raising=False)
    monkeypatch.delenv("COSTGUARD_BUDGET", raising=False)
    monkeypatch.delenv("COSTGUARD_OWNER", raising=False)
    monkeypatch.delenv("COSTGUARD_DEFAULT_MODEL", raising=False)
    monkeypatch.delenv("COSTGUARD_CALIBRATED", raising=False)
    monkeypatch.delenv("COSTGUARD_CALIBRATION_SINCE", raising=False)
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENAI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class CliResult:
    """What one `costguard.cli.app.run(argv)` call returned and printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Factory: run the CLI in-process (`run(argv)`) and return its exit code, stdout, stderr."""
    from costguard.cli.app import run

    def invoke(*argv: str | Path) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def make_queue(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write queue lines (dicts as JSON, str or bytes verbatim) to a file in tmp_path."""

    def make(
        *lines: dict[str, Any] | str | bytes,
        name: str = "queue.jsonl",
        newline: bytes = b"\n",
        bom: bool = False,
    ) -> Path:
        encoded = [
            line
            if isinstance(line, bytes)
            else (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode()
            for line in lines
        ]
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(e + newline for e in encoded))
        return path

    return make


MINIMAL_CARD = """\
provider: {provider}
effective_from: {date}
sources:
  - id: S
    url: https://example.test/pricing
    checked: 2024-01-01
models:
  - id: test-image
    sizes: [1K, 2K]
    default_size: 1K
    output_image_tokens: {{1K: 1000, 2K: 2000}}
    input_image_tokens: {{typical: 500, max: 800}}
    modes:
      standard:
        input_text_per_mtok: 0.1
        input_image_per_mtok: 0.2
        output_image_per_mtok: 30
      batch:
        input_text_per_mtok: 0.05
        input_image_per_mtok: 0.1
        output_image_per_mtok: 15
"""
"""A valid one-model card; tests break it with string replacements."""


@pytest.fixture
def make_card(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a rate card to `tmp_path/cards/<provider>/<date>.yaml` and return its path.

    With no `text`, writes `MINIMAL_CARD`; `replace` maps substrings to their replacements.
    """

    def make(
        text: str | None = None,
        *,
        provider: str = "gemini",
        date: str = "2030-01-01",
        replace: dict[str, str] | None = None,
        name: str | None = None,
        root: Path | None = None,
    ) -> Path:
        body = text if text is not None else MINIMAL_CARD.format(provider=provider, date=date)
        for old, new in (replace or {}).items():
            assert old in body, f"make_card: {old!r} is not in the card text"
            body = body.replace(old, new)
        path = (root or tmp_path / "cards") / provider / (name or f"{date}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def shipped_book() -> RateBook:
    """The shipped rate cards, loaded once (a RateBook is never mutated by pricing)."""
    from costguard.pricing.loader import load_book

    return load_book()


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The examples/ folder beside tests/ (the wheel test copies both side by side)."""
    path = Path(__file__).resolve().parent.parent / "examples"
    if not path.is_dir():
        pytest.skip(f"no examples/ folder beside the tests ({path})")
    return path


_CARD_MEMO: dict[tuple[str, bytes], Any] = {}


@pytest.fixture
def memo_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-use validated cards across in-process CLI calls (keyed on path and exact bytes).

    `load_card` is a pure function of a card's path and content, so this changes no result;
    errors are never memoised, so broken cards are re-validated (and re-raised) every time.
    """
    import hashlib

    from costguard.pricing import loader

    real = loader.load_card

    def load_card(path: Path) -> Any:
        try:
            key = (str(path), hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            return real(path)  # the real loader reports it
        if key not in _CARD_MEMO:
            _CARD_MEMO[key] = real(path)
        return _CARD_MEMO[key]

    monkeypatch.setattr(loader, "load_card", load_card)
