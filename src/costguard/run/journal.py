"""A run's journal and outputs on disk, written so a kill -9 at any point loses nothing.

- `journal.json`: the run's plan and every part's progress. Rewritten atomically (temp file,
  fsync, rename) *before* each external step, so a restarted run knows what it may have done.
- `<out>/manifest.jsonl`: one line per collected request, appended and flushed per line. A line
  cut short by a crash is dropped when the manifest is reopened.
- images `<out>/<key>.<ext>`: written to a temp name and renamed; an existing image is never
  rewritten.
- a lock file, so two processes never drive the same run at once.

When the ledger is shared (PostgreSQL), `RunDir` is given the ledger's `JournalStore`: the
journal is then a row in the ledger and the lock is held by the database, so the run can be
collected from another machine; the folder still holds the run's work files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from costguard.errors import CostguardError

if TYPE_CHECKING:
    from costguard.ledger.journals import JournalStore

FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(r"-[0-9a-f]{8}$")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class RunBusyError(CostguardError):
    """Another process is driving this run."""

    exit_code = 2


class JournalError(CostguardError):
    """A journal that cannot be read or does not match the command."""

    exit_code = 2


@dataclass
class Part:
    """One provider job (batch mode) or the whole queue (sync mode)."""

    id: str
    provider: str
    model: str
    endpoint: str
    requests: int
    tag: str
    state: str = "planned"
    """planned -> submitting -> submitted -> collected (or skipped)."""
    job_id: str | None = None
    input_file_id: str | None = None
    job_state: str | None = None
    """The provider's last reported state (raw name)."""
    job_error: str | None = None
    cost_usd: str | None = None
    """Actual cost recorded in the ledger when the part was collected."""


@dataclass
class Journal:
    """Everything a run needs to continue after a crash."""

    run_id: str
    created: str
    queue: str
    queue_sha256: str
    queue_format: str
    mode: str
    as_of: str
    out: str
    options: dict[str, Any]
    estimate: dict[str, Any]
    rate_cards: list[str]
    simulate: str | None = None
    """The scenario when run against the simulator."""
    status: str = "planned"
    """planned -> admitted -> submitted -> collected; or refused, cancelled."""
    groups: dict[str, list[int]] = field(default_factory=dict)
    """Per (provider|model|endpoint) group, the request count of each of its parts in order."""
    parts: list[Part] = field(default_factory=list)
    format: int = FORMAT

    def part(self, part_id: str) -> Part:
        for part in self.parts:
            if part.id == part_id:
                return part
        msg = f"run {self.run_id} has no part {part_id!r}"
        raise JournalError(msg)


def journal_from(raw: dict[str, Any]) -> Journal:
    """A journal from its JSON form (as `save` writes it)."""
    fields = dict(raw)
    parts = [Part(**p) for p in fields.pop("parts", [])]
    return Journal(**fields, parts=parts)


class RunDir:
    """A run's folder: journal, lock, per-part work files, simulator state.

    With a `store` (a shared ledger's), the journal and the lock live there instead.
    """

    def __init__(self, path: Path, store: JournalStore | None = None) -> None:
        self.path = path
        self.journal_path = path / "journal.json"
        self.store = store
        self._lock: TextIO | None = None

    @property
    def exists(self) -> bool:
        if self.store is not None:
            return self.store.read_journal(self.path.name) is not None
        return self.journal_path.is_file()

    def workdir(self, part_id: str) -> Path:
        return self.path / "parts" / part_id

    @property
    def simulator_state(self) -> Path:
        return self.path / "simulator.json"

    def lock(self) -> None:
        """Take the run's lock, or fail at once naming the process that holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.store is not None:
            holder = self.store.lock_run(self.path.name)
            if holder is not None:
                msg = f"run {self.path.name} is being driven by {holder}; wait for it or stop it"
                raise RunBusyError(msg)
            return
        handle = (self.path / "lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            msg = f"run {self.path.name} is being driven by pid {holder}; wait for it or stop it"
            raise RunBusyError(msg) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self.store is not None:
            self.store.unlock_run(self.path.name)
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        """Remove a run folder that never got a journal (bad input, refused): lock, then folder.

        Call it while holding the lock; the folder is left alone if anything else is in it.
        """
        (self.path / "lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def forget(self) -> None:
        """Remove the journal and the lock file of a run refused before it sent anything."""
        if self.store is not None:
            self.store.delete_journal(self.path.name)
        for leftover in (self.journal_path, self.path / "lock"):
            leftover.unlink(missing_ok=True)

    def load(self) -> Journal:
        if self.store is not None:
            raw = self.store.read_journal(self.path.name)
            if raw is None:
                msg = f"no journal of run {self.path.name} in ledger {self.store.location}"
                raise JournalError(msg)
            try:
                return journal_from(raw)
            except (ValueError, TypeError) as exc:
                msg = f"ledger {self.store.location}: unreadable journal of {self.path.name}: {exc}"
                raise JournalError(msg) from exc
        try:
            return journal_from(json.loads(self.journal_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            msg = f"{self.journal_path}: unreadable run journal: {exc}"
            raise JournalError(msg) from exc

    def save(self, journal: Journal) -> None:
        """Write the journal atomically and durably."""
        if self.store is not None:
            self.store.write_journal(self.path.name, asdict(journal))
            return
        write_atomic(self.journal_path, json.dumps(asdict(journal), indent=1).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def safe_name(key: str) -> str:
    """A file name for `key`: the key itself when safe, else a cleaned form plus a hash.

    Two different keys never get the same name: any key that needs cleaning, could clash on a
    case-insensitive file system, or already ends like a hashed name (`-` and 8 hex digits)
    carries 8 hex digits of its own sha256.
    """
    cleaned = _SAFE.sub("_", key)[:100].strip(".") or "key"
    if cleaned == key and key.lower() == key and not _HASHED.search(key):
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}"


class Outputs:
    """The output folder: images and the manifest."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.manifest_path = out / "manifest.jsonl"
        self._manifest: TextIO | None = None

    def open(self, owner: str) -> set[str]:
        """Create the folder, drop a torn last manifest line; return the keys collected.

        `owner` identifies the run (id and creation time); a folder holding another run's
        results is refused rather than mixed with this one.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.check(owner):
            write_atomic(self.out / ".costguard-run", owner.encode() + b"\n")
        collected: set[str] = set()
        good = 0
        if self.manifest_path.exists():
            with self.manifest_path.open("rb") as handle:
                for raw in handle:
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        break
                    if not raw.endswith(b"\n"):
                        break
                    collected.add(line["key"])
                    good += len(raw)
            with self.manifest_path.open("rb+") as handle:
                handle.truncate(good)
        self._manifest = self.manifest_path.open("a", encoding="utf-8")
        return collected

    def check(self, owner: str) -> bool:
        """Refuse a folder holding another run's results; True when it is already `owner`'s.

        The runner calls this before a new run reserves anything, so a taken `--out` costs
        nothing.
        """
        marker = self.out / ".costguard-run"
        if marker.exists():
            holder = marker.read_text(encoding="utf-8").strip()
            if holder != owner:
                msg = (
                    f"{self.out} holds the results of another run ({holder}); choose another --out"
                )
                raise JournalError(msg)
            return True
        if self.manifest_path.exists():
            msg = f"{self.out} already has a manifest.jsonl from elsewhere; choose another --out"
            raise JournalError(msg)
        return False

    def close(self) -> None:
        if self._manifest is not None:
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
            self._manifest.close()
            self._manifest = None

    def write_images(self, key: str, n: int, images: list[tuple[bytes, str]]) -> list[str]:
        """Save a request's images atomically; never rewrite one that exists."""
        names = []
        stem = safe_name(key)
        for i, (data, mime) in enumerate(images, start=1):
            ext = EXTENSIONS.get(mime, "bin")
            name = f"{stem}.{ext}" if n == 1 and len(images) == 1 else f"{stem}-{i}.{ext}"
            target = self.out / name
            if not target.exists():
                write_atomic(target, data)
            names.append(name)
        return names

    def record(self, line: dict[str, Any]) -> None:
        """Append one manifest line and flush it (a kill -9 keeps every flushed line)."""
        assert self._manifest is not None
        self._manifest.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._manifest.flush()

    def part_cost(self, part_id: str) -> Decimal:
        """Sum of `cost_usd` over a part's manifest lines (however many processes wrote them)."""
        return sum(
            (Decimal(line["cost_usd"]) for line in self.lines() if line["part"] == part_id),
            Decimal(0),
        )

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every manifest line."""
        if not self.manifest_path.exists():
            return
        with self.manifest_path.open("rb") as handle:
            for raw in handle:
                if raw.endswith(b"\n"):
                    yield json.loads(raw)
