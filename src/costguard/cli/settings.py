"""Settings from the environment (`COSTGUARD_*`). Only the CLI builds them."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from costguard.errors import UsageError


class Settings(BaseSettings):
    """costguard's environment settings; CLI options override them."""

    model_config = SettingsConfigDict(env_prefix="COSTGUARD_", extra="ignore")

    home: Path | None = None
    """Where costguard keeps its ledger and runs (default: the user data directory)."""
    pricing_dir: str | None = None
    """Extra rate-card folders (os.pathsep-separated); their cards win for the same date."""
    default_model: str | None = None
    """Model for queue lines that name none, when --model is not given."""
    ledger: str | None = None
    """Ledger file (default: <home>/ledger.sqlite3); `--ledger` overrides it."""
    ledger_url: str | None = None
    """A shared ledger, `postgresql://user:password@host/db`; wins over `ledger`."""
    budget: str | None = None
    """The budget `run` charges when --budget is not given; it must be set in the ledger."""
    calibrated: str | None = None
    """`1`/`true`/`yes`/`on`: `estimate` and `run` are calibrated unless `--no-calibrated`
    (`0`/`false`/`no`/`off`, or unset: only with `--calibrated`). Read by `calibrated_default`."""
    calibration_since: str | None = None
    """The first day (or a span back, like 90d) a calibrated estimate learns from."""

    def ledger_location(self, given: str | None = None) -> str | None:
        """The ledger to open: `given` (`--ledger`), else `ledger_url`, else `ledger`.

        None means the default file, `<home>/ledger.sqlite3`.
        """
        for location in (given, self.ledger_url, self.ledger):
            if location and location.strip():
                return location.strip()
        return None

    def calibrated_default(self) -> bool:
        """`calibrated` as a yes or no; anything else is refused, naming the setting.

        Raises:
            UsageError: `COSTGUARD_CALIBRATED` is set to something that is not a yes or no.
        """
        text = (self.calibrated or "").strip().lower()
        if text in ("", "0", "false", "no", "off"):
            return False
        if text in ("1", "true", "yes", "on"):
            return True
        msg = (
            f"COSTGUARD_CALIBRATED={self.calibrated!r} is not a yes or no; "
            "use 1, true, yes, on (or 0, false, no, off)"
        )
        raise UsageError(msg)

    def pricing_dirs(self) -> list[Path]:
        """`pricing_dir` split into folders."""
        if not self.pricing_dir:
            return []
        return [Path(p) for p in self.pricing_dir.split(os.pathsep) if p]
