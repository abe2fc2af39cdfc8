"""`costguard budget set|show`: the ledger's budgets from the command line.

Tests taking `location` run on both back ends: the home's SQLite file, and a PostgreSQL
database named by COSTGUARD_LEDGER_URL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from costguard.cli.budget import budget_app
from costguard.errors import LedgerError, UsageError
from costguard.ledger import open_ledger
from ledger_backends import BACKENDS

MAR = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

root = typer.Typer()
root.add_typer(budget_app, name="budget")
"""`budget_app` mounted as the lead's CLI mounts it: `costguard budget ...`."""


def invoke(*args: str) -> Result:
    """Run `costguard budget <args>` in-process."""
    return CliRunner().invoke(root, ["budget", *args])


def home_ledger(tmp_path: Path) -> Path:
    """The ledger path the autouse fixture's COSTGUARD_HOME implies."""
    return tmp_path / "costguard-home" / "ledger.sqlite3"


@pytest.fixture(params=BACKENDS)
def location(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The ledger the commands use with no --ledger: the home's file, or COSTGUARD_LEDGER_URL."""
    if request.param == "sqlite":
        return str(home_ledger(tmp_path))
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv("COSTGUARD_LEDGER_URL", url)
    return url


def test_set_creates_a_budget_in_the_default_ledger(location: str) -> None:
    """`budget set --usd 500` creates a monthly `default` budget in the ledger in force."""
    result = invoke("set", "--usd", "500")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"budget 'default': $500.00 per calendar month (UTC) (ledger {location})\n"
    )
    with open_ledger(location) as ledger:
        [budget] = ledger.budgets()
    assert (budget.name, budget.limit, budget.period) == ("default", Decimal("500"), "month")


def test_set_changes_an_existing_budget(location: str) -> None:
    """Setting the same name again changes its limit and period."""
    invoke("set", "--usd", "500")
    result = invoke("set", "--usd", "$1,250.50", "--period", "week")
    assert result.exit_code == 0, result.output
    assert "$1,250.50 per ISO week (UTC, from Monday)" in result.output
    with open_ledger(location) as ledger:
        assert [(b.limit, b.period) for b in ledger.budgets()] == [(Decimal("1250.50"), "week")]


@pytest.mark.parametrize("value", ["abc", "-5", "NaN", "Infinity", "", "1e309", "1000000001"])
def test_set_rejects_an_amount_that_is_not_usd(value: str) -> None:
    """--usd must be an amount from 0 to the documented maximum; anything else is a usage error."""
    result = invoke("set", "--usd", value)
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).startswith(f"--usd: {value!r} is not an amount in USD")


def test_set_rejects_a_blank_name() -> None:
    """--name must name something."""
    result = invoke("set", "--usd", "5", "--name", " ")
    assert isinstance(result.exception, UsageError)


def test_set_rejects_an_unknown_period() -> None:
    """--period is one of day, week, month, none."""
    result = invoke("set", "--usd", "5", "--period", "year")
    assert result.exit_code == 2
    assert "year" in result.output


def test_show_prints_each_budget_with_its_window_and_owners(location: str) -> None:
    """The table has limit, period, window, reserved, spent, remaining and open runs; a second
    table splits each window by owner."""
    with open_ledger(location) as ledger:
        ledger.set_budget(usd=Decimal("100"), at=MAR)
        ledger.set_budget("art", usd=Decimal("5"), period="day", at=MAR)
        ledger.admit("r1", Decimal("40"), owner="t", at=MAR)
        ledger.record_spend("r1", "p1", Decimal("12.5"), at=MAR)
    result = invoke("show", "--at", "2026-03-15T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "budget     limit  period  window (UTC)            reserved   spent  remaining  open runs\n"
        "-------  -------  ------  ----------------------  --------  ------  ---------  ---------\n"
        "art        $5.00  day     2026-03-15                 $0.00   $0.00      $5.00          0\n"
        "default  $100.00  month   2026-03-01..2026-03-31    $27.50  $12.50     $60.00          1\n"
        "\n"
        "by owner:\n"
        "budget   owner  runs  open runs  reserved   spent  counted\n"
        "-------  -----  ----  ---------  --------  ------  -------\n"
        "default  t         1          1    $27.50  $12.50   $40.00\n"
        f"ledger: {location}\n"
    )


def test_show_splits_each_window_by_owner(location: str) -> None:
    """Owners (users, CI jobs) get their reserved and spent shares of each budget's window."""
    april = datetime(2026, 4, 2, tzinfo=UTC)
    with open_ledger(location) as ledger:
        ledger.set_budget("team-covers", usd=Decimal("100"), at=MAR)
        ledger.admit("a1", Decimal("10"), budget="team-covers", owner="ana", at=MAR)
        ledger.admit("a2", Decimal("5"), budget="team-covers", owner="ana", at=MAR)
        ledger.record_spend("a2", "p1", Decimal("4"), at=MAR)
        ledger.settle("a2", status="collected", at=MAR)
        ledger.admit("ci", Decimal("30"), budget="team-covers", owner="ci:nightly#41", at=MAR)
        ledger.record_spend("ci", "p1", Decimal("7.5"), at=MAR)
        ledger.admit("apr", Decimal("50"), budget="team-covers", owner="bo", at=april)
    result = invoke("show", "--output", "json", "--at", "2026-03-20")
    assert result.exit_code == 0, result.output
    [budget] = json.loads(result.output)["budgets"]
    assert (budget["reserved"], budget["spent"], budget["remaining"]) == ("32.5", "11.5", "56")
    assert budget["owners"] == [
        {
            "owner": "ci:nightly#41",
            "reserved": "22.5",
            "spent": "7.5",
            "counted": "30",
            "open_runs": 1,
            "runs": 1,
        },
        {
            "owner": "ana",
            "reserved": "10",
            "spent": "4",
            "counted": "14",
            "open_runs": 1,
            "runs": 2,
        },
    ]


def test_show_json_gives_exact_decimal_strings(location: str) -> None:
    """--output json lists every budget with exact decimal strings and ISO windows."""
    with open_ledger(location) as ledger:
        ledger.set_budget(usd=Decimal("100"), period="week", at=MAR)
        ledger.admit("r1", Decimal("0.039"), owner="t", at=MAR)
    result = invoke("show", "--output", "json", "--at", "2026-03-15")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "ledger": location,
        "at": "2026-03-15T00:00:00+00:00",
        "budgets": [
            {
                "name": "default",
                "limit": "100",
                "period": "week",
                "period_start": "2026-03-09T00:00:00+00:00",
                "period_end": "2026-03-16T00:00:00+00:00",
                "reserved": "0.039",
                "spent": "0",
                "remaining": "99.961",
                "open_runs": 1,
                "owners": [
                    {
                        "owner": "t",
                        "reserved": "0.039",
                        "spent": "0",
                        "counted": "0.039",
                        "open_runs": 1,
                        "runs": 1,
                    }
                ],
            }
        ],
    }


def test_show_one_budget_by_name(location: str) -> None:
    """--name shows only that budget."""
    invoke("set", "--usd", "100")
    invoke("set", "--usd", "5", "--name", "art", "--period", "none")
    result = invoke("show", "--name", "art")
    assert result.exit_code == 0, result.output
    assert "all time" in result.output
    assert "default" not in result.output


def test_show_an_unknown_budget_is_a_ledger_error() -> None:
    """--name of a budget that is not set raises LedgerError (exit 5 under `costguard`)."""
    result = invoke("show", "--name", "nope")
    assert isinstance(result.exception, LedgerError)
    assert result.exception.exit_code == 5
    assert "no budget named 'nope'" in str(result.exception)


def test_show_without_budgets_says_how_to_set_one(location: str) -> None:
    """With no budget the table form says how to add one, and JSON lists none."""
    result = invoke("show")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"no budgets in ledger {location}; set one with: costguard budget set --usd 500\n"
    )
    as_json = json.loads(invoke("show", "--output", "json").output)
    assert as_json["budgets"] == []


def test_show_rejects_a_bad_moment() -> None:
    """--at must be an ISO date or time."""
    result = invoke("show", "--at", "yesterday")
    assert isinstance(result.exception, UsageError)
    assert "--at: 'yesterday' is not an ISO date or time" in str(result.exception)


def test_show_reads_an_offset_moment_in_utc(tmp_path: Path) -> None:
    """A --at with an offset picks the UTC window it falls in."""
    invoke("set", "--usd", "1", "--period", "day")
    result = invoke("show", "--output", "json", "--at", "2026-03-15T23:30:00-02:00")
    assert json.loads(result.output)["budgets"][0]["period_start"] == "2026-03-16T00:00:00+00:00"


@pytest.mark.parametrize("source", ["option", "env"])
def test_ledger_location_from_option_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """--ledger PATH, else COSTGUARD_LEDGER, chooses the ledger file instead of the home's."""
    path = tmp_path / "team" / "shared.sqlite3"
    extra: list[str] = []
    if source == "option":
        monkeypatch.setenv("COSTGUARD_LEDGER", str(tmp_path / "ignored.sqlite3"))
        extra = ["--ledger", str(path)]
    else:
        monkeypatch.setenv("COSTGUARD_LEDGER", str(path))
    result = invoke("set", "--usd", "7", *extra)
    assert result.exit_code == 0, result.output
    assert f"(ledger {path})" in result.output
    assert path.is_file()
    assert not home_ledger(tmp_path).exists()
    assert not (tmp_path / "ignored.sqlite3").exists()
    shown = invoke("show", "--output", "json", *extra)
    assert json.loads(shown.output)["ledger"] == str(path)


def test_the_ledger_url_wins_over_the_ledger_file_and_the_option_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    """COSTGUARD_LEDGER_URL beats COSTGUARD_LEDGER; --ledger (a path or a URL) beats both."""
    monkeypatch.setenv("COSTGUARD_LEDGER", str(tmp_path / "file.sqlite3"))
    monkeypatch.setenv("COSTGUARD_LEDGER_URL", pg_url)
    assert f"(ledger {pg_url})" in invoke("set", "--usd", "1").output
    assert not (tmp_path / "file.sqlite3").exists()
    explicit = tmp_path / "explicit.sqlite3"
    assert f"(ledger {explicit})" in invoke("set", "--usd", "2", "--ledger", str(explicit)).output
    monkeypatch.delenv("COSTGUARD_LEDGER_URL")
    assert f"(ledger {pg_url})" in invoke("set", "--usd", "3", "--ledger", pg_url).output
    with open_ledger(pg_url) as shared:
        assert [b.limit for b in shared.budgets()] == [Decimal("3")]


def test_a_missing_postgres_driver_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """Without psycopg a PostgreSQL ledger fails with exit 5 and the pip command to fix it."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = cli("budget", "show", "--ledger", "postgresql://nobody@127.0.0.1:1/none")
    assert result.code == 5
    assert result.out == ""
    assert result.err == (
        'error: the PostgreSQL ledger needs psycopg: pip install "costguard[postgres]"\n'
    )


def test_help_shows_an_example_per_command() -> None:
    """Each command's --help carries an example invocation."""
    assert "Example: costguard budget set --usd 500" in invoke("set", "--help").output
    assert "Example: costguard budget show --output json" in invoke("show", "--help").output
