"""The output folder: images saved by key and `manifest.jsonl`, written so a kill -9 loses nothing.

- `<out>/manifest.jsonl`: one line per collected request, appended and flushed per line. A line
  cut short by a crash is dropped when the manifest is reopened.
- images `<out>/<key>.<ext>`: written to a temp name and renamed; an existing image is never
  rewritten.
- `<out>/.costguard-run`: which run owns the folder, so two runs never mix their results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from costguard.errors import OutputError, UsageError
from costguard.execution.files import write_atomic
from costguard.execution.journal import JournalError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(r"-[0-9a-f]{8}$")
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
"""Names Windows reserves in any case and with any extension (`aux`, `con.png`, `LPT1.x`)."""
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def safe_name(key: str) -> str:
    """A file name for `key`: the key itself when safe, else a cleaned form plus a hash.

    Two different keys never get the same name: any key that needs cleaning, could clash on a
    case-insensitive file system, is a name Windows reserves (`aux`, `con.png`), or already ends
    like a hashed name (`-` and 8 hex digits) carries 8 hex digits of its own sha256.
    """
    cleaned = _SAFE.sub("_", key)[:100].strip(".") or "key"
    plain = key.lower() == key and not _HASHED.search(key) and not _RESERVED.fullmatch(key)
    if _RESERVED.fullmatch(cleaned):  # `con.png-<hash>.png` is still CON to Windows
        cleaned = cleaned.replace(".", "_", 1)
    if cleaned == key and plain:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}"


class Outputs:
    """The output folder: images and the manifest."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.manifest_path = out / "manifest.jsonl"
        self._manifest: TextIO | None = None
        self.per_part: dict[str, int] = {}
        """Manifest lines per part, as found by `open`."""
        self._costs: dict[str, Decimal] = {}
        """`cost_usd` summed per part: the lines `open` found plus those recorded since."""
        self._tallies: dict[str, tuple[int, int]] = {}
        """(lines, lines with status ok) per part, counted like `_costs` (for progress)."""

    def open(self, owner: str) -> None:
        """Create the folder, drop a torn last manifest line, count each part's lines.

        `owner` identifies the run (id and creation time); a folder holding another run's
        results is refused rather than mixed with this one. Only the last line may be torn
        (a write cut short by a crash: it is dropped, and its request collected again); a
        damaged line before it is refused, naming it, rather than silently dropping every
        recorded result after it.
        """
        with self._writing("the output folder"):
            self.out.mkdir(parents=True, exist_ok=True)
            if not self.check(owner):
                write_atomic(self.out / ".costguard-run", owner.encode() + b"\n")
        self.per_part = {}
        self._costs = {}
        self._tallies = {}
        good = 0
        if self.manifest_path.exists():
            with self.manifest_path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    line = _manifest_line(raw)
                    if line is None:
                        if handle.read(1):
                            msg = (
                                f"{self.manifest_path}:{number}: damaged line (not a manifest "
                                "record); costguard does not drop the results recorded after "
                                "it: repair or restore the file, then run again"
                            )
                            raise JournalError(msg)
                        break
                    self.per_part[line["part"]] = self.per_part.get(line["part"], 0) + 1
                    self._add_cost(line)
                    good += len(raw)
            with self._writing("manifest.jsonl"), self.manifest_path.open("rb+") as handle:
                handle.truncate(good)
        with self._writing("manifest.jsonl"):
            self._manifest = self.manifest_path.open("a", encoding="utf-8")

    def keys(self, part_id: str) -> set[str]:
        """The keys of `part_id` already in the manifest (an interrupted collection's).

        Read from the manifest only when the part has lines there (a resumed collection), so
        a run never holds every key it recorded: memory follows the part, not the queue.
        """
        if not self.tally(part_id)[0]:
            return set()
        return {line["key"] for line in self.lines() if line["part"] == part_id}

    def check_free(self, stems: set[str]) -> None:
        """Refuse an output folder the run cannot use, before it reserves anything.

        The folder (or the nearest folder above it that exists) must be a writable folder,
        and hold no file the run would write (a user's `o5.png` for key `o5`): costguard never
        overwrites, reuses or reports a file it did not write.
        """
        existing = self.out
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            msg = f"--out {self.out}: {existing} is a file, not a folder; choose another --out"
            raise UsageError(msg)
        if not os.access(existing, os.W_OK | os.X_OK):
            msg = f"--out {self.out}: cannot write in {existing} (permission denied)"
            raise UsageError(msg)
        if existing != self.out:
            return
        ours = {"manifest.jsonl", "retry.jsonl"}
        taken = sorted(
            entry.name
            for entry in os.scandir(self.out)
            if entry.name in ours or _image_stem(entry.name) in stems
        )
        if taken:
            shown = ", ".join(taken[:5]) + (
                f" and {len(taken) - 5:,} more" if len(taken) > 5 else ""
            )
            msg = (
                f"{self.out} already holds {len(taken):,} file(s) this run would write: {shown}; "
                "costguard never overwrites or reports a file it did not write: move them or "
                "choose another --out (nothing was sent)"
            )
            raise UsageError(msg)

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
            manifest, self._manifest = self._manifest, None
            with self._writing("manifest.jsonl"):
                try:
                    manifest.flush()
                    os.fsync(manifest.fileno())
                finally:
                    manifest.close()

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """An OSError while writing results becomes one line naming the folder and the cause."""
        try:
            yield
        except OSError as exc:
            msg = f"{self.out}: cannot write {what}: {exc.strerror or exc}"
            raise OutputError(msg) from exc

    def write_images(self, key: str, n: int, images: list[tuple[bytes, str]]) -> list[str]:
        """Save a request's images atomically; return the names written.

        A file already at the name is never rewritten: if it holds these very bytes (written
        before a crash) it is this image; otherwise (a file that appeared since the run
        started) the image is written beside it under `<name>.costguard-<k>.<ext>`.
        """
        names = []
        stem = safe_name(key)
        for i, (data, mime) in enumerate(images, start=1):
            ext = EXTENSIONS.get(mime, "bin")
            base = stem if n == 1 and len(images) == 1 else f"{stem}-{i}"
            name = f"{base}.{ext}"
            k = 1
            while (self.out / name).exists() and not _holds(self.out / name, data):
                k += 1
                name = f"{base}.costguard-{k}.{ext}"
            if not (self.out / name).exists():
                with self._writing(name):
                    write_atomic(self.out / name, data)
            names.append(name)
        return names

    def record(self, line: dict[str, Any]) -> None:
        """Append one manifest line and flush it (a kill -9 keeps every flushed line)."""
        assert self._manifest is not None
        with self._writing("manifest.jsonl"):
            self._manifest.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._manifest.flush()
        self._add_cost(line)

    def part_cost(self, part_id: str) -> Decimal:
        """Sum of `cost_usd` over a part's manifest lines, kept as lines are read and recorded
        (never by reading the manifest again: that made collecting quadratic in parts)."""
        return self._costs.get(part_id, Decimal(0))

    def tally(self, part_id: str) -> tuple[int, int]:
        """(manifest lines, of which ok) of a part, kept like `part_cost`."""
        return self._tallies.get(part_id, (0, 0))

    def _add_cost(self, line: dict[str, Any]) -> None:
        part = line["part"]
        self._costs[part] = self._costs.get(part, Decimal(0)) + Decimal(line["cost_usd"])
        lines, ok = self._tallies.get(part, (0, 0))
        self._tallies[part] = (lines + 1, ok + (line["status"] == "ok"))

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every manifest record (a torn last line, cut short by a crash, is not one yet).

        Raises:
            JournalError: a damaged line (not a manifest record), named by file and line.
        """
        if not self.manifest_path.exists():
            return
        with self.manifest_path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = _manifest_line(raw)
                if line is None:
                    if not handle.read(1):  # the last line, torn by a crash: not a record yet
                        return
                    msg = (
                        f"{self.manifest_path}:{number}: damaged line (not a manifest record); "
                        "repair or restore the file (running the run's command again says what "
                        "it can recover)"
                    )
                    raise JournalError(msg)
                yield line


def _manifest_line(raw: bytes) -> dict[str, Any] | None:
    """A complete manifest record, or None for a torn or damaged line."""
    if not raw.endswith(b"\n"):
        return None
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict) or "key" not in line or "part" not in line:
        return None
    return line


def _image_stem(name: str) -> str:
    """`o5` for `o5.png` (the name less an image extension costguard writes), else the name."""
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext in _IMAGE_EXTENSIONS else name


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` is exactly `data` (compared only when the sizes agree)."""
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


_IMAGE_EXTENSIONS = frozenset({*EXTENSIONS.values(), "bin"})
