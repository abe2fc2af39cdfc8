"""What only the PostgreSQL ledger has: connections that drop, servers that restart, a missing
driver, lock timeouts, concurrent first use, and run journals and locks kept in the database.

The rules themselves (budgets, admission, spend) are tested on both back ends in
test_ledger.py. Tests that stop or restart a server use one of their own (`own_pg_server`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from costguard.errors import LedgerError
from costguard.ledger import MIGRATIONS, Ledger, PostgresLedger, open_ledger
from costguard.ledger import postgres as pg
from ledger_backends import raw
from pgserver import PgServer, free_port

MAR = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(pg_url: str) -> Iterator[PostgresLedger]:
    """A fresh PostgreSQL ledger with a `default` budget of $100 a month."""
    with open_ledger(pg_url) as opened:
        assert isinstance(opened, PostgresLedger)
        opened.set_budget(usd=Decimal("100"), at=MAR)
        yield opened


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on an unreachable server after 1.5 s instead of 30."""
    monkeypatch.setattr(pg, "RETRY_S", 1.5)


def terminate(url: str, pid: int) -> None:
    """Kill one server process (its client sees the connection drop) from another connection."""
    raw(url, "SELECT pg_terminate_backend(?)", (pid,))


def runs_in(url: str) -> list[tuple[Any, ...]]:
    """(run_id, status, estimate) of every run row, by id."""
    return raw(url, "SELECT run_id, status, estimate_usd::text FROM runs ORDER BY run_id")


# --- opening -------------------------------------------------------------------------------


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, opening a PostgreSQL ledger says how to install it (exit code 5)."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(LedgerError) as caught:
        open_ledger("postgresql://u@127.0.0.1/db")
    assert str(caught.value) == (
        'the PostgreSQL ledger needs psycopg: pip install "costguard[postgres]"'
    )
    assert caught.value.exit_code == 5


def test_the_session_is_utc_with_lock_and_idle_timeouts(ledger: PostgresLedger) -> None:
    """Connections use UTC, give up on a held lock after LOCK_TIMEOUT_S, and the server ends
    sessions left idle inside a transaction."""
    conn = ledger._connection()
    shown = {
        name: conn.execute(f"SHOW {name}").fetchone()[name]  # type: ignore[index]
        for name in ("TimeZone", "lock_timeout", "idle_in_transaction_session_timeout")
    }
    assert shown == {
        "TimeZone": "UTC",
        "lock_timeout": "30s",
        "idle_in_transaction_session_timeout": "1min",
    }
    name = conn.execute("SELECT current_setting('application_name') AS a").fetchone()
    assert name is not None
    assert name["a"].startswith("costguard ")
    assert f"pid {os.getpid()}" in name["a"]


def test_an_unreachable_server_fails_after_retrying_without_showing_the_password(
    fast_retries: None,
) -> None:
    """Nothing listening: retried for RETRY_S, then one LedgerError with the redacted URL."""
    url = f"postgresql://ana:hunter2@127.0.0.1:{free_port()}/costs"
    started = time.monotonic()
    with pytest.raises(LedgerError) as caught:
        open_ledger(url)
    assert 1.0 < time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"ledger postgresql://ana:***@127.0.0.1:{url.split(':')[3]}")
    assert "gave up after retrying for 1.5 s" in message
    assert "hunter2" not in message


def test_an_unknown_database_fails_at_once(pg_server: PgServer) -> None:
    """A lasting refusal (no such database) is not retried."""
    started = time.monotonic()
    with pytest.raises(LedgerError, match=r'cannot connect: .*database "nope" does not exist'):
        open_ledger(pg_server.url("nope"))
    assert time.monotonic() - started < 5


def test_concurrent_first_use_applies_each_migration_once(pg_url: str) -> None:
    """Eight processes opening a new database at once: one migrates, all succeed."""
    code = "import sys; from costguard.ledger import open_ledger; open_ledger(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = [r[0] for r in raw(pg_url, "SELECT name FROM _migrations ORDER BY name")]
    assert names == [fn.__name__ for fn in MIGRATIONS]


# --- admission under lost connections --------------------------------------------------------


def _hook_lock(
    monkeypatch: pytest.MonkeyPatch, after: Callable[[pg._PgTx, str], None]
) -> list[str]:
    """Call `after(tx, kind)` right after each advisory lock is granted; return the kinds."""
    seen: list[str] = []
    real = pg._PgTx.lock

    def lock(self: pg._PgTx, kind: Any, key: str) -> None:
        real(self, kind, key)
        seen.append(kind)
        after(self, kind)

    monkeypatch.setattr(pg._PgTx, "lock", lock)
    return seen


def test_connection_lost_between_lock_and_insert_leaves_no_half_reservation(
    ledger: PostgresLedger, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend is killed after the budget lock, before the insert: the transaction is
    rolled back by the server, retried on a new connection, and the run is admitted once."""
    killed: list[int] = []

    def after(tx: pg._PgTx, kind: str) -> None:
        if kind == "budget" and not killed:
            killed.append(tx.conn.info.backend_pid)
            terminate(pg_url, tx.conn.info.backend_pid)

    seen = _hook_lock(monkeypatch, after)
    admission = ledger.admit("r1", Decimal("60"), owner="t", at=MAR)
    assert admission.admitted
    assert not admission.existing
    assert seen == ["run", "budget", "run", "budget"]
    assert ledger.backend_pid() != killed[0]
    assert runs_in(pg_url) == [("r1", "open", "60")]
    assert ledger.status(at=MAR).reserved == Decimal("60")


def test_a_kill_that_holds_the_budget_lock_frees_it_for_the_others(
    ledger: PostgresLedger, pg_url: str
) -> None:
    """A client killed while holding a budget's lock does not block the next admission."""
    holder = psycopg.connect(pg_url, autocommit=True)
    holder.execute("BEGIN")
    holder.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext('default'))", (pg.NAMESPACE["budget"],)
    )
    done: list[Any] = []
    waiter = threading.Thread(
        target=lambda: done.append(ledger.admit("r1", Decimal("10"), owner="t", at=MAR))
    )
    waiter.start()
    time.sleep(0.3)
    assert not done  # queued behind the holder
    terminate(pg_url, holder.info.backend_pid)
    waiter.join(timeout=30)
    assert done
    assert done[0].admitted
    holder.close()


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
def test_connection_lost_during_commit_is_retried_without_reserving_twice(
    ledger: PostgresLedger, pg_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """COMMIT's answer is lost: the outcome is unknown, so the admission is run again, finds
    its own run (if the commit went through) and returns it as this call's admission."""
    calls: list[int] = []
    real = PostgresLedger._commit

    def commit(self: PostgresLedger, conn: psycopg.Connection[Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            if committed:
                real(self, conn)
            terminate(pg_url, conn.info.backend_pid)
            conn.execute("SELECT 1")  # the connection is gone: raises
        real(self, conn)

    monkeypatch.setattr(PostgresLedger, "_commit", commit)
    admission = ledger.admit("r1", Decimal("60"), owner="t", at=MAR)
    assert admission.admitted
    assert not admission.existing
    assert admission.reason.startswith("fits: needs $60.00 of the $100.00 budget")
    assert admission.remaining == Decimal("100")
    assert runs_in(pg_url) == [("r1", "open", "60")]
    assert ledger.status(at=MAR).remaining == Decimal("40")
    again = ledger.admit("r1", Decimal("60"), owner="t", at=MAR)
    assert again.existing


def test_spend_lost_during_commit_counts_once(
    ledger: PostgresLedger, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record_spend whose COMMIT answer is lost after it committed reports the part as new,
    once."""
    ledger.admit("r1", Decimal("60"), owner="t", at=MAR)
    real = PostgresLedger._commit
    lost: list[int] = []

    def commit(self: PostgresLedger, conn: psycopg.Connection[Any]) -> None:
        real(self, conn)
        if not lost:
            lost.append(1)
            terminate(pg_url, conn.info.backend_pid)
            conn.execute("SELECT 1")

    monkeypatch.setattr(PostgresLedger, "_commit", commit)
    assert ledger.record_spend("r1", "p1", Decimal("7"), at=MAR) is True
    assert ledger.record_spend("r1", "p1", Decimal("7"), at=MAR) is False
    run = ledger.run("r1")
    assert run is not None
    assert (run.spent, run.parts) == (Decimal("7"), 1)


def test_a_budget_lock_held_too_long_fails_clearly_and_writes_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LOCK_TIMEOUT_S waiting for the budget, admit raises LedgerError (no retry)."""
    monkeypatch.setattr(pg, "LOCK_TIMEOUT_S", 0.2)
    with open_ledger(pg_url) as ledger:
        ledger.set_budget(usd=Decimal("100"), at=MAR)
        with psycopg.connect(pg_url, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext('default'))", (pg.NAMESPACE["budget"],)
            )
            with pytest.raises(LedgerError) as caught:
                ledger.admit("r1", Decimal("1"), owner="t", at=MAR)
            holder.execute("ROLLBACK")
        assert "another process kept it busy (waited up to 0.2 s)" in str(caught.value)
        assert str(caught.value).startswith(f"ledger {pg_url}: ")
        assert runs_in(pg_url) == []
        assert ledger.admit("r1", Decimal("1"), owner="t", at=MAR).admitted


def test_other_budgets_are_not_held_up_by_a_locked_one(
    ledger: PostgresLedger, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admission lock is per budget: a held `default` does not delay budget `art`."""
    ledger.set_budget("art", usd=Decimal("5"), at=MAR)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext('default'))", (pg.NAMESPACE["budget"],)
        )
        started = time.monotonic()
        assert ledger.admit("a1", Decimal("5"), budget="art", owner="t", at=MAR).admitted
        assert time.monotonic() - started < 5
        holder.execute("ROLLBACK")


# --- restarts ------------------------------------------------------------------------------


def test_a_restart_between_calls_is_invisible(own_pg_server: PgServer) -> None:
    """After the server restarts, the next call reconnects and goes on."""
    url = own_pg_server.create_database()
    with open_ledger(url) as ledger:
        ledger.set_budget(usd=Decimal("100"), at=MAR)
        assert ledger.admit("r1", Decimal("30"), owner="t", at=MAR).admitted
        own_pg_server.restart("fast")
        assert ledger.admit("r2", Decimal("30"), owner="t", at=MAR).admitted
        assert ledger.status(at=MAR).remaining == Decimal("40")


def test_a_server_down_past_the_retry_window_is_refused_cleanly(
    own_pg_server: PgServer, fast_retries: None
) -> None:
    """Down for longer than RETRY_S: LedgerError, nothing written; usable once it is back."""
    url = own_pg_server.create_database()
    with open_ledger(url) as ledger:
        ledger.set_budget(usd=Decimal("100"), at=MAR)
        own_pg_server.stop("immediate")
        with pytest.raises(LedgerError, match=r"gave up after retrying for 1\.5 s"):
            ledger.admit("r1", Decimal("30"), owner="t", at=MAR)
        own_pg_server.start()
        assert runs_in(url) == []
        assert ledger.admit("r1", Decimal("30"), owner="t", at=MAR).admitted


CHILD = """
import json, sys, time
from datetime import datetime
from decimal import Decimal
from costguard.errors import LedgerError
from costguard.ledger import open_ledger

url, name, amount, at = sys.argv[1:5]
ledger = open_ledger(url)
print("ready", flush=True)
sys.stdin.readline()
for i in range(20):
    t0 = time.time()
    try:
        adm = ledger.admit(f"{name}-{i}", Decimal(amount), owner=name,
                           at=datetime.fromisoformat(at))
        result = "admitted" if adm.admitted else "refused"
    except LedgerError as exc:
        result = "error: " + str(exc)
    print(json.dumps({"run": f"{name}-{i}", "result": result, "t0": t0, "t1": time.time()}),
          flush=True)
    time.sleep(0.02)
ledger.close()
"""
"""A process that admits 20 runs one after another, reporting each outcome."""


def test_a_restart_in_the_middle_of_a_race_never_passes_the_budget(
    own_pg_server: PgServer,
) -> None:
    """Eight processes admit runs while the server restarts: admissions are retried (or fail
    cleanly), exactly as many as fit are admitted, and no run is half-written."""
    url = own_pg_server.create_database()
    amount, fits = Decimal("1.25"), 37
    with open_ledger(url) as ledger:
        ledger.set_budget(usd=amount * fits, at=MAR)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, f"p{i}", str(amount), MAR.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n", proc.communicate(timeout=60)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(0.15)
        down = time.time()
        own_pg_server.restart("fast", pause=0.3)
        up = time.time()
        outcomes: list[dict[str, str]] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outcomes.extend(json.loads(line) for line in out.splitlines())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    assert len(outcomes) == 160
    errors = [o for o in outcomes if o["result"].startswith("error")]
    assert errors == []
    # The restart really came in the middle: admissions before it, after it, and during it
    # (asked while the server was down, answered once it was back: retried for 0.3 s or more).
    assert any(o["t1"] < down for o in outcomes)
    assert any(o["t0"] > up for o in outcomes)
    assert any(down <= o["t0"] < up and o["t1"] - o["t0"] > 0.25 for o in outcomes)
    admitted = {o["run"] for o in outcomes if o["result"] == "admitted"}
    assert len(admitted) == fits
    rows = runs_in(url)
    assert {r[0] for r in rows if r[1] == "open"} == admitted
    assert {r[1] for r in rows} == {"open", "refused"}
    assert len(rows) == 160
    with open_ledger(url) as ledger:
        status = ledger.status(at=MAR)
        assert (status.reserved, status.remaining) == (amount * fits, Decimal("0.00"))


# --- run journals and locks ----------------------------------------------------------------


def test_journals_round_trip_with_versions(ledger: PostgresLedger, pg_url: str) -> None:
    """A journal is stored as JSONB; every write bumps its version."""
    store = ledger.journals
    assert store.read_journal("run-1") is None
    assert store.lock_run("run-1") is None
    store.write_journal("run-1", {"run_id": "run-1", "status": "planned", "n": 1})
    store.write_journal("run-1", {"run_id": "run-1", "status": "admitted", "n": 2})
    assert store.read_journal("run-1") == {"run_id": "run-1", "status": "admitted", "n": 2}
    stored = raw(pg_url, "SELECT version, jsonb_typeof(data), updated_by FROM journals")
    assert stored[0][:2] == (2, "object")
    assert stored[0][2].startswith("costguard ")
    assert [j["run_id"] for j in store.all_journals()] == ["run-1"]
    store.delete_journal("run-1")
    assert store.read_journal("run-1") is None
    store.unlock_run("run-1")


def test_a_run_lock_is_exclusive_and_names_its_holder(pg_url: str) -> None:
    """A second process cannot lock a run another holds; it is told who holds it."""
    with open_ledger(pg_url) as first, open_ledger(pg_url) as second:
        assert first.journals is not None
        assert second.journals is not None
        assert first.journals.lock_run("run-1") is None
        holder = second.journals.lock_run("run-1")
        assert holder is not None
        assert holder.startswith("costguard ")
        assert f"pid {os.getpid()}" in holder
        assert "at 127.0.0.1" in holder
        assert second.journals.lock_run("run-2") is None
        first.journals.unlock_run("run-1")
        assert second.journals.lock_run("run-1") is None


def test_a_run_lock_dies_with_its_process(pg_url: str) -> None:
    """A process killed with -9 while driving a run leaves the run free for the next one."""
    code = (
        "import sys, time; from costguard.ledger import open_ledger; "
        "l = open_ledger(sys.argv[1]); assert l.journals.lock_run('run-1') is None; "
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        with open_ledger(pg_url) as ledger:
            assert ledger.journals is not None
            assert ledger.journals.lock_run("run-1") is not None
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 10
            while ledger.journals.lock_run("run-1") is not None:
                assert time.monotonic() < deadline, "the lock outlived its process"
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_a_journal_changed_behind_a_writers_back_is_not_overwritten(pg_url: str) -> None:
    """Writes check the version last seen: a stale writer is refused, not silently merged."""
    with open_ledger(pg_url) as a, open_ledger(pg_url) as b:
        assert a.journals is not None
        assert b.journals is not None
        a.journals.write_journal("run-1", {"n": 1})
        assert b.journals.read_journal("run-1") == {"n": 1}
        a.journals.write_journal("run-1", {"n": 2})
        with pytest.raises(LedgerError, match="changed by another process"):
            b.journals.write_journal("run-1", {"n": 3})
        assert a.journals.read_journal("run-1") == {"n": 2}


def test_a_lost_lock_connection_takes_the_lock_again_before_writing(
    ledger: PostgresLedger, pg_url: str
) -> None:
    """If the run-lock connection drops, the lock is taken again before the next write; if
    another process took the run meanwhile, the write is refused."""
    store = ledger.journals
    assert store.lock_run("run-1") is None
    store.write_journal("run-1", {"n": 1})
    assert store._conn is not None
    terminate(pg_url, store._conn.info.backend_pid)
    store.write_journal("run-1", {"n": 2})
    assert store.read_journal("run-1") == {"n": 2}
    with open_ledger(pg_url) as other:
        assert other.journals is not None
        assert other.journals.lock_run("run-1") is not None  # still ours
        assert store._conn is not None
        terminate(pg_url, store._conn.info.backend_pid)
        time.sleep(0.1)
        assert other.journals.lock_run("run-1") is None  # taken while ours was lost
        with pytest.raises(LedgerError, match="lost the lock on run run-1"):
            store.write_journal("run-1", {"n": 3})
    assert raw(pg_url, "SELECT data FROM journals")[0][0] == {"n": 2}


def test_the_sqlite_ledger_keeps_journals_beside_the_runs(tmp_path: Any) -> None:
    """A local ledger offers no journal store: journals stay in the run folders."""
    with open_ledger(tmp_path / "l.sqlite3") as local:
        assert isinstance(local, Ledger)
        assert local.journals is None
