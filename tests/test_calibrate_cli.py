"""`costguard calibrate`, and `estimate` / `run` with `--calibrated` (or COSTGUARD_CALIBRATED)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.ledger import open_ledger
from costguard.pricing.calibration import MIN_SAMPLES, Sample
from runkit import scenario_file

Cli = Callable[..., Any]
MakeQueue = Callable[..., Path]

pytestmark = pytest.mark.usefixtures("memo_cards")

AS_OF = "2026-11-01"
PRO = "gemini-3-pro-image"
RECORDED = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)


def sample(key: str, thinking: int, size: str = "1K") -> Sample:
    """A Gemini 3 Pro Image request that came back ok having thought `thinking` tokens."""
    return Sample(
        key=key,
        provider="gemini",
        model=PRO,
        size=size,
        quality=None,
        status="ok",
        prompt_bytes=0,  # thinking only: prompts per byte are tested in test_calibration.py
        input_images=0,
        text_tokens_max=0,
        input_text_tokens=0,
        input_image_tokens=0,
        output_text_tokens=thinking,
        output_image_tokens=1120,
    )


def learned(path: Path, samples: list[Sample], *, rehearsal: bool = False) -> Path:
    """A ledger at `path` holding one real (or rehearsed) run that recorded `samples`."""
    with open_ledger(path) as ledger:
        run = "sim" if rehearsal else "real"
        ledger.admit(run, Decimal(10), owner="t", at=RECORDED, rehearsal=rehearsal)
        ledger.record_spend(run, "p1", Decimal(1), at=RECORDED, samples=samples)
    return path


def thinking_600_to_890() -> list[Sample]:
    """30 requests thinking 600, 610, ... 890 tokens: median 745, p99 890."""
    return [sample(f"k{i}", 600 + 10 * i) for i in range(MIN_SAMPLES)]


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """A ledger that has learned Gemini 3 Pro Image 1K's thinking from 30 requests."""
    return learned(tmp_path / "ledger.sqlite3", thinking_600_to_890())


@pytest.fixture
def pro_queue(make_queue: MakeQueue) -> Path:
    """Ten Gemini 3 Pro Image 1K requests."""
    return make_queue(*({"key": f"q{i}", "prompt": "a red mug", "model": PRO} for i in range(10)))


# --- calibrate -----------------------------------------------------------------------------


def test_calibrate_shows_observed_against_card_and_what_estimates_use(
    cli: Cli, ledger_file: Path
) -> None:
    """One row per model (all sizes) and per size: requests, median/p99/max, card, used, and
    where it comes from; within 100 columns, leaving out `from` (the table says so)."""
    result = cli("calibrate", "--ledger", ledger_file, "--as-of", AS_OF, "--wide")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "calibrated from 30 requests (since 2026-10-20)"
    header, rows = textkit.table(result.out)
    assert header == [
        "model",
        "size",
        "fact",
        "requests",
        "median",
        "p99",
        "max",
        "card",
        "estimates use",
        "from",
    ]
    figures = ["30", "745", "890", "890", "400 / 4000", "745 / 1113"]
    assert rows == [
        [PRO, "all", "thinking", *figures, "these requests"],
        [PRO, "1K", "thinking", *figures, "these requests"],
    ]
    assert lines[-1].startswith("a figure needs 30 requests")
    fitted = cli("calibrate", "--ledger", ledger_file, "--as-of", AS_OF)
    assert textkit.widest(fitted.out) <= 100
    assert textkit.table(fitted.out)[1] == [row[:-1] for row in rows]
    assert "(left out to fit 100 columns: from; --wide shows every column)" in fitted.out
    assert textkit.unwrap(fitted.out)[-1] == lines[-1]


def test_calibrate_json_lists_every_fact_with_its_figures(cli: Cli, ledger_file: Path) -> None:
    """JSON: the header (requests, since, rules) and one entry per fact and key."""
    result = cli("calibrate", "--ledger", ledger_file, "--as-of", AS_OF, "--output", "json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert {
        k: payload[k] for k in ("requests", "since", "min_samples", "percentile", "margin")
    } == {
        "requests": 30,
        "since": "2026-10-20",
        "min_samples": 30,
        "percentile": 99,
        "margin": "1.25",
    }
    fact = next(f for f in payload["facts"] if f["fact"] == "thinking" and f["size"] == "1K")
    assert fact["observed"] == {"median": "745", "p99": "890", "max": "890"}
    assert (fact["card"], fact["used"]) == (
        {"expected": "400", "max": "4000"},
        {"expected": "745", "max": "1113"},
    )


def test_calibrate_leaves_out_rehearsals_and_honours_since(cli: Cli, tmp_path: Path) -> None:
    """Rehearsed usage never counts; --since starts the window after what was recorded."""
    path = learned(tmp_path / "ledger.sqlite3", thinking_600_to_890(), rehearsal=True)
    result = cli("calibrate", "--ledger", path)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "calibrated from 0 requests"
    assert "no usage recorded yet" in result.out
    path = learned(tmp_path / "other.sqlite3", thinking_600_to_890())
    later = cli("calibrate", "--ledger", path, "--since", "2026-10-21", "--output", "json")
    assert json.loads(later.out)["requests"] == 0


@pytest.mark.parametrize(
    "command",
    [("calibrate",), ("estimate", "QUEUE", "--calibrated")],
    ids=["calibrate", "estimate"],
)
def test_a_ledger_that_is_not_there_is_an_error(
    command: tuple[str, ...], cli: Cli, tmp_path: Path, pro_queue: Path
) -> None:
    """Calibration never starts from an empty ledger: a missing one is exit 5, one line."""
    missing = tmp_path / "nowhere" / "ledger.sqlite3"
    args = [pro_queue if a == "QUEUE" else a for a in command]
    result = cli(*args, "--ledger", missing)
    assert result.code == 5
    assert result.err == (
        f"error: ledger {missing}: no such ledger; calibration learns from the runs a ledger "
        "recorded (give it with --ledger, COSTGUARD_LEDGER_URL or COSTGUARD_LEDGER)\n"
    )
    assert not missing.exists()


# --- estimate --calibrated -----------------------------------------------------------------


def test_estimate_calibrated_says_so_and_uses_the_learned_figures(
    cli: Cli, ledger_file: Path, pro_queue: Path
) -> None:
    """The table says `calibrated from N requests (since DATE)` and each figure it used."""
    result = cli("estimate", pro_queue, "--as-of", AS_OF, "--calibrated", "--ledger", ledger_file)
    assert result.code == 0, result.err
    assert "calibrated from 30 requests (since 2026-10-20)" in result.out.splitlines()
    assert (
        f"  thinking on {PRO} (1K): expected 745, max 1113 tokens per request from 30 "
        "requests (card 400, 4000)"
    ) in textkit.unwrap(result.out)


def test_estimate_json_carries_the_calibration_only_when_calibrated(
    cli: Cli, ledger_file: Path, pro_queue: Path
) -> None:
    """`calibration: {requests, since, facts}`; thinking moves batch figures by exact amounts."""
    base = ["estimate", pro_queue, "--as-of", AS_OF, "--output", "json", "--ledger", ledger_file]
    card = json.loads(cli(*base).out)
    calibrated = json.loads(cli(*base, "--calibrated").out)
    assert "calibration" not in card
    block = calibrated["calibration"]
    assert (block["requests"], block["since"]) == (30, "2026-10-20")
    assert [(f["fact"], f["size"], f["used"]) for f in block["facts"]] == [
        ("thinking", "1K", {"expected": "745", "max": "1113"})
    ]
    rate = Decimal(6) / Decimal(1_000_000)  # batch output text, per token
    moved = {
        k: Decimal(calibrated["totals"]["batch"][k]) - Decimal(card["totals"]["batch"][k])
        for k in ("expected_usd", "max_usd")
    }
    assert moved == {"expected_usd": 10 * (745 - 400) * rate, "max_usd": 10 * (1113 - 4000) * rate}


def test_the_setting_turns_calibration_on_and_the_flag_off(
    cli: Cli, ledger_file: Path, pro_queue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COSTGUARD_CALIBRATED=1 calibrates; --no-calibrated overrides it; a bad value is exit 2."""
    monkeypatch.setenv("COSTGUARD_LEDGER", str(ledger_file))
    monkeypatch.setenv("COSTGUARD_CALIBRATED", "yes")
    on = cli("estimate", pro_queue, "--as-of", AS_OF)
    assert "calibrated from 30 requests (since 2026-10-20)" in on.out
    off = cli("estimate", pro_queue, "--as-of", AS_OF, "--no-calibrated")
    assert "calibrated" not in off.out
    monkeypatch.setenv("COSTGUARD_CALIBRATION_SINCE", "2026-10-21")
    later = cli("estimate", pro_queue, "--as-of", AS_OF)
    assert "calibrated from 0 requests (since 2026-10-21)" in later.out
    assert "every figure is the card's" in later.out
    monkeypatch.setenv("COSTGUARD_CALIBRATED", "maybe")
    bad = cli("estimate", pro_queue, "--as-of", AS_OF)
    assert bad.code == 2
    assert bad.err == (
        "error: COSTGUARD_CALIBRATED='maybe' is not a yes or no; use 1, true, yes, on "
        "(or 0, false, no, off)\n"
    )


def test_estimate_csv_says_it_is_calibrated_on_stderr(
    cli: Cli, ledger_file: Path, pro_queue: Path
) -> None:
    """CSV has no room for it: the calibration lines go to stderr, the CSV stays as it was."""
    args = ["estimate", pro_queue, "--as-of", AS_OF, "--output", "csv", "--ledger", ledger_file]
    plain = cli(*args)
    calibrated = cli(*args, "--calibrated")
    assert calibrated.err.startswith("calibrated from 30 requests (since 2026-10-20)\n")
    assert calibrated.out.splitlines()[0] == plain.out.splitlines()[0]


# --- run --calibrated ----------------------------------------------------------------------


def test_run_calibrated_reserves_and_reports_the_calibrated_maximum(
    cli: Cli, ledger_file: Path, pro_queue: Path, tmp_path: Path
) -> None:
    """`run --calibrated` is priced like `estimate --calibrated` and says so in its summary."""
    estimate = json.loads(
        cli(
            "estimate", pro_queue, "--as-of", AS_OF, "--output", "json", "--calibrated",
            "--ledger", ledger_file,
        ).out
    )  # fmt: skip
    fast = scenario_file(tmp_path / "sc", "succeeded")
    args = ["run", pro_queue, "--max-usd", "5", "--simulate", fast, "--as-of", AS_OF]
    args += ["--poll-interval", "0.01"]
    args += ["--ledger", ledger_file, "--out", tmp_path / "out", "--calibrated", "--output", "json"]
    result = cli(*args)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["estimate"]["max_usd"] == estimate["totals"]["batch"]["max_usd"]
    assert summary["calibration"] == estimate["calibration"]
    assert summary["over_calibrated_max"] == 0  # the simulator thinks 400 < 1113
    assert "calibrated from 30 requests (since 2026-10-20)" in result.err
    table = cli(*args[:-2], "--output", "table")
    assert "calibrated from 30 requests (since 2026-10-20)" in table.out.splitlines()
    status = cli("status", summary["run_id"])
    assert "calibrated from 30 requests (since 2026-10-20)" in status.out.splitlines()


def test_a_calibrated_fact_no_longer_shows_as_assumed(
    cli: Cli, ledger_file: Path, pro_queue: Path
) -> None:
    """On cards that mark thinking as assumed, a calibrated estimate no longer rests on it."""
    args = ["estimate", pro_queue, "--as-of", "2026-11-26", "--ledger", ledger_file]
    card = cli(*args)
    assert f"{PRO} thinking tokens: 400 typical" in "\n".join(textkit.unwrap(card.out))
    calibrated = cli(*args, "--calibrated")
    assert calibrated.code == 0, calibrated.err
    assert "thinking tokens" not in calibrated.out
    assert "  thinking on gemini-3-pro-image (1K): expected 745, max 1113" in calibrated.out


def test_a_team_ledger_calibrates_from_every_machines_runs(cli: Cli, pg_url: str) -> None:
    """On PostgreSQL, runs recorded by two machines (two connections) teach one calibration."""
    for machine, half in (("ci", range(15)), ("laptop", range(15, 30))):
        with open_ledger(pg_url) as ledger:
            ledger.admit(machine, Decimal(10), owner=machine, at=RECORDED)
            samples = [sample(f"{machine}-{i}", 600 + 10 * i) for i in half]
            ledger.record_spend(machine, "p1", Decimal(1), at=RECORDED, samples=samples)
    result = cli("calibrate", "--ledger", pg_url, "--as-of", AS_OF, "--output", "json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["requests"] == 30
    fact = next(f for f in payload["facts"] if f["fact"] == "thinking" and f["size"] is None)
    assert fact["used"] == {"expected": "745", "max": "1113"}
