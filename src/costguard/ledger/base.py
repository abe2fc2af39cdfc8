"""The base of `Ledger`: what a back end implements, and the checks every call makes.

A back end (`SqliteLedger`, `PostgresLedger`) supplies transactions (`_write`, `_read`),
`migrate`, `applied_migrations` and `close`; the rules above it (`ledger.interface`,
`ledger.history`) check their arguments with the helpers here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self, TypeVar

from costguard.errors import LedgerError
from costguard.ledger.migrations import Dialect
from costguard.ledger.periods import PERIODS, Period
from costguard.ledger.sql import Tx, _json_default
from costguard.money import MAX_USD, usd_exact

if TYPE_CHECKING:
    from costguard.ledger.journals import JournalStore

T = TypeVar("T")


class LedgerBase(ABC):
    """The part of `Ledger` a back end implements, and the argument checks its rules use.

    Back ends subclass `Ledger`, not this class.
    """

    backend: Dialect
    location: str
    """Where the ledger is, for messages: the file, or the URL without its password."""
    _identity: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the connection(s)."""

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply the migrations this ledger lacks, oldest first; return their names.

        Raises:
            LedgerError: the ledger records a migration this costguard does not know.
        """

    @abstractmethod
    def applied_migrations(self) -> list[str]:
        """The names of the migrations the ledger records, oldest first."""

    @property
    def journals(self) -> JournalStore | None:
        """Where run journals live when the ledger is shared; None: beside the run's files."""
        return None

    def __enter__(self) -> Self:
        """Use as a context manager that closes the ledger."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the ledger."""
        self.close()

    def __repr__(self) -> str:
        """`SqliteLedger('/path/ledger.sqlite3')`."""
        return f"{type(self).__name__}({self.location!r})"

    # -- transactions (back ends) -----------------------------------------------------------

    @abstractmethod
    def _write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one write transaction and commit; roll back if it raises.

        A back end may run `work` again (after a serialization failure or a lost connection),
        so `work` must only touch the database and its own locals.
        """

    @abstractmethod
    def _read(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one read transaction: one consistent snapshot for several queries."""

    # -- identity ---------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The ledger's identity: a random id written once, when the ledger was created.

        A run's journal records the identity of the ledger that admitted it, so a run is never
        settled in, or collected against, another ledger (`run.runner`).
        """
        if self._identity is None:
            self._identity = self._read(_read_identity)
        return self._identity

    def _remember_identity(self) -> None:
        """Note the identity now (after migrating): later writes check it has not changed."""
        self._identity = self._read(_read_identity)

    def _check_identity(self, db: Tx) -> None:
        """Refuse to write to a database that is no longer the ledger this object opened."""
        if self._identity is None:
            return
        now = _read_identity(db)
        if now != self._identity:
            msg = (
                f"is not the ledger this process opened (identity {self._identity}, now {now}): "
                "it was replaced or recreated while in use; nothing was recorded"
            )
            raise self._fail(msg)

    # -- plumbing ---------------------------------------------------------------------------

    def _fail(self, message: str) -> LedgerError:
        return LedgerError(f"ledger {self.location}: {message}")

    def _utc(self, at: datetime, what: str = "at") -> datetime:
        if not isinstance(at, datetime) or at.utcoffset() is None:
            shown = at.isoformat() if isinstance(at, datetime) else repr(at)
            msg = f"{what} must be a timezone-aware datetime, got {shown}"
            raise self._fail(msg)
        return at.astimezone(UTC)

    def _money(self, value: Decimal | int, what: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            msg = f"{what} must be a Decimal, got {type(value).__name__} {value!r}"
            raise self._fail(msg)
        amount = Decimal(value)
        if not amount.is_finite() or amount < 0:
            msg = f"{what} must be a finite amount >= 0, got {value}"
            raise self._fail(msg)
        if amount > MAX_USD:
            msg = f"{what} must be at most {usd_exact(MAX_USD)}, got {value}"
            raise self._fail(msg)
        return amount

    def _text(self, value: str, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            msg = f"{what} must be a non-empty string, got {value!r}"
            raise self._fail(msg)
        if "\x00" in value:
            raise self._fail(f"{what} must not contain NUL characters, got {value!r}")
        return value

    def _meta(self, meta: Mapping[str, Any] | None) -> str:
        try:
            text = json.dumps(
                dict(meta or {}), sort_keys=True, allow_nan=False, default=_json_default
            )
        except (TypeError, ValueError) as exc:
            msg = f"meta must be JSON (str, number, bool, None, list, dict, Decimal, Path): {exc}"
            raise self._fail(msg) from exc
        if "\\u0000" in text:
            raise self._fail("meta must not contain NUL characters")
        return text

    def _period(self, period: str) -> Period:
        if period not in PERIODS:
            msg = f"unknown period {period!r}; use one of {', '.join(PERIODS)}"
            raise self._fail(msg)
        return period


def _read_identity(db: Tx) -> str:
    row = db.one("SELECT id FROM ledger_identity")
    return "none" if row is None else str(row["id"])
