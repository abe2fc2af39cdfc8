"""Admission reads closed runs' spend per budget and day (`closed_spend_days`), not every spend
row: its figures must stay those `Ledger.status` sums from the spend rows, on both back ends."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from costguard.errors import LedgerError
from costguard.ledger import MIGRATIONS, Ledger, open_ledger
from costguard.ledger import postgres as pg_backend
from costguard.ledger import sqlite as sqlite_backend
from costguard.ledger.usage import _admission_status, _budget
from ledger_backends import is_pg, raw

T0 = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # a month's and a week's end nearby


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    with open_ledger(ledger_location) as opened:
        yield opened


def admission_view(ledger: Ledger, name: str, at: datetime) -> tuple[Decimal, Decimal, Decimal]:
    def work(db):  # type: ignore[no-untyped-def]
        row = db.one(
            "SELECT name, limit_usd, period, updated_at FROM budgets WHERE name = ?", (name,)
        )
        found = _admission_status(db, _budget(row), at)
        return found.reserved, found.spent, found.remaining

    return ledger._read(work)


def status_view(ledger: Ledger, name: str, at: datetime) -> tuple[Decimal, Decimal, Decimal]:
    found = ledger.status(name, at=at)
    return found.reserved, found.spent, found.remaining


def test_admission_figures_match_status_through_random_histories(ledger: Ledger) -> None:
    """Admit, spend (also late, after closing), settle, release, change the period: at every
    step and moment the admission's reserved, spent and remaining are `status`'s."""
    rng = random.Random(17)
    ledger.set_budget("b", usd=Decimal(1000), period="day", at=T0)
    ledger.set_budget("other", usd=Decimal(1000), period="month", at=T0)
    runs: list[str] = []
    at = T0
    for step in range(160):
        at += timedelta(minutes=rng.choice([1, 7, 45, 180]))
        action = rng.random()
        if action < 0.3 or not runs:
            run = f"r{step}"
            budget = rng.choice(["b", "b", "other"])
            ledger.admit(
                run,
                Decimal(rng.choice(["1.5", "3", "0.25"])),
                budget=budget,
                owner=rng.choice(["x", "y"]),
                at=at,
                rehearsal=rng.random() < 0.1,
            )
            runs.append(run)
        elif action < 0.65:
            run = rng.choice(runs)
            if ledger.run(run).status != "refused":  # type: ignore[union-attr]
                ledger.record_spend(
                    run, f"p{step}", Decimal(rng.choice(["0.4", "1.25", "2"])), at=at
                )
        elif action < 0.85:
            ledger.settle(rng.choice(runs), status="completed", at=at)
        elif action < 0.95:
            ledger.release(rng.choice(runs), at=at, reason="test")
        else:
            ledger.set_budget(
                "b", usd=Decimal(1000), period=rng.choice(["day", "week", "month", "none"]), at=at
            )
        for name in ("b", "other"):
            for probe in (at, at - timedelta(days=1), at + timedelta(days=2)):
                assert admission_view(ledger, name, probe) == status_view(ledger, name, probe), (
                    step,
                    name,
                    probe,
                )


def test_an_existing_ledger_gets_its_closed_spend_summed_once(ledger_location: str) -> None:
    """A ledger written before m007 (closed runs with spend over several days) is migrated with
    its per-day totals computed once; admission then sees what status sees."""
    if is_pg(ledger_location):
        old = pg_backend.PostgresLedger(ledger_location)
        try:
            old._write(lambda db: pg_backend.apply_migrations(db, MIGRATIONS[:6], ledger_location))
        finally:
            old.close()
    else:
        db = sqlite3.connect(ledger_location, isolation_level=None)
        sqlite_backend.apply_migrations(db, MIGRATIONS[:6], Path(ledger_location))
        db.close()
    stamp = "2026-03-{:02d}T{:02d}:00:00.000000+00:00"
    raw(
        ledger_location,
        "INSERT INTO budgets VALUES ('default', '100', 'month', ?)",
        (stamp.format(1, 0),),
    )
    for i, (status, day, hour, amount) in enumerate(
        [
            ("completed", 2, 23, "1.1"),
            ("completed", 2, 1, "0.2"),
            ("failed", 3, 0, "3"),
            ("open", 3, 5, "7"),
            ("completed", 28, 12, "0.05"),
        ]
    ):
        raw(
            ledger_location,
            "INSERT INTO runs (run_id, budget, estimate_usd, status, owner, created_at) "
            "VALUES (?, 'default', '10', ?, 'v', ?)",
            (f"r{i}", status, stamp.format(day, 0)),
        )
        raw(
            ledger_location,
            "INSERT INTO spend VALUES (?, 'p', ?, ?)",
            (f"r{i}", amount, stamp.format(day, hour)),
        )
    with open_ledger(ledger_location) as upgraded:
        days = sorted(
            (str(Decimal(row[1])), str(row[0])[:10])
            for row in raw(ledger_location, "SELECT day, amount_usd FROM closed_spend_days")
        )
        assert days == [("0.05", "2026-03-28"), ("1.3", "2026-03-02"), ("3", "2026-03-03")]
        at = datetime(2026, 3, 29, tzinfo=UTC)
        assert admission_view(upgraded, "default", at) == status_view(upgraded, "default", at)
        assert status_view(upgraded, "default", at) == (
            Decimal(3),
            Decimal("11.35"),
            Decimal("85.65"),
        )


def test_settle_call_records_closes_and_annotates_in_one_step(ledger: Ledger) -> None:
    """`settle_call` = annotate + record_spend + settle: idempotent, the first status stays,
    a different amount for the same part is refused, and admission counts it once."""
    ledger.set_budget("b", usd=Decimal(10), period="month", at=T0)
    ledger.admit("c1", Decimal(3), budget="b", owner="g", at=T0, meta={"route": "x"})
    run = ledger.settle_call(
        "c1", "gateway", Decimal("1.25"), status="completed", at=T0, meta={"reconciled": True}
    )
    assert (run.status, run.spent, run.meta) == (
        "completed",
        Decimal("1.25"),
        {"route": "x", "reconciled": True},
    )
    again = ledger.settle_call("c1", "gateway", Decimal("1.25"), status="failed", at=T0)
    assert (again.status, again.spent) == ("completed", Decimal("1.25"))
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.settle_call("c1", "gateway", Decimal(2), status="completed", at=T0)
    with pytest.raises(LedgerError, match="cannot settle"):
        ledger.settle_call("c1", "gateway", Decimal("1.25"), status="open", at=T0)
    with pytest.raises(LedgerError, match="no run"):
        ledger.settle_call("nope", "gateway", Decimal(1), status="completed", at=T0)
    assert status_view(ledger, "b", T0) == (Decimal(0), Decimal("1.25"), Decimal("8.75"))
    assert admission_view(ledger, "b", T0) == status_view(ledger, "b", T0)
    late = ledger.settle_call("c1", "late", Decimal("0.5"), status="completed", at=T0)
    assert late.spent == Decimal("1.75")
    assert admission_view(ledger, "b", T0) == status_view(ledger, "b", T0)
