"""The output folder: images saved by key and `manifest.jsonl`, written so a kill -9 loses nothing.

- `<out>/manifest.jsonl`: one line per collected request, appended and flushed per line. A line
  cut short by a crash is dropped when the manifest is reopened.
- images `<out>/<key>.<ext>`: written to a temp name and renamed; an existing image is never
  rewritten.
- `<out>/.costguard-run`: which run owns the folder, so two runs never mix their results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from costguard.run.files import write_atomic
from costguard.run.journal import JournalError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(r"-[0-9a-f]{8}$")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


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
