"""The ledger: budgets, each run's reservation and its actual spend, shared across processes.

Two back ends behind one interface (`Ledger`): a SQLite file on this machine (the default,
`SqliteLedger`) or a PostgreSQL database shared by a team's runners and workstations
(`PostgresLedger`, with `open_ledger("postgresql://...")` and the `postgres` extra). Both hold
the same tables, follow the same rules and pass the same tests:

- **budgets**: a limit in USD per period (`day`, `week`, `month` or `none`; see below);
- **runs**: one row per run id, with the maximum cost admitted for it (its *estimate*, which is
  what it reserves while open), who started it (its *owner*: a user or a CI job), its status
  and free-form `meta` (queue, mode, rate cards);
- **spend**: the actual cost of each finished part of a run (a provider job or a request batch),
  one row per `(run_id, part_id)`, stamped with when it was recorded;
- **journals**: on PostgreSQL, each run's journal, so another machine can collect the run;
- **usage_samples**: what each collected request of a real run reported using (tokens, with
  its model, size, quality and priced quantities), written with its part's spend; read back
  as a calibration (`Ledger.calibration`, `ledger.samples`).
- **closed_spend_days**: what closed real runs spent, per budget and UTC day (kept in the
  transactions that close a run or record a closed run's late spend, under the budget's lock):
  admission reads it and the open runs, so its cost never grows with the closed runs in the
  window (one run per gateway call). `status` still sums the spend rows (by owner).

**What a budget has left.** For a budget and the period window containing `at`::

    spent     = sum of spend recorded in the window by runs charged to the budget
    reserved  = sum over the budget's open runs of max(estimate - all spend of the run, 0)
    remaining = limit - (reserved + spent)

So while a run is open it counts `max(estimate, spent so far)`: its reservation until its spend
passes it, then its spend. Once settled or released it counts its recorded spend only, and what
it reserved beyond that is free again. Spend counts in the window in which it was *recorded*
(that is when the provider bills it); an open run's unspent reservation counts in every window
that ends after the run was admitted, because it may still be spent there. `remaining` goes
negative when actual spend passes the limit; nothing is admitted then.

**Periods** are UTC: `day` is the calendar day, `week` the ISO week from Monday 00:00, `month`
the calendar month, `none` all time. Windows are half-open: `[start, end)`.

**Admission** (`Ledger.admit`) is one write transaction: lock, read what the budget has left
(in one statement: the open runs with their spend, and `closed_spend_days` of the window),
check, insert the run. On SQLite the transaction is `BEGIN IMMEDIATE`, so
all writers are serialised; on PostgreSQL it takes advisory locks on the run id and the budget
name, so admissions to one budget are serialised across machines (see `ledger.postgres`). Two
processes that together would pass the budget never both get in. Admission is idempotent per
run id: admitting a run that is already open returns its admission again and reserves nothing
more. `record_spend` is idempotent per `(run_id, part_id)`; `settle` and `release` close a run
once and then do nothing.

**Storage decisions.** On SQLite money is stored as exact decimal TEXT (`"12.345"`: every
digit, no exponent), never REAL, and summed in Python as `Decimal`: SQLite's `SUM()` over TEXT
goes through floating point, and integer micro-dollars would round per-token costs (a
$0.075/1M-token rate is 0.075 micro-dollars per token). On PostgreSQL the same columns are
`NUMERIC` (exact, any scale), read back as `Decimal`. Timestamps are fixed-width ISO-8601 UTC
TEXT on SQLite (`2026-03-01T00:00:00.000000+00:00`, so text order is time order) and
`TIMESTAMPTZ` on PostgreSQL; `meta` is TEXT holding JSON, or `JSONB`; text columns compare
byte by byte on both (`COLLATE "C"`). The SQL is written once in the subset both accept: no
`INSERT OR REPLACE`, no rowids, no date functions; upserts use `INSERT ... ON CONFLICT`.

**Migrations** follow llm's pattern: `MIGRATIONS` is an ordered list of functions registered
with `@migration`, each writing its DDL once with `{money}`-style column types that each back
end fills in; `_migrations` records the names applied. Opening a ledger applies the missing
ones together with their records in one write transaction (DDL is transactional in both
databases), so an upgrade is all or nothing and two processes never both apply one. A ledger
that records a migration this version does not know was written by a newer costguard: it is
refused, never recreated. `costguard ledger migrate` applies them explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from costguard.errors import LedgerError
from costguard.ledger.interface import Ledger
from costguard.ledger.migrations import MIGRATIONS, migration
from costguard.ledger.periods import PERIODS, Period, period_window
from costguard.ledger.postgres import MISSING_DRIVER, PostgresLedger, is_url, redact
from costguard.ledger.records import (
    Activity,
    Admission,
    Budget,
    BudgetStatus,
    Charge,
    OwnerUsage,
    PeriodSpend,
    Run,
    SpendEntry,
)
from costguard.ledger.sqlite import BUSY_TIMEOUT_S, SqliteLedger
from costguard.resources import home_dir

__all__ = [
    "BUSY_TIMEOUT_S",
    "LEDGER_FILENAME",
    "MIGRATIONS",
    "MISSING_DRIVER",
    "PERIODS",
    "Activity",
    "Admission",
    "Budget",
    "BudgetStatus",
    "Charge",
    "Ledger",
    "OwnerUsage",
    "Period",
    "PeriodSpend",
    "PostgresLedger",
    "Run",
    "SpendEntry",
    "SqliteLedger",
    "default_path",
    "describe_location",
    "is_url",
    "migration",
    "open_ledger",
    "period_window",
    "resolve_location",
]

LEDGER_FILENAME = "ledger.sqlite3"


def default_path(home: str | Path | None = None) -> Path:
    """`<home>/ledger.sqlite3`; home defaults to `COSTGUARD_HOME`, then the user data dir."""
    base = Path(home).expanduser() if home not in (None, "") else home_dir()
    return base / LEDGER_FILENAME


def describe_location(location: str | Path | None) -> str:
    """How a ledger location is shown: the URL without its password, or the file."""
    if is_url(location):
        return redact(str(location).strip())
    if isinstance(location, str) and _looks_like_url(location):
        return _without_secrets(location.strip())
    return str(default_path() if location in (None, "") else Path(str(location)).expanduser())


def resolve_location(location: str | Path | None) -> str | Path:
    """Where `location` says the ledger is: a PostgreSQL URL, or the SQLite file's path.

    A location is read strictly, so that a typo never becomes a new, empty ledger that caps
    nothing: anything that looks like a URL (a `scheme:` prefix or a `//`) must be a
    `postgresql://` (or `postgres://`) URL with a host, and a relative file path must name an
    existing ledger (a new one is created only at an absolute path, or the default one).

    Raises:
        LedgerError: the location is neither.
    """
    if location is None or (isinstance(location, str) and not location.strip()):
        return default_path()
    text = str(location).strip()
    if is_url(text):
        if not (urlsplit(text).hostname or "host=" in urlsplit(text).query):
            msg = (
                f"ledger {_without_secrets(text)}: a PostgreSQL URL needs a host, like {_URL_HINT}"
            )
            raise LedgerError(msg)
        return text
    if isinstance(location, str) and _looks_like_url(text):
        msg = (
            f"ledger {_without_secrets(text)}: not a PostgreSQL URL; give one like {_URL_HINT}, "
            "or the path of a SQLite ledger file"
        )
        raise LedgerError(msg)
    path = Path(text).expanduser()
    if not path.is_absolute() and not path.exists():
        msg = (
            f"ledger {text}: no such ledger file in {Path.cwd()}; a new ledger is created only "
            f"at an absolute path (e.g. {Path.cwd() / path})"
        )
        raise LedgerError(msg)
    return path


def open_ledger(location: str | Path | None = None, *, migrate: bool = True) -> Ledger:
    """Open and migrate the ledger at `location` (see `resolve_location`), creating a new file.

    Args:
        location: a `postgresql://` (or `postgres://`) URL for a shared ledger; else the
            SQLite file; None or "" means `default_path()`.
        migrate: apply missing migrations now (False: leave that to `Ledger.migrate()`).

    Raises:
        LedgerError: the location is no valid URL or names no ledger (`resolve_location`); the
            folder cannot be created, the file is no SQLite database, it stays locked for
            `BUSY_TIMEOUT_S`; the PostgreSQL driver is missing or the server cannot be
            reached; or the ledger was written by a newer costguard.
    """
    where = resolve_location(location)
    if isinstance(where, str):
        from costguard.ledger.postgres import open_postgres

        return open_postgres(where, migrate=migrate)
    from costguard.ledger.sqlite import open_sqlite

    return open_sqlite(where, migrate=migrate)


_URL_HINT = "postgresql://user:password@host:5432/costguard"
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|//")
_PASSWORD = re.compile(r"(?<=:)[^:@/]*(?=@)")


def _looks_like_url(text: str) -> bool:
    """A `scheme:` prefix or a `//` anywhere: meant as a URL, not a file name."""
    return bool(_URL_LIKE.search(text.strip()))


def _without_secrets(text: str) -> str:
    """A URL-like location for messages: no password, no query (it may hold one too)."""
    return _PASSWORD.sub("***", text.split("?", 1)[0])
