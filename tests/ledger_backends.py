"""Fixtures that run the ledger tests on both back ends: SQLite files and a real PostgreSQL.

Loaded by `conftest.py` (`pytest_plugins`). One PostgreSQL server is started per test session
(`pgserver.PgServer`: initdb + pg_ctl in a temporary folder, as an unprivileged user when the
tests run as root) and every test that needs one gets a fresh database, dropped afterwards.

Where PostgreSQL cannot be started the PostgreSQL cases are skipped with the reason, except
under CI (`CI=true`), where that is a failure: CI must test both back ends.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pgserver import PgServer, PgUnavailableError

BACKENDS = ["sqlite", "postgresql"]


def in_ci() -> bool:
    """Whether these tests run under CI (`CI=true`), where nothing may be skipped for want of
    PostgreSQL."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip (loudly) or, under CI, fail: PostgreSQL could not be started."""
    message = f"PostgreSQL unavailable, PostgreSQL ledger tests not run: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def start_server() -> PgServer:
    """A started server, or skip/fail saying why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable('psycopg is not installed (pip install -e ".[dev]")')
    try:
        return PgServer().start()
    except (PgUnavailableError, OSError) as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() always raises


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (do not restart it: use `own_pg_server`)."""
    server = start_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own, which it may stop and restart."""
    server = start_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database on the session's server, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh ledger is: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    url: str = request.getfixturevalue("pg_url")
    return url


def is_pg(location: str | Path) -> bool:
    """Whether `location` is a PostgreSQL URL."""
    return str(location).startswith(("postgresql://", "postgres://"))


def raw(location: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the ledger's database behind its back (`?` placeholders)."""
    if is_pg(location):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            query = sql.replace("?", "%s") if params else sql
            cursor = conn.execute(query, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(location, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def tables(location: str | Path) -> dict[str, list[str]]:
    """Every table of the ledger's database with its columns, in order."""
    if is_pg(location):
        rows = raw(
            location,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
        )
        found: dict[str, list[str]] = {}
        for table, column in rows:
            found.setdefault(table, []).append(column)
        return dict(sorted(found.items()))
    names = [
        r[0]
        for r in raw(location, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    return {n: [c[1] for c in raw(location, f"PRAGMA table_info({n})")] for n in names}


def indexes(location: str | Path) -> set[str]:
    """The names of the explicit (not primary-key) indexes."""
    if is_pg(location):
        rows = raw(
            location,
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT LIKE '%_pkey'",
        )
        return {r[0] for r in rows}
    rows = raw(location, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {r[0] for r in rows}
