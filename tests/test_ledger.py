"""The ledger: budgets, reservations and spend across runs, processes and migrations.

Every test that takes `ledger` (or `budgeted`) runs twice: on a SQLite file and on a real
PostgreSQL database (see `ledger_backends.py`). Tests of one back end's own plumbing say so
in their names; PostgreSQL-only concerns (lost connections, restarts) are in test_ledger_pg.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costguard import ledger as ledger_mod
from costguard.errors import LedgerError
from costguard.ledger import (
    MIGRATIONS,
    Ledger,
    Period,
    SqliteLedger,
    default_path,
    open_ledger,
    period_window,
)
from costguard.ledger import postgres as pg_backend
from costguard.ledger import sqlite as sqlite_backend
from ledger_backends import indexes, is_pg, raw, tables

MAR = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
"""A moment in March 2026 (a Sunday), the month most tests run in."""
APR = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    """A fresh ledger (SQLite file, or PostgreSQL database), closed after the test."""
    with open_ledger(ledger_location) as opened:
        yield opened


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    """A fresh SQLite ledger file in tmp_path, for tests of SQLite's own plumbing."""
    with open_ledger(tmp_path / "ledger.sqlite3") as opened:
        assert isinstance(opened, SqliteLedger)
        yield opened


@pytest.fixture
def budgeted(ledger: Ledger) -> Ledger:
    """A ledger with a `default` budget of $100 a month."""
    ledger.set_budget(usd=Decimal("100"), period="month", at=MAR)
    return ledger


def admit(ledger: Ledger, run_id: str, amount: str, **kwargs: Any) -> ledger_mod.Admission:
    """Admit `run_id` for `amount` USD in March as owner `test`."""
    kwargs.setdefault("at", MAR)
    kwargs.setdefault("owner", "test")
    return ledger.admit(run_id, Decimal(amount), **kwargs)


# --- opening -------------------------------------------------------------------------------


def test_open_default_path_is_in_costguard_home(tmp_path: Path) -> None:
    """With no location the ledger is `<COSTGUARD_HOME>/ledger.sqlite3`, folders created."""
    with open_ledger(None) as opened:
        assert isinstance(opened, SqliteLedger)
        assert opened.path == tmp_path / "costguard-home" / "ledger.sqlite3"
        assert opened.location == str(opened.path)
    assert opened.path.is_file()


def test_default_path_without_home_is_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without COSTGUARD_HOME the default lies in platformdirs' user data directory."""
    import platformdirs

    monkeypatch.delenv("COSTGUARD_HOME")
    expected = Path(platformdirs.user_data_dir("costguard")) / "ledger.sqlite3"
    assert default_path() == expected
    assert default_path("/srv/cg") == Path("/srv/cg/ledger.sqlite3")


def test_open_creates_missing_folders(tmp_path: Path) -> None:
    """An explicit location in folders that do not exist yet gets them created."""
    with open_ledger(tmp_path / "a" / "b" / "team.sqlite3") as opened:
        assert isinstance(opened, SqliteLedger)
        assert opened.path.parent.is_dir()


@pytest.mark.parametrize(
    ("location", "backend"),
    [
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("PostgreSQL://u@h/db", "postgresql"),
        ("/srv/ledger.sqlite3", "sqlite"),
        ("postgresql.sqlite3", "sqlite"),
        ("", "sqlite"),
    ],
)
def test_the_location_picks_the_back_end_by_url_scheme(location: str, backend: str) -> None:
    """`postgresql://` and `postgres://` URLs are PostgreSQL; anything else is a file."""
    assert ledger_mod.is_url(location) == (backend == "postgresql")


def test_a_url_is_shown_without_its_password() -> None:
    """Messages and reports name the database but never its password."""
    shown = ledger_mod.describe_location("postgresql://ana:s3cr%2Ft@db.example:5433/costs")
    assert shown == "postgresql://ana:***@db.example:5433/costs"
    assert ledger_mod.describe_location("postgresql://ana@db/costs") == "postgresql://ana@db/costs"


def test_both_back_ends_implement_one_interface(ledger: Ledger) -> None:
    """Whatever the back end, open_ledger returns a Ledger that names where it is."""
    assert isinstance(ledger, Ledger)
    assert ledger.backend == ("postgresql" if is_pg(ledger.location) else "sqlite")
    assert repr(ledger) == f"{type(ledger).__name__}({ledger.location!r})"
    assert (ledger.journals is not None) == (ledger.backend == "postgresql")


def test_sqlite_connection_uses_wal_foreign_keys_and_a_generous_busy_timeout(
    sqlite_ledger: SqliteLedger,
) -> None:
    """The connection is in WAL mode, enforces foreign keys and waits 30 s for a lock."""
    db = sqlite_ledger._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_a_file_that_is_no_database_is_refused_naming_it(tmp_path: Path) -> None:
    """Opening a file that is not SQLite raises a one-line LedgerError naming the file."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some text that is long enough to be read\n" * 20)
    with pytest.raises(LedgerError, match=r"^ledger .*notes\.txt: file is not a database$"):
        open_ledger(path)


def test_a_folder_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    """A location under a regular file fails with the ledger path in the message."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        LedgerError, match=r"ledger .*file/sub/l\.sqlite3: cannot create its folder"
    ):
        open_ledger(tmp_path / "file" / "sub" / "l.sqlite3")


def test_a_sqlite_ledger_locked_past_the_busy_timeout_fails_clearly(
    sqlite_ledger: SqliteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that cannot get the lock in time raises LedgerError saying another process has it."""
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_S", 0.05)
    other = sqlite3.connect(sqlite_ledger.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with open_ledger(sqlite_ledger.path) as impatient, pytest.raises(LedgerError) as caught:
            impatient.set_budget(usd=Decimal("1"), at=MAR)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(sqlite_ledger.path) in str(caught.value)
    assert "locked" in str(caught.value)
    assert "another process" in str(caught.value)


# --- migrations ----------------------------------------------------------------------------

SCHEMA = {
    "_migrations": ["name", "applied_at"],
    "budgets": ["name", "limit_usd", "period", "updated_at"],
    "journals": ["run_id", "data", "version", "updated_at", "updated_by"],
    "runs": [
        "run_id",
        "budget",
        "estimate_usd",
        "max_usd",
        "remaining_usd",
        "status",
        "owner",
        "created_at",
        "closed_at",
        "reason",
        "close_reason",
        "meta",
        "rehearsal",
    ],
    "spend": ["run_id", "part_id", "amount_usd", "recorded_at"],
    "ledger_identity": ["id"],
    "closed_spend_days": ["budget", "day", "amount_usd"],
    "usage_samples": [
        "run_id",
        "request_key",
        "provider",
        "model",
        "size",
        "quality",
        "status",
        "prompt_bytes",
        "input_images",
        "text_tokens_max",
        "input_text_tokens",
        "input_image_tokens",
        "output_text_tokens",
        "output_image_tokens",
        "recorded_at",
    ],
}
INDEXES = {
    "runs_budget_status",
    "runs_created_at",
    "spend_recorded_at",
    "usage_samples_recorded_at",
}
ALL = [fn.__name__ for fn in MIGRATIONS]


def test_migrations_are_numbered_in_order_and_unique() -> None:
    """MIGRATIONS is ordered by its mNNN_ prefixes and no name repeats."""
    assert sorted(set(ALL)) == ALL
    assert ALL[:3] == ["m001_initial", "m002_window_indexes", "m003_run_journals"]


def test_fresh_ledger_has_the_full_schema(ledger: Ledger) -> None:
    """A new ledger has exactly the expected tables, columns and indexes, all migrations applied."""
    assert tables(ledger_url(ledger)) == SCHEMA
    assert indexes(ledger_url(ledger)) == INDEXES
    assert ledger.applied_migrations() == ALL
    assert sorted(r[0] for r in raw(ledger_url(ledger), "SELECT name FROM _migrations")) == ALL


def test_migrate_on_a_current_ledger_applies_nothing(ledger: Ledger) -> None:
    """`migrate()` and reopening a current ledger apply no migration again."""
    assert ledger.migrate() == []
    with open_ledger(ledger_url(ledger)) as again:
        assert again.migrate() == []
    assert ledger.applied_migrations() == ALL


def _v1_only(location: str) -> None:
    """Make `location` a ledger as costguard wrote it with only m001_initial."""
    if is_pg(location):
        old = pg_backend.PostgresLedger(location)
        try:
            old._write(lambda db: pg_backend.apply_migrations(db, MIGRATIONS[:1], location))
        finally:
            old.close()
        ts = "2026-03-0{}T00:00:00+00:00"
    else:
        db = sqlite3.connect(location, isolation_level=None)
        sqlite_backend.apply_migrations(db, MIGRATIONS[:1], Path(location))
        db.close()
        ts = "2026-03-0{}T00:00:00.000000+00:00"
    raw(location, "INSERT INTO budgets VALUES ('default', '100', 'month', ?)", (ts.format(1),))
    raw(
        location,
        "INSERT INTO runs (run_id, budget, estimate_usd, status, owner, created_at) "
        "VALUES ('old', 'default', '30', 'open', 'v1', ?)",
        (ts.format(2),),
    )
    raw(location, "INSERT INTO spend VALUES ('old', 'p1', '12.5', ?)", (ts.format(3),))


def test_upgrade_from_a_v1_only_ledger_keeps_its_data(ledger_location: str) -> None:
    """A ledger written with only m001 gets the later migrations on open and keeps its rows."""
    _v1_only(ledger_location)
    assert [r[0] for r in raw(ledger_location, "SELECT name FROM _migrations")] == ["m001_initial"]
    assert indexes(ledger_location) == set()
    assert "journals" not in tables(ledger_location)

    with open_ledger(ledger_location) as upgraded:
        assert upgraded.applied_migrations() == ALL
        assert tables(ledger_location) == SCHEMA
        assert indexes(ledger_location) == INDEXES
        status = upgraded.status(at=MAR)
        assert (status.reserved, status.spent, status.remaining) == (
            Decimal("17.5"),
            Decimal("12.5"),
            Decimal("70"),
        )
        run = upgraded.run("old")
        assert run is not None
        assert (run.owner, run.estimate, run.spent) == ("v1", Decimal("30"), Decimal("12.5"))


def test_ledger_migrate_applies_the_missing_ones_explicitly(ledger_location: str) -> None:
    """`migrate()` on an old ledger (opened without migrating) applies exactly what it lacks."""
    _v1_only(ledger_location)
    if is_pg(ledger_location):
        old: Ledger = pg_backend.PostgresLedger(ledger_location)
    else:
        db = sqlite3.connect(ledger_location, isolation_level=None, check_same_thread=False)
        old = SqliteLedger(db, Path(ledger_location))
        old._configure()
    with old:
        assert old.applied_migrations() == ["m001_initial"]
        assert old.migrate() == ALL[1:]
        assert old.migrate() == []


def test_a_ledger_from_a_newer_costguard_is_refused_and_left_alone(ledger: Ledger) -> None:
    """A recorded migration this version does not know raises LedgerError; nothing is recreated."""
    ledger.set_budget(usd=Decimal("100"), at=MAR)
    raw(
        ledger_url(ledger),
        "INSERT INTO _migrations VALUES ('m999_from_the_future', ?)",
        ("2030-01-01T00:00:00+00:00",),
    )
    with pytest.raises(LedgerError, match="written by a newer costguard") as caught:
        open_ledger(ledger_url(ledger))
    assert ledger.location in str(caught.value)
    assert "m999_from_the_future" in str(caught.value)
    assert [b.name for b in ledger.budgets()] == ["default"]
    assert "m999_from_the_future" in ledger.applied_migrations()


def ledger_url(ledger: Ledger) -> str:
    """Where `ledger` is, as open_ledger takes it (the URL with its password, or the file)."""
    return ledger.url if isinstance(ledger, pg_backend.PostgresLedger) else ledger.location


# --- periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("day", MAR, datetime(2026, 3, 15, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)),
        ("week", MAR, datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)),
        (
            "week",
            datetime(2026, 3, 16, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
            datetime(2026, 3, 23, tzinfo=UTC),
        ),
        ("month", MAR, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2))),
            datetime(2026, 4, 1, tzinfo=UTC),
            datetime(2026, 5, 1, tzinfo=UTC),
        ),
        ("none", MAR, None, None),
    ],
)
def test_period_windows_are_utc_calendar_windows(
    period: Period, at: datetime, start: datetime | None, end: datetime | None
) -> None:
    """Day, ISO week from Monday, calendar month and all time, all taken in UTC."""
    assert period_window(period, at) == (start, end)


def test_period_window_refuses_a_naive_moment() -> None:
    """A naive datetime is ambiguous, so period_window raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        period_window("day", datetime(2026, 3, 15))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("period", "last_in", "first_out"),
    [
        (
            "month",
            datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
        ),
        ("week", datetime(2026, 3, 15, 23, 59, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)),
        ("day", datetime(2026, 3, 15, 23, 59, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)),
    ],
)
def test_budget_resets_at_the_period_boundary(
    ledger: Ledger, period: Period, last_in: datetime, first_out: datetime
) -> None:
    """Spend recorded just before the boundary counts in the old window only."""
    ledger.set_budget(usd=Decimal("100"), period=period, at=MAR)
    admit(ledger, "r1", "60", at=last_in)
    ledger.record_spend("r1", "p1", Decimal("55.5"), at=last_in)
    ledger.settle("r1", status="completed", at=last_in)
    assert ledger.status(at=last_in).remaining == Decimal("44.5")
    after = ledger.status(at=first_out)
    assert (after.spent, after.reserved, after.remaining) == (
        Decimal("0"),
        Decimal("0"),
        Decimal("100"),
    )
    assert admit(ledger, "r2", "100", at=first_out).admitted


def test_period_none_never_resets(ledger: Ledger) -> None:
    """A budget with period none counts every spend ever recorded."""
    ledger.set_budget(usd=Decimal("10"), period="none", at=MAR)
    admit(ledger, "r1", "4", at=MAR)
    ledger.record_spend("r1", "p1", Decimal("4"), at=MAR)
    ledger.settle("r1", status="completed", at=MAR)
    later = ledger.status(at=datetime(2031, 1, 1, tzinfo=UTC))
    assert (later.period_start, later.period_end) == (None, None)
    assert later.remaining == Decimal("6")


def test_an_open_run_from_last_month_still_holds_its_unspent_part(budgeted: Ledger) -> None:
    """An open reservation counts in the new month; its spend counts where it was recorded."""
    admit(budgeted, "long", "50", at=datetime(2026, 3, 31, 22, tzinfo=UTC))
    budgeted.record_spend("long", "p1", Decimal("20"), at=datetime(2026, 3, 31, 23, tzinfo=UTC))
    budgeted.record_spend("long", "p2", Decimal("10"), at=APR)
    march = budgeted.status(at=MAR)
    april = budgeted.status(at=APR)
    assert (march.spent, march.reserved, march.remaining) == (
        Decimal("20"),
        Decimal("20"),
        Decimal("60"),
    )
    assert (april.spent, april.reserved, april.remaining) == (
        Decimal("10"),
        Decimal("20"),
        Decimal("70"),
    )


def test_a_run_admitted_after_the_window_does_not_count_in_it(budgeted: Ledger) -> None:
    """An open run admitted in April holds nothing in March's window."""
    admit(budgeted, "april", "30", at=APR)
    assert budgeted.status(at=MAR).reserved == Decimal("0")
    assert budgeted.status(at=APR).reserved == Decimal("30")


# --- budgets -------------------------------------------------------------------------------


def test_set_budget_creates_then_changes_one_budget(ledger: Ledger) -> None:
    """Setting a budget twice changes it in place; budgets() lists each name once."""
    first = ledger.set_budget(usd=Decimal("500"), at=MAR)
    assert (first.name, first.limit, first.period) == ("default", Decimal("500"), "month")
    ledger.set_budget("team", usd=Decimal("20.25"), period="day", at=MAR)
    ledger.set_budget(usd=Decimal("750.5"), period="week", at=APR)
    assert [(b.name, b.limit, b.period, b.updated) for b in ledger.budgets()] == [
        ("default", Decimal("750.5"), "week", APR),
        ("team", Decimal("20.25"), "day", MAR),
    ]


def test_money_is_stored_exactly(ledger: Ledger) -> None:
    """Amounts keep every digit: decimal TEXT on SQLite, NUMERIC on PostgreSQL; sums are exact."""
    ledger.set_budget(usd=Decimal("1000000.1000000000000000055511151231257827"), at=MAR)
    url = ledger_url(ledger)
    if is_pg(url):
        stored = raw(url, "SELECT limit_usd::text, pg_typeof(limit_usd)::text FROM budgets")
        assert stored == [("1000000.1000000000000000055511151231257827", "numeric")]
    else:
        stored = raw(url, "SELECT limit_usd, typeof(limit_usd) FROM budgets")
        assert stored == [("1000000.1000000000000000055511151231257827", "text")]
    assert ledger.budgets()[0].limit == Decimal("1000000.1000000000000000055511151231257827")
    admit(ledger, "r1", "1", budget=None)
    for i in range(10):
        ledger.record_spend("r1", f"tok-{i}", Decimal("0.0000000375") * 3, at=MAR)
    cast = "::text" if is_pg(url) else ""
    stored_spend = raw(url, f"SELECT DISTINCT amount_usd{cast} FROM spend")
    assert [row[0] for row in stored_spend] == ["0.0000001125"]
    run = ledger.run("r1")
    assert run is not None
    assert run.spent == Decimal("0.000001125")


def test_moments_are_utc_instants_on_both_back_ends(ledger: Ledger) -> None:
    """A moment given with an offset comes back as the same instant in UTC."""
    offset = datetime(2026, 3, 15, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-2)))
    admit(ledger, "r1", "1", at=offset)
    run = ledger.run("r1")
    assert run is not None
    assert run.created == offset
    assert run.created.tzinfo == UTC
    assert run.created.isoformat() == "2026-03-16T01:30:00.123456+00:00"


def test_text_with_nul_characters_is_refused_on_both(ledger: Ledger) -> None:
    """PostgreSQL cannot store NUL in text, so neither back end accepts it."""
    with pytest.raises(LedgerError, match="must not contain NUL"):
        admit(ledger, "r\x00", "1")
    with pytest.raises(LedgerError, match="must not contain NUL"):
        admit(ledger, "r1", "1", meta={"note": "a\x00b"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usd": 0.5}, "usd must be a Decimal, got float"),
        ({"usd": Decimal("-1")}, "usd must be a finite amount >= 0"),
        ({"usd": Decimal("NaN")}, "usd must be a finite amount >= 0"),
        ({"usd": Decimal("Infinity")}, "usd must be a finite amount >= 0"),
        ({"usd": Decimal("1e309")}, r"usd must be at most \$1,000,000,000\.00, got 1E\+309"),
        ({"usd": Decimal("5"), "period": "year"}, "unknown period 'year'"),
        ({"usd": Decimal("5"), "name": " "}, "budget name must be a non-empty string"),
        (
            {"usd": Decimal("5"), "at": datetime(2026, 3, 1)},  # noqa: DTZ001 - the point
            "at must be a timezone-aware datetime",
        ),
    ],
)
def test_set_budget_rejects_bad_arguments(
    ledger: Ledger, kwargs: dict[str, Any], message: str
) -> None:
    """Floats, negative or non-finite amounts, unknown periods, blank names, naive times fail."""
    with pytest.raises(LedgerError, match=message) as caught:
        ledger.set_budget(**kwargs)
    assert str(caught.value).startswith(f"ledger {ledger.location}: ")


def test_status_of_an_unknown_budget_names_the_fix(ledger: Ledger) -> None:
    """Asking for a budget that is not set says how to set it."""
    with pytest.raises(
        LedgerError, match=r"no budget named 'team'; set one with 'costguard budget"
    ):
        ledger.status("team", at=MAR)


def test_statuses_lists_every_budget(budgeted: Ledger) -> None:
    """statuses() gives one status per budget, by name."""
    budgeted.set_budget("art", usd=Decimal("5"), period="day", at=MAR)
    assert [s.name for s in budgeted.statuses(at=MAR)] == ["art", "default"]


# --- admission -----------------------------------------------------------------------------


def test_admit_within_the_budget_reserves_the_amount(budgeted: Ledger) -> None:
    """An admitted run reserves its amount; remaining is what the budget had before it."""
    admission = admit(budgeted, "r1", "40.5")
    assert admission.admitted
    assert (admission.needed, admission.remaining, admission.shortfall) == (
        Decimal("40.5"),
        Decimal("100"),
        Decimal("0"),
    )
    assert admission.budget == "default"
    assert not admission.existing
    assert "budget 'default'" in admission.reason
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining, status.open_runs) == (
        Decimal("40.5"),
        Decimal("0"),
        Decimal("59.5"),
        1,
    )


def test_admit_exactly_the_remaining_fits_and_a_cent_more_does_not(budgeted: Ledger) -> None:
    """The budget check is `amount <= remaining`: the exact remainder fits, a cent more does not."""
    assert admit(budgeted, "r1", "60").admitted
    assert admit(budgeted, "r2", "40").admitted
    refused = admit(budgeted, "r3", "0.01")
    assert not refused.admitted
    assert (refused.remaining, refused.shortfall) == (Decimal("0"), Decimal("0.01"))


def test_refused_run_is_recorded_but_holds_nothing(budgeted: Ledger) -> None:
    """Over the budget, the run is refused with its shortfall and kept as `refused`."""
    admit(budgeted, "r1", "70")
    refused = admit(budgeted, "r2", "45.25")
    assert not refused.admitted
    assert (refused.remaining, refused.shortfall) == (Decimal("30"), Decimal("15.25"))
    assert refused.reason.startswith(
        "needs $45.25, but budget 'default' ($100.00) has $30.00 left this month "
    )
    assert refused.reason.endswith("; short by $15.25")
    run = budgeted.run("r2")
    assert run is not None
    assert (run.status, run.reserved, run.counted) == ("refused", Decimal("0"), Decimal("0"))
    assert budgeted.status(at=MAR).reserved == Decimal("70")


def test_max_usd_refuses_even_without_a_budget(ledger: Ledger) -> None:
    """With no budget set only max_usd applies, and a run above it is refused."""
    refused = admit(ledger, "r1", "12", max_usd=Decimal("10"))
    assert not refused.admitted
    assert (refused.remaining, refused.shortfall) == (None, Decimal("2"))
    assert refused.reason == "needs $12.00, more than max_usd $10.00 by $2.00"


def test_a_reason_never_shows_two_different_amounts_alike(budgeted: Ledger) -> None:
    """The amounts of one reason are formatted together: a need a thousandth under the limit
    and max_usd does not read `$100.00 of the $100.00`; the limits show as they were set."""
    fits = admit(budgeted, "r1", "99.999", max_usd=Decimal("100"))
    assert fits.admitted
    assert fits.reason == (
        "fits: needs $99.999 of the $100.000 budget 'default' has left this month "
        "(2026-03-01 to 2026-03-31 UTC) (max_usd $100.000)"
    )
    over = admit(budgeted, "r2", "0.0015", max_usd=Decimal("0.001"))
    assert over.reason.startswith("needs $0.0015, more than max_usd $0.0010 by $0.00050")


def test_shortfall_is_the_larger_of_both_misses(budgeted: Ledger) -> None:
    """When both max_usd and the budget refuse, the shortfall is what both need."""
    admit(budgeted, "r1", "90")
    refused = admit(budgeted, "r2", "25", max_usd=Decimal("20"))
    assert refused.shortfall == Decimal("15")
    assert "max_usd" in refused.reason
    assert "budget 'default'" in refused.reason


def test_without_a_budget_the_run_is_still_recorded_and_counts_later(ledger: Ledger) -> None:
    """A run charged to an unset budget is admitted and counts once that budget is set."""
    admission = admit(ledger, "r1", "30", max_usd=Decimal("50"))
    assert admission.admitted
    assert admission.remaining is None
    assert "no budget named 'default'" in admission.reason
    ledger.set_budget(usd=Decimal("100"), at=MAR)
    assert ledger.status(at=MAR).remaining == Decimal("70")


def test_a_run_charged_to_no_budget_counts_against_none(budgeted: Ledger) -> None:
    """budget=None records the run without charging any budget."""
    admission = admit(budgeted, "free", "500", budget=None)
    assert admission.admitted
    assert admission.budget is None
    assert budgeted.status(at=MAR).remaining == Decimal("100")


def test_runs_charge_only_their_own_budget(budgeted: Ledger) -> None:
    """A run charged to one budget does not touch another's remaining."""
    budgeted.set_budget("art", usd=Decimal("10"), at=MAR)
    assert admit(budgeted, "a1", "10", budget="art").admitted
    assert not admit(budgeted, "a2", "1", budget="art").admitted
    assert budgeted.status(at=MAR).remaining == Decimal("100")


def test_admit_twice_returns_the_first_admission_and_reserves_once(budgeted: Ledger) -> None:
    """Admitting an open run again (resume) returns its admission and reserves nothing more."""
    first = admit(budgeted, "r1", "60")
    again = admit(budgeted, "r1", "60")
    other_amount = admit(budgeted, "r1", "99")
    for repeat in (again, other_amount):
        assert repeat.admitted
        assert repeat.existing
        assert (repeat.needed, repeat.remaining) == (first.needed, first.remaining)
        assert "nothing more reserved" in repeat.reason
    assert budgeted.status(at=MAR).reserved == Decimal("60")
    assert len(budgeted.runs()) == 1


def test_a_refused_run_may_be_admitted_again_when_it_fits(budgeted: Ledger) -> None:
    """Re-admitting a refused run checks again, so a raised budget lets it in."""
    assert not admit(budgeted, "big", "150").admitted
    budgeted.set_budget(usd=Decimal("200"), at=MAR)
    again = admit(budgeted, "big", "150")
    assert again.admitted
    assert not again.existing
    run = budgeted.run("big")
    assert run is not None
    assert (run.status, run.settled) == ("open", None)


def test_a_closed_run_cannot_be_admitted_again(budgeted: Ledger) -> None:
    """A settled run id is spent: admitting it again raises LedgerError."""
    admit(budgeted, "r1", "10")
    budgeted.settle("r1", status="completed", at=MAR)
    with pytest.raises(LedgerError, match=r"run 'r1' is already closed \(completed\)"):
        admit(budgeted, "r1", "10")


def test_an_overspent_budget_admits_nothing(budgeted: Ledger) -> None:
    """Spend past the limit makes remaining negative and refuses even a zero-cost run."""
    admit(budgeted, "r1", "90")
    budgeted.record_spend("r1", "p1", Decimal("130"), at=MAR)
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining) == (
        Decimal("0"),
        Decimal("130"),
        Decimal("-30"),
    )
    refused = admit(budgeted, "r2", "0")
    assert not refused.admitted
    assert refused.shortfall == Decimal("30")


def test_meta_round_trips_with_decimals_and_paths_as_strings(ledger: Ledger) -> None:
    """meta is stored as JSON; Decimal and Path values come back as strings."""
    meta = {
        "queue": Path("/q/a.jsonl"),
        "rate_cards": ["openai/2026-01-01"],
        "expected_usd": Decimal("1.50"),
    }
    admit(ledger, "r1", "2", meta=meta)
    run = ledger.run("r1")
    assert run is not None
    assert run.meta == {
        "queue": "/q/a.jsonl",
        "rate_cards": ["openai/2026-01-01"],
        "expected_usd": "1.50",
    }


@pytest.mark.parametrize(
    ("run_id", "amount", "kwargs", "message"),
    [
        ("r1", Decimal("1"), {"meta": {"x": object()}}, "meta must be JSON"),
        ("r1", Decimal("1"), {"at": datetime(2026, 3, 1)}, "timezone-aware"),  # noqa: DTZ001
        ("", Decimal("1"), {}, "run id must be a non-empty string"),
        ("r1", Decimal("1"), {"owner": ""}, "owner must be a non-empty string"),
        ("r1", 1.5, {}, "amount must be a Decimal, got float"),
        ("r1", Decimal("-2"), {}, "amount must be a finite amount >= 0"),
        ("r1", Decimal("1"), {"max_usd": 3.0}, "max_usd must be a Decimal"),
        ("r1", Decimal("1"), {"max_usd": Decimal("1e999999")}, "max_usd must be at most"),
    ],
)
def test_admit_rejects_bad_arguments(
    ledger: Ledger, run_id: str, amount: Any, kwargs: dict[str, Any], message: str
) -> None:
    """Bad ids, owners, amounts, meta or naive times raise LedgerError and record nothing."""
    kwargs = {"owner": "test", "at": MAR, **kwargs}
    with pytest.raises(LedgerError, match=message):
        ledger.admit(run_id, amount, **kwargs)
    assert ledger.runs() == []


# --- spend ---------------------------------------------------------------------------------


def test_record_spend_twice_counts_once(budgeted: Ledger) -> None:
    """Recording the same part again returns False and does not count it twice."""
    admit(budgeted, "r1", "50")
    assert budgeted.record_spend("r1", "batch-1", Decimal("12.34"), at=MAR)
    assert not budgeted.record_spend("r1", "batch-1", Decimal("12.340"), at=MAR)
    run = budgeted.run("r1")
    assert run is not None
    assert (run.spent, run.parts) == (Decimal("12.34"), 1)
    assert budgeted.status(at=MAR).spent == Decimal("12.34")


def test_record_spend_of_a_part_with_another_amount_is_an_error(budgeted: Ledger) -> None:
    """A part already recorded with a different amount raises rather than guessing."""
    admit(budgeted, "r1", "50")
    budgeted.record_spend("r1", "batch-1", Decimal("12.34"), at=MAR)
    with pytest.raises(LedgerError, match=r"already recorded as \$12\.34, not \$13"):
        budgeted.record_spend("r1", "batch-1", Decimal("13"), at=MAR)


def test_record_spend_needs_an_admitted_run(budgeted: Ledger) -> None:
    """Spend for an unknown or a refused run raises LedgerError."""
    with pytest.raises(LedgerError, match="no run 'ghost'; admit it before"):
        budgeted.record_spend("ghost", "p1", Decimal("1"), at=MAR)
    admit(budgeted, "big", "500")
    with pytest.raises(LedgerError, match="run 'big' was refused"):
        budgeted.record_spend("big", "p1", Decimal("1"), at=MAR)


def test_an_open_run_counts_the_larger_of_reservation_and_spend(budgeted: Ledger) -> None:
    """While open a run counts max(estimate, spent): its reservation, then its overspend."""
    admit(budgeted, "r1", "40")
    budgeted.record_spend("r1", "p1", Decimal("15"), at=MAR)
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining) == (
        Decimal("25"),
        Decimal("15"),
        Decimal("60"),
    )
    budgeted.record_spend("r1", "p2", Decimal("35"), at=MAR)
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining) == (
        Decimal("0"),
        Decimal("50"),
        Decimal("50"),
    )
    run = budgeted.run("r1")
    assert run is not None
    assert (run.reserved, run.spent, run.counted) == (Decimal("0"), Decimal("50"), Decimal("50"))


def test_spend_recorded_after_settling_still_counts(budgeted: Ledger) -> None:
    """A late part of a closed run is real money and counts."""
    admit(budgeted, "r1", "40")
    budgeted.settle("r1", status="failed", at=MAR)
    assert budgeted.record_spend("r1", "late", Decimal("3"), at=MAR)
    assert budgeted.status(at=MAR).remaining == Decimal("97")


def test_a_ledger_shared_by_threads_records_every_part(budgeted: Ledger) -> None:
    """Spend recorded from a thread pool on one Ledger is all counted, once each."""
    admit(budgeted, "sync", "100")

    def record(i: int) -> bool:
        """Record part i (every part twice over the pool)."""
        return budgeted.record_spend("sync", f"req-{i % 20}", Decimal("0.039"), at=MAR)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(record, range(40)))
    assert results.count(True) == 20
    run = budgeted.run("sync")
    assert run is not None
    assert (run.spent, run.parts) == (Decimal("0.780"), 20)


# --- settle and release --------------------------------------------------------------------


def test_settle_releases_the_unspent_reservation(budgeted: Ledger) -> None:
    """After settling, a run counts only its recorded spend."""
    admit(budgeted, "r1", "80")
    budgeted.record_spend("r1", "p1", Decimal("33.3"), at=MAR)
    run = budgeted.settle("r1", status="completed", at=APR)
    assert (run.status, run.settled, run.reserved, run.spent) == (
        "completed",
        APR,
        Decimal("0"),
        Decimal("33.3"),
    )
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining, status.open_runs) == (
        Decimal("0"),
        Decimal("33.3"),
        Decimal("66.7"),
        0,
    )


def test_settle_twice_changes_nothing(budgeted: Ledger) -> None:
    """Settling a closed run again keeps the first status and time."""
    admit(budgeted, "r1", "10")
    first = budgeted.settle("r1", status="completed", at=MAR)
    again = budgeted.settle("r1", status="failed", at=APR)
    assert again == first
    assert budgeted.status(at=MAR).remaining == Decimal("100")


@pytest.mark.parametrize("status", ["open", "refused", ""])
def test_settle_refuses_a_status_that_is_not_closed(budgeted: Ledger, status: str) -> None:
    """`open`, `refused` or a blank status cannot close a run."""
    admit(budgeted, "r1", "10")
    with pytest.raises(LedgerError, match="status"):
        budgeted.settle("r1", status=status, at=MAR)


def test_settle_or_release_of_an_unknown_run_is_an_error(ledger: Ledger) -> None:
    """Closing a run the ledger does not hold raises LedgerError."""
    with pytest.raises(LedgerError, match="no run 'ghost'"):
        ledger.settle("ghost", status="completed", at=MAR)
    with pytest.raises(LedgerError, match="no run 'ghost'"):
        ledger.release("ghost", at=MAR, reason="cancelled")


def test_release_frees_a_run_that_sent_nothing(budgeted: Ledger) -> None:
    """A released run holds nothing, keeps its reason, and releasing again is a no-op."""
    admit(budgeted, "r1", "90")
    run = budgeted.release("r1", at=MAR, reason="declined at the prompt")
    assert (run.status, run.close_reason, run.reserved) == (
        "released",
        "declined at the prompt",
        Decimal("0"),
    )
    assert budgeted.release("r1", at=APR, reason="again") == run
    assert budgeted.settle("r1", status="completed", at=APR) == run
    assert budgeted.status(at=MAR).remaining == Decimal("100")


# --- queries -------------------------------------------------------------------------------


def test_run_holds_everything_about_a_run(budgeted: Ledger) -> None:
    """run() returns estimate, reservation, spend, status, owner, times and meta."""
    admit(budgeted, "r1", "25", max_usd=Decimal("30"), owner="ana@host pid 7", meta={"n": 3})
    budgeted.record_spend("r1", "p1", Decimal("5"), at=MAR)
    run = budgeted.run("r1")
    assert run is not None
    assert run.open
    assert (run.budget, run.estimate, run.max_usd, run.reserved, run.spent, run.counted) == (
        "default",
        Decimal("25"),
        Decimal("30"),
        Decimal("20"),
        Decimal("5"),
        Decimal("25"),
    )
    assert (run.owner, run.created, run.settled, run.meta, run.parts) == (
        "ana@host pid 7",
        MAR,
        None,
        {"n": 3},
        1,
    )
    assert run.remaining_at_admission == Decimal("100")
    assert budgeted.run("ghost") is None


def test_runs_lists_newest_first_with_limit_and_status(budgeted: Ledger) -> None:
    """runs() is newest first, honours limit, and filters by status."""
    for day in range(1, 6):
        admit(budgeted, f"r{day}", "1", at=datetime(2026, 3, day, tzinfo=UTC))
    budgeted.settle("r2", status="completed", at=MAR)
    budgeted.record_spend("r5", "p1", Decimal("0.5"), at=MAR)
    budgeted.record_spend("r5", "p2", Decimal("0.25"), at=MAR)
    assert [r.run_id for r in budgeted.runs()] == ["r5", "r4", "r3", "r2", "r1"]
    latest = budgeted.runs(limit=2)
    assert [(r.run_id, r.spent) for r in latest] == [("r5", Decimal("0.75")), ("r4", Decimal(0))]
    assert [r.run_id for r in budgeted.runs(status="completed")] == ["r2"]
    assert [r.run_id for r in budgeted.runs(status="open", limit=2)] == ["r5", "r4"]
    with pytest.raises(LedgerError, match="limit must be a whole number >= 1"):
        budgeted.runs(limit=0)


def test_spend_by_groups_actual_spend_per_window(budgeted: Ledger) -> None:
    """spend_by() sums recorded spend per window, per budget or over all runs."""
    admit(budgeted, "mar", "20", at=MAR)
    admit(budgeted, "apr", "20", at=APR)
    admit(budgeted, "free", "20", budget=None, at=APR)
    budgeted.record_spend("mar", "p1", Decimal("1.5"), at=MAR)
    budgeted.record_spend("mar", "p2", Decimal("2"), at=APR)
    budgeted.record_spend("apr", "p1", Decimal("4"), at=APR)
    budgeted.record_spend("free", "p1", Decimal("8"), at=APR)
    by_month = budgeted.spend_by("default", "month")
    assert [(w.start, w.end, w.spent, w.runs) for w in by_month] == [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), Decimal("1.5"), 1),
        (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), Decimal("6"), 2),
    ]
    everything = budgeted.spend_by(None, "none")
    assert [(w.start, w.spent, w.runs) for w in everything] == [(None, Decimal("15.5"), 3)]
    assert budgeted.spend_by("nobody", "day") == []
    with pytest.raises(LedgerError, match="unknown period 'year'"):
        budgeted.spend_by("default", "year")  # type: ignore[arg-type]


# --- processes -----------------------------------------------------------------------------

CHILD = """
import json, sys
from datetime import datetime
from decimal import Decimal
from costguard.ledger import open_ledger

path, mode, name, amount, at = sys.argv[1:6]
ledger = open_ledger(path)
print("ready", flush=True)
sys.stdin.readline()
when = datetime.fromisoformat(at)
if mode == "admit":
    adm = ledger.admit(name, Decimal(amount), owner=f"child {name}", at=when, meta={})
    print(json.dumps({"admitted": adm.admitted, "remaining": str(adm.remaining)}), flush=True)
else:
    new = [ledger.record_spend("shared", f"part-{i}", Decimal(amount), at=when) for i in range(6)]
    print(json.dumps({"new": sum(new)}), flush=True)
ledger.close()
"""
"""A process that opens the ledger, waits for the parent's go, then admits or records spend."""


def _race(location: str, mode: str, names: list[str], amount: str) -> list[dict[str, Any]]:
    """Start one CHILD per name, release them together, and return what each printed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, location, mode, name, amount, MAR.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready == "ready\n", proc.communicate(timeout=60)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_racing_processes_never_admit_past_the_budget(budgeted: Ledger) -> None:
    """Eight processes race to admit 12.345 each against room for exactly three: three get in."""
    amount, fits = Decimal("12.345"), 3
    budgeted.set_budget(usd=amount * fits, at=MAR)
    results = _race(ledger_url(budgeted), "admit", [f"run-{i}" for i in range(8)], str(amount))
    admitted = [r for r in results if r["admitted"]]
    assert len(admitted) == fits
    runs = budgeted.runs(limit=100)
    reserved = sum((r.estimate for r in runs if r.open), Decimal(0))
    assert reserved == amount * fits
    assert sorted(r.status for r in runs) == ["open"] * fits + ["refused"] * (8 - fits)
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.remaining) == (amount * fits, Decimal("0.000"))
    # Every admission saw a remaining the earlier admissions had left, never more.
    seen = sorted((Decimal(r["remaining"]) for r in admitted), reverse=True)
    assert seen == [amount * 3, amount * 2, amount]


@pytest.mark.slow
def test_racing_processes_record_each_part_once(budgeted: Ledger) -> None:
    """Eight processes record the same six parts at once: each part counts exactly once."""
    admit(budgeted, "shared", "50")
    results = _race(ledger_url(budgeted), "spend", [f"p{i}" for i in range(8)], "1.25")
    assert sum(r["new"] for r in results) == 6
    run = budgeted.run("shared")
    assert run is not None
    assert (run.spent, run.parts) == (Decimal("7.50"), 6)


def test_threads_racing_admissions_in_one_process_fit_the_budget(budgeted: Ledger) -> None:
    """Admissions from threads sharing one Ledger also never pass the budget."""
    barrier = threading.Barrier(8)

    def go(i: int) -> bool:
        """Wait for all threads, then admit run i for $30."""
        barrier.wait()
        return admit(budgeted, f"t{i}", "30").admitted

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = list(pool.map(go, range(8)))
    assert admitted.count(True) == 3
    assert budgeted.status(at=MAR).remaining == Decimal("10")


# --- rehearsals ----------------------------------------------------------------------------


def test_a_rehearsal_gets_the_real_decision_but_counts_as_no_real_money(budgeted: Ledger) -> None:
    """A rehearsal is admitted against what the budget really has left, and once admitted,
    spent and settled it changes nothing `status`, `charges` or `spend_by` report."""
    admit(budgeted, "real", "30")
    budgeted.record_spend("real", "p1", Decimal("20"), at=MAR)
    too_big = admit(budgeted, "rehearsal-big", "71", rehearsal=True)
    assert not too_big.admitted
    assert too_big.reason.startswith("needs $71.00, but budget 'default' ($100.00) has $70.00")
    assert too_big.reason.endswith("; a rehearsal: nothing real is reserved or spent")
    fits = admit(budgeted, "rehearsal", "60", rehearsal=True)
    assert fits.admitted
    budgeted.record_spend("rehearsal", "p1", Decimal("55"), at=MAR)
    budgeted.settle("rehearsal", status="collected", at=MAR)
    status = budgeted.status(at=MAR)
    assert (status.reserved, status.spent, status.remaining) == (Decimal(10), Decimal(20), 70)
    assert [c.run_id for c in budgeted.charges()] == ["real"]
    assert [p.spent for p in budgeted.spend_by("default")] == [Decimal(20)]
    runs = {r.run_id: r for r in budgeted.runs()}
    assert (runs["rehearsal"].rehearsal, runs["rehearsal"].spent) == (True, Decimal(55))
    assert not runs["real"].rehearsal
    assert [r.run_id for r in budgeted.history(rehearsals=False)] == ["real"]


def test_open_rehearsals_see_each_others_reservations(budgeted: Ledger) -> None:
    """Concurrent rehearsals take turns for the real remaining amount as real runs would;
    a finished rehearsal frees its room (its spend is not real), real runs never see them."""
    assert admit(budgeted, "rehearsal-1", "60", rehearsal=True).admitted
    second = admit(budgeted, "rehearsal-2", "60", rehearsal=True)
    assert not second.admitted
    assert "has $40.00 left" in second.reason
    assert admit(budgeted, "real", "100").admitted  # rehearsals hold nothing real
    budgeted.release("real", at=MAR, reason="test")
    budgeted.settle("rehearsal-1", status="collected", at=MAR)
    assert admit(budgeted, "rehearsal-2", "60", rehearsal=True).admitted


# --- identity ------------------------------------------------------------------------------


def test_every_ledger_has_its_own_identity(ledger: Ledger, tmp_path: Path) -> None:
    """A new ledger gets a random identity, the same on every open; another ledger differs."""
    with open_ledger(ledger_url(ledger)) as again:
        assert again.identity == ledger.identity
    with open_ledger(tmp_path / "other.sqlite3") as other:
        assert other.identity != ledger.identity
    assert len(ledger.identity) == 32


def test_a_ledger_replaced_under_an_open_connection_refuses_writes(budgeted: Ledger) -> None:
    """The database behind an open ledger gets another identity (restored from elsewhere):
    recording spend fails with LedgerError and records nothing."""
    admit(budgeted, "r1", "10")
    raw(ledger_url(budgeted), "UPDATE ledger_identity SET id = 'someone-else'")
    with pytest.raises(LedgerError, match="is not the ledger this process opened") as caught:
        budgeted.record_spend("r1", "p1", Decimal("5"), at=MAR)
    assert "nothing was recorded" in str(caught.value)
    assert raw(ledger_url(budgeted), "SELECT COUNT(*) FROM spend") == [(0,)]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_ledger_file_deleted_or_replaced_while_open_refuses_writes(
    sqlite_ledger: SqliteLedger, how: str
) -> None:
    """The file removed (or another file moved in) under an open ledger: the next write fails
    with LedgerError instead of going to a file nobody will read again."""
    sqlite_ledger.set_budget(usd=Decimal("100"), period="month", at=MAR)
    admit(sqlite_ledger, "r1", "10")
    path = sqlite_ledger.path
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    if how == "replaced":
        open_ledger(path).close()
    with pytest.raises(LedgerError, match=f"was {how}") as caught:
        sqlite_ledger.settle("r1", status="collected", at=MAR)
    assert str(caught.value).startswith(f"ledger {path}: ")
