"""`costguard ledger migrate|history|export`, on both back ends (the home's SQLite file, and a
PostgreSQL database named by COSTGUARD_LEDGER_URL)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import textkit
from costguard.ledger import MIGRATIONS, open_ledger
from costguard.ledger import postgres as pg_backend
from costguard.ledger import sqlite as sqlite_backend
from ledger_backends import BACKENDS, is_pg, raw

MAR = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
APR = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
ALL = [fn.__name__ for fn in MIGRATIONS]


@pytest.fixture(params=BACKENDS)
def location(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The ledger the commands use with no --ledger: the home's file, or COSTGUARD_LEDGER_URL."""
    if request.param == "sqlite":
        return str(tmp_path / "costguard-home" / "ledger.sqlite3")
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv("COSTGUARD_LEDGER_URL", url)
    return url


@pytest.fixture
def filled(location: str) -> str:
    """A ledger with runs of two owners, two budgets, in March and April, one refused."""
    with open_ledger(location) as ledger:
        ledger.set_budget("team-covers", usd=Decimal("50"), at=MAR)
        cards = {"rate_cards": ["openai/2026-01-01"], "mode": "batch", "expected_usd": "8.5"}
        ledger.admit("r-ana", Decimal("10"), budget="team-covers", owner="ana", at=MAR, meta=cards)
        ledger.record_spend("r-ana", "gpt-image-1.5-1", Decimal("8.125"), at=MAR)
        ledger.settle("r-ana", status="collected", at=MAR)
        ledger.admit("r-big", Decimal("60"), budget="team-covers", owner="ci:nightly", at=MAR)
        ledger.admit("r-free", Decimal("3"), budget=None, owner="ana", at=APR)
        ledger.record_spend("r-free", "sync:a", Decimal("0.039"), at=APR)
        ledger.record_spend("r-free", "sync:b", Decimal("0.039"), at=APR + timedelta(hours=1))
    return location


# --- migrate -------------------------------------------------------------------------------


def test_migrate_a_new_ledger_applies_everything_then_nothing(
    location: str, cli: Callable[..., Any]
) -> None:
    """On a new ledger `migrate` applies every migration; run again it only reports."""
    first = cli("ledger", "migrate")
    assert first.code == 0, first.err
    assert first.out == (
        f"ledger {location}: applied {', '.join(ALL)}\n"
        f"ledger {location}: schema current ({len(ALL)} migrations, last {ALL[-1]})\n"
    )
    again = cli("ledger", "migrate")
    assert again.out == (
        f"ledger {location}: schema current ({len(ALL)} migrations, last {ALL[-1]})\n"
    )


def test_migrate_upgrades_a_ledger_from_an_older_costguard(
    location: str, cli: Callable[..., Any]
) -> None:
    """A ledger with only m001 gets the rest, keeping its rows."""
    if is_pg(location):
        old = pg_backend.PostgresLedger(location)
        old._write(lambda db: pg_backend.apply_migrations(db, MIGRATIONS[:1], location))
        old.close()
    else:
        Path(location).parent.mkdir(parents=True)
        db = sqlite3.connect(location, isolation_level=None)
        sqlite_backend.apply_migrations(db, MIGRATIONS[:1], Path(location))
        db.close()
    raw(location, "INSERT INTO budgets VALUES ('default', '7', 'none', ?)", (MAR.isoformat(),))
    result = cli("ledger", "migrate")
    assert result.code == 0, result.err
    assert f"applied {', '.join(ALL[1:])}\n" in result.out
    with open_ledger(location) as ledger:
        assert [(b.name, b.limit) for b in ledger.budgets()] == [("default", Decimal("7"))]


def test_migrate_refuses_a_ledger_from_a_newer_costguard(
    location: str, cli: Callable[..., Any]
) -> None:
    """Exit 5, naming the unknown migration; nothing is touched."""
    open_ledger(location).close()
    raw(location, "INSERT INTO _migrations VALUES ('m999_future', ?)", (MAR.isoformat(),))
    result = cli("ledger", "migrate")
    assert result.code == 5
    assert "written by a newer costguard (unknown migrations: m999_future)" in result.err


# --- history -------------------------------------------------------------------------------


def test_history_table_lists_every_run_oldest_first(filled: str, cli: Callable[..., Any]) -> None:
    """The table has estimate, reserved, actual and status (--wide: the rate cards), and a
    total line."""
    result = cli("ledger", "history")
    assert result.code == 0, result.err
    header, rows = textkit.table(result.out)
    assert header == [
        "run",
        "created (UTC)",
        "owner",
        "budget",
        "status",
        "estimate",
        "reserved",
        "actual",
    ]
    assert [row[0] for row in rows] == ["r-ana", "r-big", "r-free"]
    assert rows[0][2:] == ["ana", "team-covers", "collected", "$10.00", "$0.00", "$8.13"]
    assert rows[1][2:6] == ["ci:nightly", "team-covers", "refused", "$60.00"]
    assert rows[2][2:5] == ["ana", "-", "open"]
    total = f"3 runs; estimated $13.00 (admitted), actual $8.20; ledger {filled}"
    assert textkit.unwrap(result.out)[5] == total
    assert textkit.widest(result.out) <= 100 or len(total) > 100
    wide = cli("ledger", "history", "--wide")
    header, rows = textkit.table(wide.out)
    assert header[-1] == "rate cards"
    assert rows[0][-1] == "openai/2026-01-01"


def test_history_json_is_exact_and_complete(filled: str, cli: Callable[..., Any]) -> None:
    """JSON carries every field with exact decimal strings and ISO times."""
    result = cli("ledger", "history", "--output", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["ledger"] == filled
    first = document["runs"][0]
    assert first == {
        "run_id": "r-ana",
        "created": "2026-03-15T12:00:00+00:00",
        "closed": "2026-03-15T12:00:00+00:00",
        "owner": "ana",
        "budget": "team-covers",
        "status": "collected",
        "expected_usd": "8.5",
        "estimate_usd": "10",
        "max_usd": None,
        "reserved_usd": "0",
        "actual_usd": "8.125",
        "parts": 1,
        "rate_cards": ["openai/2026-01-01"],
        "mode": "batch",
        "queue": None,
        "reason": first["reason"],
        "close_reason": "",
        "rehearsal": False,
    }
    assert first["reason"].startswith("fits: needs $10.00")
    free = document["runs"][2]
    assert (free["reserved_usd"], free["actual_usd"], free["parts"]) == ("2.922", "0.078", 2)


def test_history_filters_by_time_budget_and_owner(filled: str, cli: Callable[..., Any]) -> None:
    """--since/--until bound the admission time; --budget and --owner pick runs."""

    def ids(*args: str) -> list[str]:
        result = cli("ledger", "history", "--output", "json", *args)
        assert result.code == 0, result.err
        return [r["run_id"] for r in json.loads(result.out)["runs"]]

    assert ids("--since", "2026-04-01") == ["r-free"]
    assert ids("--until", "2026-04-01") == ["r-ana", "r-big"]
    assert ids("--since", "2026-03-15T12:00:00Z", "--until", "2026-03-15T12:00:01Z") == [
        "r-ana",
        "r-big",
    ]
    assert ids("--budget", "team-covers", "--owner", "ana") == ["r-ana"]
    assert ids("--owner", "nobody") == []
    assert ids("--since", "7d") == []


def test_history_csv_has_one_line_per_run(filled: str, cli: Callable[..., Any]) -> None:
    """CSV: a header, then one line per run; rate cards space-separated."""
    result = cli("ledger", "history", "--output", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [r["run_id"] for r in rows] == ["r-ana", "r-big", "r-free"]
    assert rows[0]["rate_cards"] == "openai/2026-01-01"
    assert (rows[1]["status"], rows[1]["reserved_usd"], rows[1]["max_usd"]) == ("refused", "0", "")


def test_history_of_an_empty_ledger_says_so(location: str, cli: Callable[..., Any]) -> None:
    """No runs: one line naming the ledger."""
    result = cli("ledger", "history")
    assert (result.code, result.out) == (0, f"no runs in ledger {location}\n")


@pytest.mark.parametrize("value", ["yesterday", "7x", "2026-13-01"])
def test_a_bad_since_is_a_usage_error(value: str, cli: Callable[..., Any]) -> None:
    """--since must be an ISO date or time or a span like 7d."""
    result = cli("ledger", "history", "--since", value)
    assert result.code == 2
    assert f"--since: {value!r} is not an ISO date or time or a span like 7d" in result.err


# --- export --------------------------------------------------------------------------------


def test_export_writes_every_charge_in_the_window(
    filled: str, cli: Callable[..., Any], tmp_path: Path
) -> None:
    """One CSV line per recorded cost, dated when recorded, amounts exact; --out writes a file."""
    result = cli("ledger", "export")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [(r["run_id"], r["part_id"], r["amount_usd"]) for r in rows] == [
        ("r-ana", "gpt-image-1.5-1", "8.125"),
        ("r-free", "sync:a", "0.039"),
        ("r-free", "sync:b", "0.039"),
    ]
    assert rows[0] == {
        "recorded": "2026-03-15T12:00:00+00:00",
        "run_id": "r-ana",
        "part_id": "gpt-image-1.5-1",
        "amount_usd": "8.125",
        "budget": "team-covers",
        "owner": "ana",
        "run_status": "collected",
        "rate_cards": "openai/2026-01-01",
        "mode": "batch",
        "queue": "",
    }
    target = tmp_path / "finance" / "april.csv"
    april = cli(
        "ledger", "export", "--since", "2026-04-01", "--until", "2026-05-01", "--out", target
    )
    assert april.code == 0, april.err
    assert april.err == f"wrote 2 charges to {target}\n"
    assert sum(
        Decimal(r["amount_usd"]) for r in csv.DictReader(io.StringIO(target.read_text()))
    ) == Decimal("0.078")


def test_export_runs_matches_history(filled: str, cli: Callable[..., Any]) -> None:
    """--what runs exports the history's CSV."""
    exported = cli("ledger", "export", "--what", "runs")
    assert exported.out == cli("ledger", "history", "--output", "csv").out


def test_the_ledger_commands_have_examples(cli: Callable[..., Any]) -> None:
    """Each command's --help carries an example."""
    for command in ("migrate", "history", "export"):
        assert "Example: costguard ledger " in cli("ledger", command, "--help").out
