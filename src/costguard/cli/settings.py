"""Settings from the environment (`COSTGUARD_*`). Only the CLI builds them."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


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

    def ledger_location(self, given: str | None = None) -> str | None:
        """The ledger to open: `given` (`--ledger`), else `ledger_url`, else `ledger`.

        None means the default file, `<home>/ledger.sqlite3`.
        """
        for location in (given, self.ledger_url, self.ledger):
            if location and location.strip():
                return location.strip()
        return None

    def pricing_dirs(self) -> list[Path]:
        """`pricing_dir` split into folders."""
        if not self.pricing_dir:
            return []
        return [Path(p) for p in self.pricing_dir.split(os.pathsep) if p]
